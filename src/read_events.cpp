// Event and contact readers: CSV (split by hand with memchr and from_chars, since parsing sits
// on the replay's critical path) and JSON Lines (simdjson On Demand, one document per line so
// that every problem names its line).
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>
#include <zlib.h>

#include <nudge/detail/compiled.hpp>
#include <nudge/geo.hpp>
#include <nudge/read_events.hpp>

#include "core/contact_checks.hpp"

namespace nudge {

std::string input_problem::to_string() const {
  if (line == 0) {
    return fmt::format("{}: {}", file, reason);
  }
  return fmt::format("{}:{}: {}", file, line, reason);
}

read_error::read_error(input_problem problem)
    : std::runtime_error(problem.to_string()), problem_(std::move(problem)) {}

file_format format_of(std::string_view path) {
  if (path == "-") {
    throw read_error({std::string{path},
                      0,
                      "standard input has no extension: its format is taken from its first byte",
                      {}});
  }
  std::string_view name = path;
  auto ends_with = [&](std::string_view ext) {
    if (name.size() < ext.size()) {
      return false;
    }
    auto tail = name.substr(name.size() - ext.size());
    return std::equal(tail.begin(), tail.end(), ext.begin(), [](char a, char b) {
      return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
    });
  };
  if (ends_with(".gz")) {
    name.remove_suffix(3);  // read through zlib: the format is the name's before ".gz"
  }
  if (ends_with(".csv")) {
    return file_format::csv;
  }
  if (ends_with(".jsonl")) {
    return file_format::jsonl;
  }
  throw read_error({std::string{path},
                    0,
                    "unknown file format (expected a .csv, .jsonl, .csv.gz or .jsonl.gz extension)",
                    {}});
}

namespace {

namespace od = simdjson::ondemand;

// The file's bytes followed by simdjson's padding, so that each line can be parsed in place.
struct text_buffer {
  std::string bytes;  // size() = content + padding
  std::size_t size = 0;

  const char* data() const noexcept { return bytes.data(); }
  std::size_t capacity_from(std::size_t offset) const noexcept { return bytes.size() - offset; }
};

text_buffer padded(std::string text) {
  text_buffer b;
  b.size = text.size();
  b.bytes = std::move(text);
  b.bytes.resize(b.size + simdjson::SIMDJSON_PADDING, '\0');
  return b;
}

bool is_gzip_name(std::string_view path) {
  return path.size() > 3 &&
         (path.substr(path.size() - 3) == ".gz" || path.substr(path.size() - 3) == ".GZ");
}

// A .gz file, or standard input ("-"), which zlib reads whether it is compressed or not.
text_buffer read_through_zlib(const std::string& path) {
  gzFile z = nullptr;
  if (path == "-") {
    const int fd = ::dup(STDIN_FILENO);  // gzclose closes it, not standard input itself
    z = fd < 0 ? nullptr : ::gzdopen(fd, "rb");
    if (z == nullptr && fd >= 0) {
      ::close(fd);
    }
  } else {
    z = ::gzopen(path.c_str(), "rb");
  }
  if (z == nullptr) {
    throw read_error({path, 0, fmt::format("cannot open: {}", std::strerror(errno)), {}});
  }
  std::string bytes;
  char chunk[1 << 16];
  int n;
  while ((n = ::gzread(z, chunk, sizeof chunk)) > 0) {
    bytes.append(chunk, static_cast<std::size_t>(n));
  }
  int code = Z_OK;
  std::string why = ::gzerror(z, &code);
  // A truncated stream ends the reads like the end of the file, with Z_BUF_ERROR set.
  if (n < 0 || (code != Z_OK && code != Z_STREAM_END)) {
    if (code == Z_ERRNO) {
      why = std::strerror(errno);
    }
    ::gzclose(z);
    throw read_error({path, 0, fmt::format("cannot read: {}", why), {}});
  }
  ::gzclose(z);
  return padded(std::move(bytes));
}

text_buffer read_whole_file(const std::string& path) {
  if (path == "-" || is_gzip_name(path)) {
    return read_through_zlib(path);
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw read_error({path, 0, fmt::format("cannot open: {}", std::strerror(errno)), {}});
  }
  std::string bytes;
  char chunk[1 << 16];
  if (std::fseek(f, 0, SEEK_END) == 0) {
    long size = std::ftell(f);
    if (size > 0) {
      bytes.reserve(static_cast<std::size_t>(size) + simdjson::SIMDJSON_PADDING);
    }
    std::rewind(f);
  }
  std::size_t n;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
    bytes.append(chunk, n);
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) {
    throw read_error({path, 0, fmt::format("cannot read: {}", std::strerror(errno)), {}});
  }
  return padded(std::move(bytes));
}

// The number of double quotes in [p, end).
std::size_t count_quotes(const char* p, const char* end) {
  std::size_t n = 0;
  while ((p = static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(end - p)))) !=
         nullptr) {
    ++n;
    ++p;
  }
  return n;
}

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

// Splits one CSV line into fields. Unquoted lines (the common case) yield views into the line;
// quoted fields are unescaped into `storage`. Returns false on a malformed quote.
bool split_csv(std::string_view line, std::vector<std::string_view>& fields,
               std::vector<std::string>& storage, std::string& reason) {
  fields.clear();
  if (std::memchr(line.data(), '"', line.size()) == nullptr) {
    const char* p = line.data();
    const char* end = p + line.size();
    while (true) {
      const char* comma =
          static_cast<const char*>(std::memchr(p, ',', static_cast<std::size_t>(end - p)));
      if (comma == nullptr) {
        fields.emplace_back(p, static_cast<std::size_t>(end - p));
        return true;
      }
      fields.emplace_back(p, static_cast<std::size_t>(comma - p));
      p = comma + 1;
    }
  }
  storage.clear();
  storage.reserve(line.size() + 1);  // no reallocation: views into storage stay valid
  std::size_t i = 0;
  while (true) {
    std::string& cell = storage.emplace_back();
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) {
          reason = "unterminated quoted field";
          return false;
        }
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cell.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cell.push_back(line[i++]);
      }
      if (i < line.size() && line[i] != ',') {
        reason = "unexpected character after a quoted field";
        return false;
      }
    } else {
      while (i < line.size() && line[i] != ',') {
        if (line[i] == '"') {
          reason = "quote inside an unquoted field";
          return false;
        }
        cell.push_back(line[i++]);
      }
    }
    fields.emplace_back(cell);
    if (i >= line.size()) {
      return true;
    }
    ++i;  // the comma
  }
}

// Cuts `s` to at most `max` bytes without splitting a UTF-8 sequence.
std::string_view prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) {
    return s;
  }
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return s.substr(0, n);
}

// A string as a message quotes it: long ones shortened, so that a hostile megabyte-long name
// never becomes a megabyte-long message.
std::string quote(std::string_view s) {
  constexpr std::size_t shown = 64;
  if (s.size() > shown) {
    return fmt::format("\"{}...\" ({} bytes)", prefix(s, shown), s.size());
  }
  return fmt::format("\"{}\"", s);
}

// The line as an input_problem keeps it: whole, or its start if it is over the line limit.
std::string problem_text(std::string_view line, const input_limits& limits) {
  if (line.size() <= limits.max_line_bytes) {
    return std::string{line};
  }
  return std::string{prefix(line, 256)} + "...";
}

[[gnu::cold, gnu::noinline]] void say_too_long(std::size_t size, std::size_t max,
                                               std::string_view what, const char* limit,
                                               std::string& reason) {
  reason = fmt::format("{} is {} bytes long; at most {} are allowed ({})", what, size, max, limit);
}
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
                                                   std::string& reason) {
  reason = fmt::format("{} {} is outside the supported range ({})", what,
                       text.size() <= 64 ? std::string{text} : quote(text), input_range_text);
}

// ts: epoch seconds (fast path) or what parse_time reads.
bool parse_ts(std::string_view text, time_point& out, std::string& reason) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc{} && end == text.data() + text.size()) [[likely]] {
    out = from_epoch(v);
    if (!in_input_range(out)) {
      say_out_of_range("ts", text, reason);
      return false;
    }
    return true;
  }
  time_error why = time_error::none;
  if (auto t = parse_time(text, &why)) {
    out = *t;
    return true;
  }
  if (why == time_error::out_of_range) {
    say_out_of_range("ts", text, reason);
    return false;
  }
  reason = fmt::format("ts {} is not an integer (epoch seconds) or an ISO-8601 time with offset",
                       quote(text));
  return false;
}

// A finite decimal. from_chars also accepts "nan", "inf" and "infinity", which no amount or
// score means (and NaN would compare unequal to itself in every condition).
bool parse_decimal(std::string_view text, double& out, std::string_view what, std::string& reason) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (end != text.data() + text.size() ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
    reason = fmt::format("{} {} is not a number", what, quote(text));
    return false;
  }
  if (ec == std::errc::result_out_of_range || !std::isfinite(out)) {
    reason = fmt::format("{} {} is not a finite number", what, quote(text));
    return false;
  }
  return true;
}

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
value cell_value(std::string_view f) {
  std::string_view digits = f;
  if (!digits.empty() && digits.front() == '-') {
    digits.remove_prefix(1);
  }
  const auto dot = digits.find('.');
  const std::string_view whole = digits.substr(0, dot);
  const bool plain = !whole.empty() &&
                     whole.find_first_not_of("0123456789") == std::string_view::npos &&
                     (whole.size() == 1 || whole.front() != '0') &&
                     (dot == std::string_view::npos ||
                      (dot + 1 < digits.size() &&
                       digits.find_first_not_of("0123456789", dot + 1) == std::string_view::npos));
  if (plain) {
    if (dot == std::string_view::npos) {
      std::int64_t i = 0;
      auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), i);
      if (ec == std::errc{} && end == f.data() + f.size()) {
        return i;
      }
    } else {
      double d = 0;
      auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), d);
      if (ec == std::errc{} && end == f.data() + f.size() && std::isfinite(d)) {
        return d;
      }
    }
  }
  return std::string{f};
}

// ---- JSON values ---------------------------------------------------------------------------

const char* json_type_name(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a bool";
    case od::json_type::null:
      return "null";
  }
  return "a value";
}

// A TIME in JSON: epoch seconds as a number (a fraction floored, as parse_time does), or a
// string parse_time accepts.
bool json_time(od::value v, time_point& out, std::string& reason, std::string_view what) {
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  if (t == od::json_type::number) {
    od::number n;
    if (v.get_number().get(n)) {
      reason = fmt::format("{} is not a valid number", what);
      return false;
    }
    if (n.is_int64()) {
      out = from_epoch(n.get_int64());
    } else {
      // A double, or an integer beyond 64 bits (far out of range either way).
      const double d = n.as_double();
      if (!std::isfinite(d) || d < -1e13 || d > 1e13) {
        say_out_of_range(what, fmt::format("{}", d), reason);
        return false;
      }
      out = from_epoch(static_cast<std::int64_t>(std::floor(d)));
    }
    if (!in_input_range(out)) {
      say_out_of_range(what, fmt::format("{}", to_epoch(out)), reason);
      return false;
    }
    return true;
  }
  if (t == od::json_type::string) {
    std::string_view s;
    if (v.get_string().get(s)) {
      reason = "not valid JSON";
      return false;
    }
    time_error why = time_error::none;
    if (auto p = parse_time(s, &why)) {
      out = *p;
      return true;
    }
    if (why == time_error::out_of_range) {
      say_out_of_range(what, s, reason);
      return false;
    }
    reason =
        fmt::format("{} {} is not an ISO-8601 time with offset or epoch seconds", what, quote(s));
    return false;
  }
  reason = fmt::format("{} must be a time (a number or a string), not {}", what, json_type_name(t));
  return false;
}

bool json_string(od::value v, std::string& out, std::string& reason, std::string_view what,
                 std::size_t max_bytes, const char* limit) {
  std::string_view s;
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  if (t != od::json_type::string) {
    reason = fmt::format("{} must be a string, not {}", what, json_type_name(t));
    return false;
  }
  if (v.get_string().get(s)) {
    reason = "not valid JSON";
    return false;
  }
  if (too_long(s, max_bytes, what, limit, reason)) {
    return false;
  }
  out.assign(s);
  return true;
}
bool json_name(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits) {
  return json_string(v, out, reason, what, limits.max_name_bytes, "max_name_bytes");
}
bool json_text(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits) {
  return json_string(v, out, reason, what, limits.max_string_bytes, "max_string_bytes");
}

// A typed value: string, integer, decimal, bool, or {"time": TIME}.
bool json_value(od::value v, value& out, std::string& reason, const std::string& what,
                const input_limits& limits) {
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  switch (t) {
    case od::json_type::string: {
      std::string_view s;
      if (v.get_string().get(s)) {
        reason = "not valid JSON";
        return false;
      }
      if (string_too_long(s, limits, what, reason)) {
        return false;
      }
      out = std::string{s};
      return true;
    }
    case od::json_type::number: {
      od::number n;
      if (v.get_number().get(n)) {
        reason = fmt::format("{}: not a valid number", what);
        return false;
      }
      if (n.is_int64()) {
        out = n.get_int64();
      } else if (n.is_double()) {
        if (!std::isfinite(n.get_double())) {
          reason = fmt::format("{}: not a finite number", what);
          return false;
        }
        out = n.get_double();
      } else {
        reason = fmt::format("{}: integer out of range", what);
        return false;
      }
      return true;
    }
    case od::json_type::boolean: {
      bool b;
      if (v.get_bool().get(b)) {
        reason = "not valid JSON";
        return false;
      }
      out = b;
      return true;
    }
    case od::json_type::object: {
      od::object o;
      if (v.get_object().get(o)) {
        reason = "not valid JSON";
        return false;
      }
      bool seen = false;
      for (auto f : o) {
        std::string_view k;
        if (f.unescaped_key().get(k)) {
          reason = "not valid JSON";
          return false;
        }
        if (k != "time" || seen) {
          reason = fmt::format("{}: an object value must be {{\"time\": TIME}}", what);
          return false;
        }
        time_point tp;
        if (!json_time(f.value(), tp, reason, what)) {
          return false;
        }
        out = tp;
        seen = true;
      }
      if (!seen) {
        reason = fmt::format("{}: an object value must be {{\"time\": TIME}}", what);
        return false;
      }
      return true;
    }
    case od::json_type::array:
    case od::json_type::null:
      break;
  }
  reason = fmt::format("{} must be a string, number, bool or {{\"time\": TIME}}, not {}", what,
                       json_type_name(t));
  return false;
}

bool json_value_map(od::value v, name_map<value>& out, std::string& reason, std::string_view what,
                    const input_limits& limits) {
  od::object o;
  if (v.get_object().get(o)) {
    reason = fmt::format("{} must be an object", what);
    return false;
  }
  for (auto f : o) {
    std::string_view k;
    if (f.unescaped_key().get(k)) {
      reason = "not valid JSON";
      return false;
    }
    if (k.size() > limits.max_name_bytes) {  // the message only when needed
      name_too_long(k, limits, fmt::format("a name in {}", what), reason);
      return false;
    }
    std::string name{k};
    value val;
    if (!json_value(f.value(), val, reason, fmt::format("{}/{}", what, name), limits)) {
      return false;
    }
    out.insert_or_assign(std::move(name), std::move(val));
  }
  return true;
}

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

}  // namespace

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
  std::vector<std::string_view> fields;
  std::vector<std::string> storage;

  // Event types seen so far and whether the program knows them: a handful of distinct types,
  // so a linear scan beats hashing each event's type.
  std::vector<std::pair<std::string, bool>> type_cache;

  od::parser parser;
  std::string reason;

  impl(std::string name, file_format f, event_read_options o, text_buffer b)
      : file(std::move(name)), format(f), options(std::move(o)), buf(std::move(b)) {
    cursor = {buf.data(), buf.data(), buf.data() + buf.size};
    cursor.csv = format == file_format::csv && !options.one_line_records;
    cursor.max_record = options.limits.max_line_bytes;
    if (format == file_format::csv) {
      read_header();
    }
  }

  [[noreturn]] void bad_header(std::string why, std::string_view text) {
    throw read_error({file, cursor.line, "bad header: " + why, problem_text(text, options.limits)});
  }

  void read_header() {
    std::string_view line;
    if (!cursor.next(line)) {
      bad_header("the file is empty (expected ts,contact,type,key,value)", {});
    }
    if (line_too_long(line, options.limits, reason) || !valid_utf8(line, reason)) {
      bad_header(reason, line);
    }
    if (!split_csv(line, fields, storage, reason)) {
      bad_header(reason, line);
    }
    columns = fields.size();
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

  bool knows_type(std::string_view type) {
    if (options.program == nullptr) {
      return true;
    }
    for (const auto& [name, known] : type_cache) {
      if (name == type) {
        return known;
      }
    }
    const bool known = options.program->knows_event_type(type);
    if (type_cache.size() < 32) {
      type_cache.emplace_back(std::string{type}, known);
    }
    return known;
  }

  // Checks shared by both formats, once the fields are parsed.
  bool check(const event& e) {
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
    if (last && e.at < *last) {
      reason =
          fmt::format("ts {} is before the previous event's ts {} (events must be sorted by ts)",
                      to_epoch(e.at), to_epoch(*last));
      return false;
    }
    if (options.not_before && e.at < *options.not_before) {
      reason = fmt::format(
          "ts {} is before {}, the time already processed (events must be sorted by ts)",
          to_epoch(e.at), to_epoch(*options.not_before));
      return false;
    }
    if (options.not_after && e.at > *options.not_after) {
      reason = fmt::format("ts {} is after the end of the replay ({})", to_epoch(e.at),
                           to_epoch(*options.not_after));
      return false;
    }
    return true;
  }

  bool parse_csv(std::string_view line, event& e) {
    if (!valid_utf8(line, reason)) {
      return false;
    }
    if (!split_csv(line, fields, storage, reason)) {
      if (options.one_line_records && reason == "unterminated quoted field") {
        reason += " (here each record must fit on one line)";
      }
      return false;
    }
    if (fields.size() != columns) {
      reason = fmt::format("expected {} fields, got {}", columns, fields.size());
      return false;
    }
    if (!parse_ts(fields[static_cast<std::size_t>(col_ts)], e.at, reason)) {
      return false;
    }
    e.contact.assign(fields[static_cast<std::size_t>(col_contact)]);
    e.type.assign(fields[static_cast<std::size_t>(col_type)]);
    if (col_key >= 0) {
      e.key.assign(fields[static_cast<std::size_t>(col_key)]);
    }
    if (col_value >= 0) {
      const std::string_view v = fields[static_cast<std::size_t>(col_value)];
      if (!v.empty()) {
        double d;
        if (!parse_decimal(v, d, "value", reason)) {
          return false;
        }
        e.props.insert_or_assign("value", d);
      }
    }
    for (const auto& [col, name] : {std::pair{col_lat, "lat"}, std::pair{col_lon, "lon"}}) {
      const std::string_view v = col >= 0 ? fields[static_cast<std::size_t>(col)] : "";
      if (!v.empty()) {
        double d;
        if (!parse_decimal(v, d, name, reason)) {
          return false;
        }
        e.props.insert_or_assign(name, d);
      }
    }
    for (const auto& [col, name] : prop_columns) {
      const std::string_view v = fields[col];
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
            return json_time(v, e.at, reason, k);
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

  bool read(std::vector<event>& out, std::size_t max_events) {
    out.clear();
    std::string_view line;
    while (out.size() < max_events && cursor.next(line)) {
      if (line.empty()) {
        continue;
      }
      if (line_too_long(line, options.limits, reason)) {
        refuse(line);
        continue;
      }
      event& e = out.emplace_back();
      const bool ok = format == file_format::csv ? parse_csv(line, e) : parse_jsonl(line, e);
      if (!ok) {
        out.pop_back();
        refuse(line);
        continue;
      }
      last = e.at;
      ++accepted;
    }
    return !out.empty();
  }
};

namespace {

// Standard input has no name to go by: JSON Lines if its first non-blank byte is '{' (no CSV
// header starts so), else CSV.
file_format sniff_format(const text_buffer& buf) {
  for (std::size_t i = 0; i < buf.size; ++i) {
    const char c = buf.data()[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      return c == '{' ? file_format::jsonl : file_format::csv;
    }
  }
  return file_format::csv;
}

file_format format_for(const std::string& path, const std::optional<file_format>& given,
                       const text_buffer& buf) {
  if (given) {
    return *given;
  }
  return path == "-" ? sniff_format(buf) : format_of(path);
}

}  // namespace

event_reader::event_reader(const std::string& path, event_read_options options) {
  if (!options.format && path != "-") {
    format_of(path);  // a bad extension is refused before the file is read
  }
  text_buffer buf = read_whole_file(path);
  const file_format f = format_for(path, options.format, buf);
  impl_ = std::make_unique<impl>(path, f, std::move(options), std::move(buf));
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
  return impl_->buf.size;
}
std::size_t event_reader::bytes_done() const noexcept {
  return static_cast<std::size_t>(impl_->cursor.pos - impl_->cursor.begin);
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

// ---- contacts ----------------------------------------------------------------------------------

namespace {

class contact_parser {
 public:
  contact_parser(const text_buffer& buf, file_format format, std::string file,
                 const contact_read_options& options)
      : buf_(buf),
        format_(format),
        file_(std::move(file)),
        options_(options),
        cursor_{buf.data(), buf.data(), buf.data() + buf.size} {
    cursor_.csv = format == file_format::csv;
    cursor_.max_record = options.limits.max_line_bytes;
  }

  std::vector<contact> run() {
    if (format_ == file_format::csv) {
      read_header();
    }
    std::string_view line;
    while (cursor_.next(line)) {
      if (line.empty()) {
        continue;
      }
      contact c;
      const bool ok = !line_too_long(line, options_.limits, reason_) &&
                      (format_ == file_format::csv ? parse_csv(line, c) : parse_jsonl(line, c));
      if (ok && c.id.empty()) {
        reason_ = "empty contact id";
      } else if (ok && options_.program != nullptr && !c.time_zone.empty() &&
                 !options_.program->knows_time_zone(c.time_zone)) {
        reason_ = detail::unknown_zone(c);
      } else if (ok && !name_too_long(c.id, options_.limits, "contact id", reason_)) {
        auto [it, fresh] = first_line_.emplace(c.id, cursor_.line);
        if (fresh) {
          out_.push_back(std::move(c));
          continue;
        }
        reason_ = fmt::format("duplicate contact {} (first on line {})", quote(c.id), it->second);
      }
      input_problem p{file_, cursor_.line, std::move(reason_), problem_text(line, options_.limits)};
      reason_.clear();
      if (!options_.on_reject) {
        throw read_error(std::move(p));
      }
      options_.on_reject(p);
    }
    return std::move(out_);
  }

 private:
  enum class column : std::uint8_t {
    id,
    status,
    owner,
    stage,
    time_zone,
    score,
    consent,
    detail,
    lat,
    lon
  };

  // The location from "lat" and "lon" (docs/rules.md, "Location"): both or neither, in range.
  bool set_location(std::optional<double> lat, std::optional<double> lon, contact& c) {
    if (!lat && !lon) {
      return true;
    }
    if (!lat || !lon) {
      reason_ = fmt::format("{} without {} (a location needs both)", lat ? "lat" : "lon",
                            lat ? "lon" : "lat");
      return false;
    }
    if (auto why = geo_problem(*lat, *lon)) {
      reason_ = *why;
      return false;
    }
    c.location = geo_point{*lat, *lon};
    return true;
  }

  const text_buffer& buf_;
  file_format format_;
  std::string file_;
  const contact_read_options& options_;
  line_cursor cursor_;
  std::vector<contact> out_;
  detail::string_map<std::size_t> first_line_;
  std::vector<std::pair<column, std::string>> columns_;
  std::vector<std::string_view> fields_;
  std::vector<std::string> storage_;
  od::parser parser_;
  std::string reason_;

  [[noreturn]] void bad_header(std::string why, std::string_view text) {
    throw read_error(
        {file_, cursor_.line, "bad header: " + why, problem_text(text, options_.limits)});
  }

  void read_header() {
    std::string_view line;
    if (!cursor_.next(line)) {
      bad_header("the file is empty (expected a header row with a \"contact\" column)", {});
    }
    if (line_too_long(line, options_.limits, reason_) || !valid_utf8(line, reason_)) {
      bad_header(reason_, line);
    }
    if (!split_csv(line, fields_, storage_, reason_)) {
      bad_header(reason_, line);
    }
    bool has_id = false;
    detail::string_map<bool> seen;
    for (std::string_view name : fields_) {
      if (name.empty()) {
        bad_header("a column has no name", line);
      }
      if (name_too_long(name, options_.limits, "a column name", reason_)) {
        bad_header(reason_, line);
      }
      if (!seen.emplace(std::string{name}, true).second) {
        bad_header(fmt::format("column {} appears twice", quote(name)), line);
      }
      column c = column::detail;
      if (name == "contact" || name == "id") {
        if (has_id) {
          bad_header("both \"contact\" and \"id\" columns given", line);
        }
        has_id = true;
        c = column::id;
      } else if (name == "status") {
        c = column::status;
      } else if (name == "owner") {
        c = column::owner;
      } else if (name == "stage") {
        c = column::stage;
      } else if (name == "time_zone") {
        c = column::time_zone;
      } else if (name == "score") {
        c = column::score;
      } else if (name == "consent") {
        c = column::consent;
      } else if (name == "lat") {
        c = column::lat;
      } else if (name == "lon") {
        c = column::lon;
      }
      columns_.emplace_back(c, std::string{name});
    }
    if (!has_id) {
      bad_header("missing column \"contact\" (or \"id\")", line);
    }
  }

  bool parse_csv(std::string_view line, contact& c) {
    if (!valid_utf8(line, reason_) || !split_csv(line, fields_, storage_, reason_)) {
      return false;
    }
    if (fields_.size() != columns_.size()) {
      reason_ = fmt::format("expected {} fields, got {}", columns_.size(), fields_.size());
      return false;
    }
    const input_limits& limits = options_.limits;
    std::optional<double> lat, lon;
    for (std::size_t i = 0; i < fields_.size(); ++i) {
      const std::string_view f = fields_[i];
      if (columns_[i].first != column::id && columns_[i].first != column::score &&
          string_too_long(f, limits, columns_[i].second, reason_)) {
        return false;
      }
      switch (columns_[i].first) {
        case column::id:
          c.id.assign(f);
          break;
        case column::status:
          if (!f.empty()) {
            c.status.assign(f);
          }
          break;
        case column::owner:
          c.owner.assign(f);
          break;
        case column::stage:
          c.stage.assign(f);
          break;
        case column::time_zone:
          c.time_zone.assign(f);
          break;
        case column::score:
          if (!f.empty() && !parse_decimal(f, c.score, "score", reason_)) {
            return false;
          }
          break;
        case column::consent:  // the consented channels, ';'-separated: "email;sms"
          for (std::size_t from = 0; from <= f.size();) {
            const auto end = std::min(f.find(';', from), f.size());
            if (end > from) {
              if (!detail::known_channel(f.substr(from, end - from), reason_)) {
                return false;
              }
              c.consent.insert_or_assign(std::string{f.substr(from, end - from)}, true);
            }
            from = end + 1;
          }
          break;
        case column::detail:
          if (!f.empty()) {
            c.details.insert_or_assign(columns_[i].second, std::string{f});
          }
          break;
        case column::lat:
        case column::lon:
          if (!f.empty()) {
            double d = 0;
            if (!parse_decimal(f, d, columns_[i].second, reason_)) {
              return false;
            }
            (columns_[i].first == column::lat ? lat : lon) = d;
          }
          break;
      }
    }
    return set_location(lat, lon, c);
  }

  bool parse_jsonl(std::string_view line, contact& c) {
    const input_limits& limits = options_.limits;
    bool has_id = false;
    std::optional<double> lat, lon;
    bool ok = for_each_member(
        parser_, buf_, cursor_.offset_of(line), line, options_.limits, reason_,
        [&](std::string_view k, od::value v) {
          if (k == "id" || k == "contact") {
            if (has_id) {
              reason_ = "both \"id\" and \"contact\" given";
              return false;
            }
            has_id = true;
            return json_name(v, c.id, reason_, k, limits);
          }
          if (k == "status") {
            return json_text(v, c.status, reason_, k, limits);
          }
          if (k == "owner") {
            return json_text(v, c.owner, reason_, k, limits);
          }
          if (k == "stage") {
            return json_text(v, c.stage, reason_, k, limits);
          }
          if (k == "time_zone") {
            return json_text(v, c.time_zone, reason_, k, limits);
          }
          if (k == "lat" || k == "lon") {
            double d = 0;
            if (v.get_double().get(d) || !std::isfinite(d)) {
              reason_ = fmt::format("{} must be a finite number", k);
              return false;
            }
            (k == "lat" ? lat : lon) = d;
            return true;
          }
          if (k == "score") {
            if (v.get_double().get(c.score) || !std::isfinite(c.score)) {
              reason_ = "score must be a finite number";
              return false;
            }
            return true;
          }
          if (k == "details") {
            return json_value_map(v, c.details, reason_, "details", limits);
          }
          if (k == "tags") {
            od::object o;
            if (v.get_object().get(o)) {
              reason_ = "tags must be an object (tag -> time added)";
              return false;
            }
            for (auto f : o) {
              std::string_view tag;
              if (f.unescaped_key().get(tag)) {
                reason_ = "not valid JSON";
                return false;
              }
              if (name_too_long(tag, limits, "a tag", reason_)) {
                return false;
              }
              std::string name{tag};
              time_point at;
              if (!json_time(f.value(), at, reason_, fmt::format("tags/{}", name))) {
                return false;
              }
              c.tags.insert_or_assign(std::move(name), at);
            }
            return true;
          }
          if (k == "consent") {
            od::object o;
            if (v.get_object().get(o)) {
              reason_ = "consent must be an object (channel -> bool)";
              return false;
            }
            for (auto f : o) {
              std::string_view channel;
              bool granted;
              if (f.unescaped_key().get(channel)) {
                reason_ = "not valid JSON";
                return false;
              }
              if (name_too_long(channel, limits, "a consent channel", reason_) ||
                  !detail::known_channel(channel, reason_)) {
                return false;
              }
              if (f.value().get_bool().get(granted)) {
                reason_ = fmt::format("consent/{} must be a bool", channel);
                return false;
              }
              c.consent.insert_or_assign(std::string{channel}, granted);
            }
            return true;
          }
          if (k == "groups") {
            od::array a;
            if (v.get_array().get(a)) {
              reason_ = "groups must be an array of strings";
              return false;
            }
            for (auto g : a) {
              std::string_view name;
              if (g.get_string().get(name)) {
                reason_ = "groups must be an array of strings";
                return false;
              }
              if (name_too_long(name, limits, "a group", reason_)) {
                return false;
              }
              c.groups.insert(std::string{name});
            }
            return true;
          }
          reason_ = fmt::format(
              "unknown field {} (expected id, status, details, tags, owner, stage, score, consent, "
              "time_zone, groups, lat, lon)",
              quote(k));
          return false;
        });
    if (ok && !has_id) {
      reason_ = "missing field \"id\"";
      return false;
    }
    return ok && set_location(lat, lon, c);
  }
};

}  // namespace

std::vector<contact> parse_contacts(std::string_view text, file_format format,
                                    const std::string& file_name,
                                    const contact_read_options& options) {
  const text_buffer buf = padded(std::string{text});
  return contact_parser{buf, format, file_name, options}.run();
}

std::vector<contact> read_contacts(const std::string& path, const contact_read_options& options) {
  if (!options.format && path != "-") {
    format_of(path);  // a bad extension is refused before the file is read
  }
  const text_buffer buf = read_whole_file(path);
  return contact_parser{buf, format_for(path, options.format, buf), path, options}.run();
}

}  // namespace nudge
