// nudge/io/read_events.hpp: event logs and contact lists from CSV and JSON Lines files.
//
// Formats (chosen by extension: ".csv" or ".jsonl"; ".csv.gz" and ".jsonl.gz" are read through
// zlib; the path "-" reads standard input, compressed or not, as JSON Lines if its first
// non-blank byte is '{', else as CSV):
//
//   events.csv     header row naming the columns ts, contact, type (required), key, value
//                  (optional), in any order. ts: what parse_time reads (epoch seconds or
//                  ISO-8601 with offset, a fraction of a second dropped); a non-empty value
//                  becomes props["value"] as a decimal. Every other column is a prop (an empty
//                  cell: absent; a plain decimal number such as 42 or 9.95: a number; anything
//                  else: text), or with strict_columns a bad header.
//   events.jsonl   one object per line: {"ts"|"at": 1704103200 or "2024-01-01T10:00:00Z",
//                  "contact": "c1", "type": "purchase", "key": "o1", "props": {"amount": 9.5}}
//   contacts.csv   header row with `contact` (or `id`); columns status, owner, stage, time_zone
//                  and score fill those fields; consent lists the consented channels separated
//                  by ';' ("email;sms"); every other column is a text detail (an empty cell: the
//                  detail is absent).
//   contacts.jsonl {"id": "c1", "status": "lead", "details": {...}, "tags": {"VIP": TIME},
//                   "owner": "", "stage": "", "score": 0, "consent": {"email": true},
//                   "time_zone": "Europe/Warsaw", "groups": ["newsletter"]}
//
// Typed values in JSON Lines (details, props): string, integer, decimal, bool, or
// {"time": TIME}; a TIME is what parse_time reads, or a JSON number of epoch seconds (a fraction
// floored). CSV follows RFC 4180: a field may be quoted ("a,b" with "" for a quote), and a
// quoted field may hold line breaks (the record then spans lines; problems name its first).
// Every CSV record must be valid UTF-8, as every JSON Lines line must ("not valid UTF-8").
//
// Every line is bounded by input_limits (line length, name and text lengths); a decimal must be
// finite ("nan", "inf" and numbers beyond a double's range are refused); a TIME must lie in
// the input range [min_time, max_input_time] (nudge/time.hpp). docs/limits.md lists every limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/contact.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// One input line that was refused, and why.
struct input_problem {
  std::string file;      ///< the file's name as given
  std::size_t line = 0;  ///< 1-based; 0 for a problem with the whole file (cannot open, ...)
  std::string reason;    ///< e.g. "expected 5 fields, got 4"
  /// The offending line as read (without its line break); for a line longer than
  /// input_limits::max_line_bytes, only its first 256 bytes followed by "...".
  std::string text;

  /// "file:line: reason" (or "file: reason" when line is 0).
  std::string to_string() const;
  friend bool operator==(const input_problem&, const input_problem&) = default;
};

/// A file that cannot be read, or a line refused when no reject handler was given.
class read_error : public std::runtime_error {
 public:
  explicit read_error(input_problem problem);
  const input_problem& problem() const noexcept { return problem_; }
  const std::string& file() const noexcept { return problem_.file; }
  std::size_t line() const noexcept { return problem_.line; }
  const std::string& reason() const noexcept { return problem_.reason; }

 private:
  input_problem problem_;
};

/// Called for each refused line; the reader then skips it. Without a handler, the first
/// refused line throws read_error. A handler may throw to stop reading.
using reject_handler = std::function<void(const input_problem&)>;

enum class file_format : std::uint8_t { csv, jsonl };

/// Bounds on one input line, so that a hostile file gets a located error instead of an
/// allocation as large as the file. A line over a limit is refused like any bad line (through
/// the reject handler, or read_error), with a reason naming the limit, e.g.
/// "events.jsonl:7: line is 2000000 bytes long; at most 1048576 are allowed (max_line_bytes)".
struct input_limits {
  /// Longest line in bytes (without its line break), checked before the line is parsed: the
  /// JSON parser needs several times a line's size in memory.
  std::size_t max_line_bytes = std::size_t{1} << 20;
  /// Longest name: contact id, event type, event key, CSV column, and the name of a prop,
  /// detail, tag, group or consent channel (JSON field names too).
  std::size_t max_name_bytes = 1024;
  /// Longest text value: a prop's or detail's string, status, owner, stage, time zone.
  std::size_t max_string_bytes = 65'536;
};

/// The format named by the path's extension (".csv" or ".jsonl", any case, either optionally
/// followed by ".gz").
/// @throws read_error for any other extension, and for "-" (standard input has none).
file_format format_of(std::string_view path);

struct contact_read_options {
  /// If set, a contact whose time_zone the program cannot resolve (program::knows_time_zone)
  /// is refused, naming the contact and the zone, instead of silently getting the policy's
  /// default_time_zone. Not owned.
  const nudge::program* program = nullptr;
  reject_handler on_reject;           ///< empty: throw at the first bad line
  std::optional<file_format> format;  ///< default: by extension
  input_limits limits;
};

/// Reads a contacts file. Bad lines (wrong field count, bad value, a line over a limit, an id
/// seen before: "contacts.csv:9: duplicate contact "c1" (first on line 2)", a consent channel
/// that is not one of email, sms, web_push, popup, chat — in CSV several are separated by ';',
/// so "email,sms" is refused) are refused through `on_reject`, or throw. With a handler, the
/// first line of an id wins.
/// @throws read_error (file missing or unreadable, bad header, or a bad line without handler).
std::vector<contact> read_contacts(const std::string& path,
                                   const contact_read_options& options = {});

/// The same over text in memory; `file_name` appears in problems.
std::vector<contact> parse_contacts(std::string_view text, file_format format,
                                    const std::string& file_name = {},
                                    const contact_read_options& options = {});

struct event_read_options {
  /// If set, events of a type the program does not know (program::knows_event_type) are
  /// refused. Not owned; must outlive the reader.
  const nudge::program* program = nullptr;
  /// If set, events for a contact it does not know are refused ("unknown contact").
  std::function<bool(std::string_view contact)> is_known_contact;
  /// If set, events after this instant are refused.
  std::optional<time_point> not_after;
  /// If set, events before this instant are refused as out of order, as if an event of that time
  /// came before the text (a live run continuing a file: the time its database reached).
  std::optional<time_point> not_before;
  reject_handler on_reject;           ///< empty: throw at the first bad line
  std::optional<file_format> format;  ///< default: by extension
  input_limits limits;
  /// CSV: refuse a column other than ts, contact, type, key and value (a bad header) instead of
  /// reading it as a prop (`nudge replay --strict`).
  bool strict_columns = false;
  /// CSV: one record per line, a quoted line break refused ("unterminated quoted field (here
  /// each record must fit on one line)") instead of continuing the record on the next line. `nudge
  /// run` sets it: it tracks its position in the file by lines.
  bool one_line_records = false;
};

/// Reads an event file in batches, checking each line (fields, types, time order across the
/// whole file: a ts before the previous accepted event's is refused).
///
/// The file is read into memory whole when the reader is made; batches parse it on demand, so
/// a replay need not hold every event at once.
///
/// Example:
///
///     nudge::event_reader reader{"events.csv", {.program = program.get()}};
///     std::vector<nudge::event> batch;
///     while (reader.read(batch, 65536)) engine.process(batch, ...);
///
/// Thread-safety: none; one reader per thread.
class event_reader {
 public:
  /// @throws read_error if the file cannot be read or its header is bad.
  event_reader(const std::string& path, event_read_options options = {});
  /// Reads from `text` instead of a file; `file_name` appears in problems.
  event_reader(std::string text, file_format format, std::string file_name,
               event_read_options options = {});
  ~event_reader();
  event_reader(event_reader&&) noexcept;
  event_reader& operator=(event_reader&&) noexcept;

  /// Clears `out` and fills it with up to `max_events` accepted events, in file order (the
  /// events `out` held are assigned over: their strings' buffers are reused).
  /// Returns false when nothing was left to read (`out` is then empty).
  /// @throws read_error for a refused line when no reject handler is set (or what it throws).
  bool read(std::vector<event>& out, std::size_t max_events);

  std::size_t events_read() const noexcept;  ///< accepted so far
  std::size_t rejected() const noexcept;     ///< refused so far
  std::size_t bytes_total() const noexcept;
  std::size_t bytes_done() const noexcept;
  /// The latest accepted event's time, or nullopt if none was accepted yet.
  std::optional<time_point> last_time() const noexcept;
  const std::string& file_name() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Reads every event of a file at once.
/// @throws read_error as event_reader does.
std::vector<event> read_events(const std::string& path, event_read_options options = {});

}  // namespace nudge
