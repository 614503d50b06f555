// What the event and contact readers share (events.cpp, contacts.cpp): reading a file (whole,
// or a window at a time; plain, gzip or standard input), walking it record by record, the checks
// and field parsing of both formats, and JSON values. Private to src/io/events.
//
// CSV is split by hand with memchr and from_chars, since parsing sits on the replay's critical
// path; JSON Lines is read with simdjson On Demand, one document per line so that every problem
// names its line.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>

#include <nudge/detail/compiled.hpp>
#include <nudge/io/csv.hpp>
#include <nudge/io/read_events.hpp>

namespace nudge::event_io {

namespace od = simdjson::ondemand;

// The file's bytes followed by simdjson's padding, so that each line can be parsed in place.
struct text_buffer {
  std::string bytes;  // size() = content + padding
  std::size_t size = 0;

  const char* data() const noexcept { return bytes.data(); }
  std::size_t capacity_from(std::size_t offset) const noexcept { return bytes.size() - offset; }
};

text_buffer padded(std::string text);

bool is_gzip_name(std::string_view path);

// A file whole: a plain file, or through zlib (byte_source) a .gz file or standard input ("-"),
// which zlib reads whether it is compressed or not.
text_buffer read_whole_file(const std::string& path);

// Where the event reader pulls its bytes from, a window at a time, so that a log of any length
// is read in bounded memory: a plain file, or through zlib a .gz file or standard input.
class byte_source {
 public:
  // @throws read_error naming the path if it cannot be opened.
  explicit byte_source(const std::string& path);
  ~byte_source();
  byte_source(const byte_source&) = delete;
  byte_source& operator=(const byte_source&) = delete;

  // Up to `n` bytes into `into`; 0 at the end.
  // @throws read_error naming the path and the system's or zlib's reason.
  std::size_t pull(char* into, std::size_t n);
  // The file's size on disk (compressed for zlib), for progress; 0 for standard input.
  std::size_t total() const noexcept { return total_; }
  // How much of that has been consumed (compressed bytes for zlib).
  std::size_t done() const noexcept;

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  void* zlib_ = nullptr;  // gzFile (zlib.h stays out of this header)
  std::size_t total_ = 0;
  std::size_t plain_done_ = 0;
};

// The format of the file at `path`: `given` if set, else by its name (format_of), or for
// standard input ("-", no name to go by) JSON Lines if its first non-blank byte is '{' (no CSV
// header starts so), else CSV.
file_format format_for(const std::string& path, const std::optional<file_format>& given,
                       const text_buffer& buf);

// The number of double quotes in [p, end).
std::size_t count_quotes(const char* p, const char* end);

// Walks a buffer record by record, counting lines; strips a trailing '\r'. A record is a line,
// or for CSV (`csv` set) the lines a quoted field spans: RFC 4180 allows a line break inside
// quotes. Such a record ends at the first line break after an even number of quotes, or once it
// is longer than `max_record` bytes (it is then refused as too long, not read to the end of the
// file).
struct line_cursor {
  const char* begin;
  const char* pos;
  const char* end;
  std::size_t line = 0;  ///< the first line of the record returned last
  bool csv = false;
  std::size_t max_record = static_cast<std::size_t>(-1);
  std::size_t lines_done = 0;

  // True when the record returned last ran into `end` without a line break: in a window of a
  // longer input it may go on past the window (event_reader refills and reads it again).
  bool at_end_unterminated = false;

  bool next(std::string_view& out) {
    if (pos >= end) {
      return false;
    }
    line = ++lines_done;
    const char* scan = pos;
    std::size_t quotes = 0;
    const char* nl;
    while (true) {
      nl = static_cast<const char*>(std::memchr(scan, '\n', static_cast<std::size_t>(end - scan)));
      if (!csv || nl == nullptr) {
        break;
      }
      quotes += count_quotes(scan, nl);
      if (quotes % 2 == 0 || static_cast<std::size_t>(nl - pos) > max_record) {
        break;
      }
      scan = nl + 1;  // inside a quoted field: the record goes on
      ++lines_done;
    }
    at_end_unterminated = nl == nullptr;
    const char* stop = nl != nullptr ? nl : end;
    out = std::string_view{pos, static_cast<std::size_t>(stop - pos)};
    pos = nl != nullptr ? nl + 1 : end;
    if (!out.empty() && out.back() == '\r') {
      out.remove_suffix(1);
    }
    return true;
  }
  std::size_t offset_of(std::string_view line_text) const {
    return static_cast<std::size_t>(line_text.data() - begin);
  }
};

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view prefix(std::string_view s, std::size_t max);

// A string as a message quotes it: long ones shortened, so that a hostile megabyte-long name
// never becomes a megabyte-long message.
std::string quote(std::string_view s);

// The line as an input_problem keeps it: whole, or its start if it is over the line limit.
std::string problem_text(std::string_view line, const input_limits& limits);

[[gnu::cold, gnu::noinline]] void say_too_long(std::size_t size, std::size_t max,
                                               std::string_view what, const char* limit,
                                               std::string& reason);

// Inline: every field of every line passes here (the replay's critical path).
inline bool too_long(std::string_view s, std::size_t max, std::string_view what, const char* limit,
                     std::string& reason) {
  if (s.size() <= max) [[likely]] {
    return false;
  }
  say_too_long(s.size(), max, what, limit, reason);
  return true;
}

inline bool name_too_long(std::string_view s, const input_limits& limits, std::string_view what,
                          std::string& reason) {
  return too_long(s, limits.max_name_bytes, what, "max_name_bytes", reason);
}

inline bool string_too_long(std::string_view s, const input_limits& limits, std::string_view what,
                            std::string& reason) {
  return too_long(s, limits.max_string_bytes, what, "max_string_bytes", reason);
}

inline bool line_too_long(std::string_view line, const input_limits& limits, std::string& reason) {
  return too_long(line, limits.max_line_bytes, "line", "max_line_bytes", reason);
}

[[gnu::cold, gnu::noinline]] void say_out_of_range(std::string_view what, std::string_view text,
                                                   std::string& reason);

// ts: epoch seconds (fast path) or what parse_time reads.
bool parse_ts(std::string_view text, time_point& out, std::string& reason);

// A finite decimal. from_chars also accepts "nan", "inf" and "infinity", which no amount or
// score means (and NaN would compare unequal to itself in every condition).
bool parse_decimal(std::string_view text, double& out, std::string_view what, std::string& reason);

// The same rule for CSV as simdjson applies to JSON Lines: text must be UTF-8.
inline bool valid_utf8(std::string_view line, std::string& reason) {
  if (simdjson::validate_utf8(line.data(), line.size())) [[likely]] {
    return true;
  }
  reason = "not valid UTF-8";
  return false;
}

// An extra CSV column's cell as a prop: a plain decimal number ("42", "-3", "9.95"; no leading
// zero, no exponent, so that ids such as "007" or "1e5" stay text) is a number (an integer
// without a '.'), anything else text.
value cell_value(std::string_view f);

const char* json_type_name(od::json_type t);

// A TIME in JSON: epoch seconds as a number (a fraction floored, as parse_time does), or a
// string parse_time accepts.
bool json_time(od::value v, time_point& out, std::string& reason, std::string_view what);

bool json_string(od::value v, std::string& out, std::string& reason, std::string_view what,
                 std::size_t max_bytes, const char* limit);

bool json_name(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits);

bool json_text(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits);

// A typed value: string, integer, decimal, bool, or {"time": TIME}.
bool json_value(od::value v, value& out, std::string& reason, const std::string& what,
                const input_limits& limits);

bool json_value_map(od::value v, name_map<value>& out, std::string& reason, std::string_view what,
                    const input_limits& limits);

// Parses one line as a JSON object and calls `on_field(key, value)` for each member.
template <class OnField>
bool for_each_member(od::parser& parser, const text_buffer& buf, std::size_t offset,
                     std::string_view line, const input_limits& limits, std::string& reason,
                     OnField&& on_field) {
  od::document doc;
  if (auto err = parser.iterate(line.data(), line.size(), buf.capacity_from(offset)).get(doc)) {
    reason = fmt::format("not valid JSON ({})", simdjson::error_message(err));
    return false;
  }
  od::object obj;
  if (doc.get_object().get(obj)) {
    reason = "expected a JSON object";
    return false;
  }
  for (auto member : obj) {
    od::field f;
    if (auto err = std::move(member).get(f)) {
      reason = fmt::format("not valid JSON ({})", simdjson::error_message(err));
      return false;
    }
    std::string_view k;
    if (f.unescaped_key().get(k)) {
      reason = "not valid JSON";
      return false;
    }
    if (name_too_long(k, limits, "a field name", reason)) {
      return false;
    }
    if (!on_field(k, f.value())) {
      return false;
    }
  }
  // At the end, current_location reports OUT_OF_BOUNDS; anything else is a trailing token.
  if (doc.current_location().error() != simdjson::OUT_OF_BOUNDS) {
    reason = "not valid JSON (trailing content after the object)";
    return false;
  }
  return true;
}

}  // namespace nudge::event_io
