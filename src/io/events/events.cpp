// Event logs (event_reader, read_events): CSV and JSON Lines, one line at a time, checked as
// docs/rules.md says.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>

#include <nudge/detail/compiled.hpp>
#include <nudge/geo.hpp>
#include <nudge/io/read_events.hpp>

#include "../../core/contact_checks.hpp"
#include "common.hpp"

namespace nudge {

using namespace event_io;

namespace {
// Bytes of a file read at a time: large enough that refills cost nothing measurable, small
// enough that a replay's memory is its contacts', not its log's.
constexpr std::size_t window_bytes = std::size_t{4} << 20;
}  // namespace

namespace event_io {
// (Named, not anonymous: event_reader::impl holds one, and a unity build refuses a member whose
// type has internal linkage.)
// A text of up to 16 bytes as its size and two words that hold all of its bytes (loads that
// overlap, in the middle for 9 to 15 bytes), so that two such texts are equal exactly when
// their text_words are; a longer text gets the words of its first 16 bytes and never compares
// equal to a short one's.
struct text_words {
  static constexpr std::size_t max_size = 16;
  std::uint64_t size = 0, head = 0, tail = 0;

  explicit text_words(std::string_view s) noexcept : size(s.size()) {
    const char* p = s.data();
    const std::size_t n = std::min(s.size(), max_size);
    if (n >= 8) {
      std::memcpy(&head, p, 8);
      std::memcpy(&tail, p + n - 8, 8);
    } else if (n >= 4) {
      std::uint32_t a = 0, b = 0;
      std::memcpy(&a, p, 4);
      std::memcpy(&b, p + n - 4, 4);
      head = a | (std::uint64_t{b} << 32);
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        head |= std::uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
      }
    }
  }
  friend bool operator==(const text_words&, const text_words&) = default;
};
}  // namespace event_io

// ---- events ------------------------------------------------------------------------------------

struct event_reader::impl {
  std::string file;
  file_format format;
  event_read_options options;
  text_buffer buf;
  line_cursor cursor{nullptr, nullptr, nullptr};
  std::size_t accepted = 0;
  std::size_t refused = 0;
  std::optional<time_point> last;

  // CSV column positions (-1: absent) and field count; other columns are props.
  int col_ts = -1, col_contact = -1, col_type = -1, col_key = -1, col_value = -1;
  int col_lat = -1, col_lon = -1;  // the location props (docs/rules.md, "Location")
  std::size_t columns = 0;
  std::vector<std::pair<std::size_t, std::string>> prop_columns;
  std::vector<std::pair<int, const char*>> location_columns;  // lat and lon, if present
  std::vector<std::string_view> fields;
  std::vector<std::string> storage;
  // The fast path's splitter, and the fields it splits a line into.
  plain_splitter splitter;
  std::vector<std::string_view> cells;

  // Event types seen so far and whether the program knows them: a handful of distinct types,
  // so a linear scan beats hashing each event's type. A name of up to 16 bytes is compared as
  // its size and two words (text_words), inline: a memcmp call per entry cost 70 instructions
  // a line.
  struct known_type {
    std::string name;
    text_words words;
    bool known = false;
  };
  std::vector<known_type> type_cache;

  od::parser parser;
  std::string reason;

  // A file is read a window at a time (`source`): `buf` holds the window, whose first byte is
  // byte `window_base` of the input. Text handed to the reader whole has no source.
  std::unique_ptr<byte_source> source;
  std::size_t window_base = 0;
  std::size_t total = 0;  // the source's size for progress; 0: unknown (standard input)
  // The window's text up to here is valid UTF-8: validated once per window (its whole lines:
  // the window may end inside a character), so that only records past it are checked alone.
  const char* utf8_checked = nullptr;

  // Validates the window's whole lines at once; a window with a bad byte leaves each of its
  // records to be checked (and refused) on its own, naming its line.
  void check_window_utf8() {
    utf8_checked = cursor.pos;
    const char* stop = cursor.end;
    if (source) {
      while (stop > cursor.pos && stop[-1] != '\n') {
        --stop;
      }
    }
    if (simdjson::validate_utf8(cursor.pos, static_cast<std::size_t>(stop - cursor.pos))) {
      utf8_checked = stop;
    }
  }

  bool valid_text(std::string_view line) {
    return line.data() + line.size() <= utf8_checked || valid_utf8(line, reason);
  }

  impl(std::string name, file_format f, event_read_options o, text_buffer b,
       std::unique_ptr<byte_source> from = nullptr)
      : file(std::move(name)),
        format(f),
        options(std::move(o)),
        buf(std::move(b)),
        source(std::move(from)) {
    cursor = {buf.data(), buf.data(), buf.data() + buf.size};
    cursor.csv = format == file_format::csv && !options.one_line_records;
    cursor.max_record = options.limits.max_line_bytes;
    check_window_utf8();
    if (format == file_format::csv) {
      read_header();
    }
  }

  // Moves the unread rest of the window to its front and fills the window from the source,
  // doubling it when the rest (one record longer than half the window) leaves too little room.
  // Returns false when the source had nothing more (it is then dropped).
  bool refill() {
    if (!source) {
      return false;
    }
    const std::size_t consumed = static_cast<std::size_t>(cursor.pos - cursor.begin);
    const std::size_t rest = buf.size - consumed;
    std::size_t room = buf.bytes.size() - simdjson::SIMDJSON_PADDING;
    if (rest > room / 2) {
      room *= 2;
    }
    if (room + simdjson::SIMDJSON_PADDING == buf.bytes.size()) {
      std::memmove(buf.bytes.data(), buf.bytes.data() + consumed, rest);  // the same window
    } else {
      std::string next(room + simdjson::SIMDJSON_PADDING, '\0');
      std::memcpy(next.data(), buf.bytes.data() + consumed, rest);
      buf.bytes.swap(next);
    }
    window_base += consumed;
    std::size_t size = rest;
    while (size < room) {
      const std::size_t got = source->pull(buf.bytes.data() + size, room - size);
      if (got == 0) {
        break;
      }
      size += got;
    }
    std::memset(buf.bytes.data() + size, 0, simdjson::SIMDJSON_PADDING);
    const bool more = size > rest;
    if (!more) {
      source.reset();  // the end: what is left in the window is the last record
    }
    buf.size = size;
    cursor.begin = buf.data();
    cursor.pos = buf.data();
    cursor.end = buf.data() + size;
    splitter.reset();
    check_window_utf8();
    return more;
  }

  // The next record, refilling the window when it runs out or ends in a record that may go on
  // past it.
  bool next_record(std::string_view& line) {
    while (true) {
      const line_cursor before = cursor;
      const bool got = cursor.next(line);
      if (got && !(cursor.at_end_unterminated && source)) {
        return true;
      }
      cursor = before;  // read it again from the refilled window
      if (!refill() && !got) {
        return cursor.next(line);
      }
    }
  }

  // The next CSV record. A line without quotes is split here in the same pass that finds its
  // end (`row` then holds its fields); any other goes through next_record (`row` empty).
  bool next_csv_record(std::string_view& line, std::span<const std::string_view>& row) {
    const char* line_end = nullptr;
    const char* next = nullptr;
    const std::size_t n = splitter.split(cursor.pos, cursor.end, options.limits.max_line_bytes,
                                         columns, cells, line_end, next);
    if (n == 0) {
      row = {};
      return next_record(line);
    }
    line = std::string_view{cursor.pos, static_cast<std::size_t>(line_end - cursor.pos)};
    cursor.line = ++cursor.lines_done;
    cursor.pos = next;
    cursor.at_end_unterminated = false;
    row = {cells.data(), n};
    return true;
  }

  [[noreturn]] void bad_header(std::string why, std::string_view text) {
    throw read_error({file, cursor.line, "bad header: " + why, problem_text(text, options.limits)});
  }

  void read_header() {
    std::string_view line;
    if (!next_record(line)) {
      bad_header("the file is empty (expected ts,contact,type,key,value)", {});
    }
    if (line_too_long(line, options.limits, reason) || !valid_utf8(line, reason)) {
      bad_header(reason, line);
    }
    if (!split_csv(line, fields, storage, reason)) {
      bad_header(reason, line);
    }
    columns = fields.size();
    cells.resize(plain_splitter::cells_for(columns));
    detail::string_map<bool> seen;
    for (std::size_t i = 0; i < fields.size(); ++i) {
      const std::string_view name = fields[i];
      if (name.empty()) {
        bad_header("a column has no name", line);
      }
      if (name_too_long(name, options.limits, "a column name", reason)) {
        bad_header(reason, line);
      }
      if (!seen.emplace(std::string{name}, true).second) {
        bad_header(fmt::format("column {} appears twice", quote(name)), line);
      }
      int* slot = name == "ts"        ? &col_ts
                  : name == "contact" ? &col_contact
                  : name == "type"    ? &col_type
                  : name == "key"     ? &col_key
                  : name == "value"   ? &col_value
                  : name == "lat"     ? &col_lat
                  : name == "lon"     ? &col_lon
                                      : nullptr;
      if (slot == nullptr) {
        if (options.strict_columns) {
          bad_header(
              fmt::format("unknown column {} (expected ts, contact, type, key, value, lat, lon; "
                          "without strict_columns (--strict) it would be a prop)",
                          quote(name)),
              line);
        }
        prop_columns.emplace_back(i, std::string{name});
        continue;
      }
      *slot = static_cast<int>(i);
    }
    for (auto [col, name] : {std::pair{col_lat, "lat"}, std::pair{col_lon, "lon"}}) {
      if (col >= 0) {
        location_columns.emplace_back(col, name);
      }
    }
    for (auto [col, name] : {std::pair{col_ts, "ts"}, std::pair{col_contact, "contact"},
                             std::pair{col_type, "type"}}) {
      if (col < 0) {
        bad_header(fmt::format("missing column \"{}\"", name), line);
      }
    }
  }

  void refuse(std::string_view line) {
    input_problem p{file, cursor.line, std::move(reason), problem_text(line, options.limits)};
    reason.clear();
    if (!options.on_reject) {
      throw read_error(std::move(p));
    }
    ++refused;
    options.on_reject(p);
  }

  [[gnu::always_inline]] bool knows_type(std::string_view type) {
    if (options.program == nullptr) {
      return true;
    }
    if (type.size() <= text_words::max_size) [[likely]] {
      const text_words words{type};
      for (const auto& t : type_cache) {
        if (t.words == words) {
          return t.known;
        }
      }
    }
    return knows_type_slow(type);
  }

  // A name longer than 16 bytes, or the first of its type.
  [[gnu::noinline]] bool knows_type_slow(std::string_view type) {
    for (const auto& t : type_cache) {
      if (t.name == type) {
        return t.known;
      }
    }
    const bool known = options.program->knows_event_type(type);
    if (type_cache.size() < 32) {
      type_cache.push_back({std::string{type}, text_words{type}, known});
    }
    return known;
  }

  // Checks shared by both formats, once the fields are parsed. Inlined: a call per line cost
  // more than half of what it does.
  [[gnu::always_inline]] bool check(const event& e) {
    if (e.contact.empty()) {
      reason = "empty contact id";
      return false;
    }
    if (e.type.empty()) {
      reason = "empty event type";
      return false;
    }
    const input_limits& limits = options.limits;
    if (name_too_long(e.contact, limits, "contact", reason) ||
        name_too_long(e.type, limits, "type", reason) ||
        name_too_long(e.key, limits, "key", reason)) {
      return false;
    }
    if (!knows_type(e.type)) {
      reason = fmt::format("unknown event type {}", quote(e.type));
      return false;
    }
    if (options.is_known_contact && !options.is_known_contact(e.contact)) {
      reason = fmt::format("unknown contact {} (not in the contacts file)", quote(e.contact));
      return false;
    }
    if (last && e.ts < *last) {
      reason =
          fmt::format("ts {} is before the previous event's ts {} (events must be sorted by ts)",
                      to_epoch(e.ts), to_epoch(*last));
      return false;
    }
    if (options.not_before && e.ts < *options.not_before) {
      reason = fmt::format(
          "ts {} is before {}, the time already processed (events must be sorted by ts)",
          to_epoch(e.ts), to_epoch(*options.not_before));
      return false;
    }
    if (options.not_after && e.ts > *options.not_after) {
      reason = fmt::format("ts {} is after the end of the replay ({})", to_epoch(e.ts),
                           to_epoch(*options.not_after));
      return false;
    }
    return true;
  }

  // `row`: the line's fields if next_csv_record split it, else empty (split here). Inlined into
  // read(), its one caller.
  [[gnu::always_inline]] bool parse_csv(std::string_view line,
                                        std::span<const std::string_view> row, event& e) {
    if (!valid_text(line)) {
      return false;
    }
    if (row.empty()) {
      if (!split_csv(line, fields, storage, reason)) {
        if (options.one_line_records && reason == "unterminated quoted field") {
          reason += " (here each record must fit on one line)";
        }
        return false;
      }
      row = fields;
    }
    if (row.size() != columns) {
      reason = fmt::format("expected {} fields, got {}", columns, row.size());
      return false;
    }
    e.props.clear();  // a reused event's
    if (!parse_ts(row[static_cast<std::size_t>(col_ts)], e.ts, reason)) {
      return false;
    }
    set_text(e.contact, row[static_cast<std::size_t>(col_contact)]);
    set_text(e.type, row[static_cast<std::size_t>(col_type)]);
    e.key.clear();
    if (col_key >= 0) {
      e.key.append(row[static_cast<std::size_t>(col_key)]);
    }
    if (col_value >= 0) {
      const std::string_view v = row[static_cast<std::size_t>(col_value)];
      if (!v.empty()) {
        double d;
        if (!parse_decimal(v, d, "value", reason)) {
          return false;
        }
        e.props.insert_or_assign("value", d);
      }
    }
    for (const auto& [col, name] : location_columns) {
      const std::string_view v = row[static_cast<std::size_t>(col)];
      if (!v.empty()) {
        double d;
        if (!parse_decimal(v, d, name, reason)) {
          return false;
        }
        e.props.insert_or_assign(name, d);
      }
    }
    for (const auto& [col, name] : prop_columns) {
      const std::string_view v = row[col];
      if (v.empty()) {
        continue;  // an empty cell: the prop is absent, as an empty detail in a contacts file
      }
      if (string_too_long(v, options.limits, name, reason)) {
        return false;
      }
      e.props.insert_or_assign(name, cell_value(v));
    }
    return check(e);
  }

  bool parse_jsonl(std::string_view line, event& e) {
    e.key.clear();  // a reused event's: both are optional (contact, type and ts are not)
    e.props.clear();
    bool has_ts = false, has_contact = false, has_type = false;
    bool ok = for_each_member(
        parser, buf, cursor.offset_of(line), line, options.limits, reason,
        [&](std::string_view k, od::value v) {
          if (k == "ts" || k == "at") {
            if (has_ts) {
              reason = "both \"ts\" and \"at\" given";
              return false;
            }
            has_ts = true;
            return json_time(v, e.ts, reason, k);
          }
          if (k == "contact") {
            has_contact = true;
            return json_name(v, e.contact, reason, k, options.limits);
          }
          if (k == "type") {
            has_type = true;
            return json_name(v, e.type, reason, k, options.limits);
          }
          if (k == "key") {
            // is_null() can itself fail on a malformed value; a failure is not "null" (found by
            // the JSONL fuzzer: it escaped as simdjson_error without file:line).
            bool is_null = false;
            if (!v.is_null().get(is_null) && is_null) {
              return true;
            }
            return json_name(v, e.key, reason, k, options.limits);
          }
          if (k == "props") {
            return json_value_map(v, e.props, reason, "props", options.limits);
          }
          reason =
              fmt::format("unknown field {} (expected ts, contact, type, key, props)", quote(k));
          return false;
        });
    if (!ok) {
      return false;
    }
    for (auto [has, name] : {std::pair{has_ts, "ts"}, std::pair{has_contact, "contact"},
                             std::pair{has_type, "type"}}) {
      if (!has) {
        reason = fmt::format("missing field \"{}\"", name);
        return false;
      }
    }
    return check(e);
  }

  // The events `out` holds are reused, assigned over (their strings keep their buffers, no
  // event is destroyed and made anew per line), and the rest dropped at the end.
  bool read(std::vector<event>& out, std::size_t max_events) {
    std::string_view line;
    const bool csv = format == file_format::csv;
    std::span<const std::string_view> row;
    std::size_t n = 0;  // events accepted into `out`
    try {
      while (n < max_events && (csv ? next_csv_record(line, row) : next_record(line))) {
        if (line.empty()) {
          continue;
        }
        if (line_too_long(line, options.limits, reason)) {
          refuse(line);
          continue;
        }
        if (n == out.size()) {
          out.emplace_back();
        }
        event& e = out[n];
        const bool ok = csv ? parse_csv(line, row, e) : parse_jsonl(line, e);
        if (!ok) {
          refuse(line);  // its slot is reused by the next line
          continue;
        }
        ++n;
        last = e.ts;
        ++accepted;
      }
    } catch (...) {
      out.erase(out.begin() + static_cast<std::ptrdiff_t>(n), out.end());
      throw;
    }
    out.erase(out.begin() + static_cast<std::ptrdiff_t>(n), out.end());
    return n > 0;
  }
};

event_reader::event_reader(const std::string& path, event_read_options options) {
  if (!options.format && path != "-") {
    format_of(path);  // a bad extension is refused before the file is read
  }
  // The first window, which also tells standard input's format.
  auto source = std::make_unique<event_io::byte_source>(path);
  const std::size_t total = source->total();
  std::string first(window_bytes + simdjson::SIMDJSON_PADDING, '\0');
  std::size_t size = 0;
  while (size < window_bytes) {
    const std::size_t got = source->pull(first.data() + size, window_bytes - size);
    if (got == 0) {
      source.reset();  // the whole input fits in one window
      break;
    }
    size += got;
  }
  text_buffer buf;
  buf.bytes = std::move(first);
  buf.size = size;
  const file_format f = format_for(path, options.format, buf);
  impl_ = std::make_unique<impl>(path, f, std::move(options), std::move(buf), std::move(source));
  impl_->total = total;
}

event_reader::event_reader(std::string text, file_format format, std::string file_name,
                           event_read_options options)
    : impl_(std::make_unique<impl>(std::move(file_name), format, std::move(options),
                                   padded(std::move(text)))) {}

event_reader::~event_reader() = default;
event_reader::event_reader(event_reader&&) noexcept = default;
event_reader& event_reader::operator=(event_reader&&) noexcept = default;

bool event_reader::read(std::vector<event>& out, std::size_t max_events) {
  return impl_->read(out, max_events);
}
std::size_t event_reader::events_read() const noexcept {
  return impl_->accepted;
}
std::size_t event_reader::rejected() const noexcept {
  return impl_->refused;
}
std::size_t event_reader::bytes_total() const noexcept {
  return impl_->total != 0 ? impl_->total : impl_->window_base + impl_->buf.size;
}
std::size_t event_reader::bytes_done() const noexcept {
  if (impl_->source) {
    // The source's own count (for a .gz file its compressed bytes, as bytes_total), a window
    // ahead of the records read.
    return impl_->source->done();
  }
  return std::min(bytes_total(), impl_->window_base + static_cast<std::size_t>(
                                                          impl_->cursor.pos - impl_->cursor.begin));
}
std::optional<time_point> event_reader::last_time() const noexcept {
  return impl_->last;
}
const std::string& event_reader::file_name() const noexcept {
  return impl_->file;
}

std::vector<event> read_events(const std::string& path, event_read_options options) {
  event_reader reader{path, std::move(options)};
  std::vector<event> all;
  std::vector<event> batch;
  while (reader.read(batch, 1 << 16)) {
    all.insert(all.end(), std::make_move_iterator(batch.begin()),
               std::make_move_iterator(batch.end()));
  }
  return all;
}
}  // namespace nudge
