// What the event and contact readers share (events.cpp, contacts.cpp): reading a file (whole,
// or a window at a time; plain, gzip or standard input), walking it record by record, the checks
// and field parsing of both formats, and JSON values. Private to src/io/events.
//
// CSV is split by hand with memchr and from_chars, since parsing sits on the replay's critical
// path; JSON Lines is read with simdjson On Demand, one document per line so that every problem
// names its line.
#pragma once

#include <bit>
#include <cassert>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#if defined(__SSE2__)
#  include <emmintrin.h>
#endif

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

// The fast path of the CSV readers: splits a line that holds no double quote into its fields in
// one pass. The window is classified 64 bytes at a time into bit masks of its line breaks,
// commas and quotes (SSE2: 12 compares), which the next line, starting in the same 64 bytes,
// reuses; the fields are then read off the masks, a few instructions per comma. (memchr per
// line, per quote check and per comma, into a growing vector, took 400 instructions a line.)
// Any other record (a quote, no line break before the window's end, more fields than expected,
// over the length limit) is left to line_cursor and split_csv, which know quotes, quoted line
// breaks and refills: a line split here is the line and the fields they would have returned.
class plain_splitter {
  static_assert(simdjson::SIMDJSON_PADDING >= 64,
                "a classified chunk may reach 63 bytes past the end");

 public:
  // The room split() needs for lines of up to `fields` fields.
  static constexpr std::size_t cells_for(std::size_t fields) noexcept { return fields + 64; }

  // Forgets the classified bytes: the window's bytes changed (a refill).
  void reset() noexcept { base_ = nullptr; }

  // Splits the line at `p` (in a window ending at `end` that text_buffer's padding follows: 64
  // bytes of zeros) into `cells`, which has room for `fields` + 64 (cells_for). Returns the
  // number of fields, at most `fields`, with `line_end` (a trailing '\r' dropped) and `next`
  // (past its '\n') set; 0 if the line is not one for this path.
  std::size_t split(const char* p, const char* end, std::size_t max_bytes, std::size_t fields,
                    std::span<std::string_view> cells, const char*& line_end, const char*& next) {
    assert(cells.size() >= cells_for(fields));
    const char* b = base_;
    if (b == nullptr || p < b || p >= b + 64) {
      load(p);
      b = p;
    }
    std::uint64_t from = ~std::uint64_t{0} << (p - b);  // the bits of this line's bytes
    std::string_view* cell = cells.data();
    std::string_view* const fields_end = cell + fields;
    const char* start = p;  // of the current field
    while (true) {
      const std::uint64_t newline = newline_ & from;
      const std::uint64_t before =
          (newline != 0 ? (newline & (0 - newline)) - 1 : ~std::uint64_t{0}) & from;
      if ((quote_ & before) != 0) {
        return 0;
      }
      // `cells` has room for 64 more than `fields`: no check per comma.
      for (std::uint64_t commas = comma_ & before; commas != 0; commas &= commas - 1) {
        const char* comma = b + std::countr_zero(commas);
        *cell++ = std::string_view{start, static_cast<std::size_t>(comma - start)};
        start = comma + 1;
      }
      if (cell >= fields_end) [[unlikely]] {
        return 0;  // more fields than `fields` (the line's last one comes after these)
      }
      if (newline != 0) {
        const char* at = b + std::countr_zero(newline);
        if (at >= end) {
          return 0;
        }
        line_end = at > p && at[-1] == '\r' ? at - 1 : at;
        *cell++ = std::string_view{start, static_cast<std::size_t>(line_end - start)};
        next = at + 1;
        return static_cast<std::size_t>(cell - cells.data());
      }
      b += 64;
      if (b >= end || static_cast<std::size_t>(b - p) > max_bytes) {
        return 0;
      }
      load(b);
      from = ~std::uint64_t{0};
    }
  }

 private:
  const char* base_ = nullptr;  // the first of the 64 bytes classified
  std::uint64_t newline_ = 0, quote_ = 0, comma_ = 0;

  void load(const char* b) noexcept {
    base_ = b;
#if defined(__SSE2__)
    std::uint64_t newline = 0, quote = 0, comma = 0;
    for (int i = 0; i < 4; ++i) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16 * i));
      auto mask = [&](char c) {
        return static_cast<std::uint64_t>(
                   static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(c)))))
               << (16 * i);
      };
      newline |= mask('\n');
      quote |= mask('"');
      comma |= mask(',');
    }
    newline_ = newline;
    quote_ = quote;
    comma_ = comma;
#else
    newline_ = quote_ = comma_ = 0;
    for (unsigned i = 0; i < 64; ++i) {
      newline_ |= static_cast<std::uint64_t>(b[i] == '\n') << i;
      quote_ |= static_cast<std::uint64_t>(b[i] == '"') << i;
      comma_ |= static_cast<std::uint64_t>(b[i] == ',') << i;
    }
#endif
  }
};

// `s` = `text`, for text outside `s` (a field in the window): clear() and append() cost a third
// less than assign(), whose checks for overlapping text and moves of a tail are of no use here.
inline void set_text(std::string& s, std::string_view text) {
  s.clear();
  s.append(text);
}

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

// ts: epoch seconds or what parse_time reads (parse_ts's slow path: anything but plain digits).
bool parse_ts_general(std::string_view text, time_point& out, std::string& reason);

// True if the eight bytes of `w` are all ASCII digits (simdjson's and fast_float's test).
constexpr bool eight_digits(std::uint64_t w) noexcept {
  return (((w + 0x4646464646464646u) | (w - 0x3030303030303030u)) & 0x8080808080808080u) == 0;
}

// The value of eight ASCII digits, the first in the lowest byte (little-endian loads), in three
// multiplications instead of eight steps.
constexpr std::uint64_t eight_digits_value(std::uint64_t w) noexcept {
  w -= 0x3030303030303030u;
  w = (w * 10) + (w >> 8);  // each byte pair: its two digits' value
  return (((w & 0x000000FF000000FFu) * (100 + (std::uint64_t{1000000} << 32))) +
          (((w >> 16) & 0x000000FF000000FFu) * (1 + (std::uint64_t{10000} << 32)))) >>
         32;
}

// ts: epoch seconds or what parse_time reads. Inline, with the common case (8 to 18 digits, read
// as std::from_chars reads them) parsed here, eight digits at once on little-endian machines:
// from_chars took 160 instructions a line. Anything else goes to parse_ts_general.
inline bool parse_ts(std::string_view text, time_point& out, std::string& reason) {
  if constexpr (std::endian::native == std::endian::little) {
    if (text.size() >= 8 && text.size() <= 18) [[likely]] {
      std::uint64_t w;
      std::memcpy(&w, text.data(), 8);
      bool digits = eight_digits(w);
      std::uint64_t v = eight_digits_value(w);
      if (text.size() == 10) {  // epoch seconds from 2001 to 2286: the last two without a loop
        const auto d1 = static_cast<std::uint64_t>(static_cast<unsigned char>(text[8])) - '0';
        const auto d2 = static_cast<std::uint64_t>(static_cast<unsigned char>(text[9])) - '0';
        digits &= (d1 <= 9) & (d2 <= 9);
        v = v * 100 + d1 * 10 + d2;
      } else {
        for (const char c : text.substr(8)) {
          const auto d = static_cast<std::uint64_t>(static_cast<unsigned char>(c)) - '0';
          digits &= d <= 9;
          v = v * 10 + d;  // unsigned: a non-digit may wrap it, harmlessly (it is then unused)
        }
      }
      if (digits) [[likely]] {
        out = from_epoch(static_cast<std::int64_t>(v));
        if (out > max_input_time) [[unlikely]] {
          say_out_of_range("ts", text, reason);
          return false;
        }
        return true;
      }
    }
  }
  return parse_ts_general(text, out, reason);
}

// A finite decimal. from_chars also accepts "nan", "inf" and "infinity", which no amount or
// score means (and NaN would compare unequal to itself in every condition). (parse_decimal's
// slow path: anything but the plain decimals it reads itself.)
bool parse_decimal_general(std::string_view text, double& out, std::string_view what,
                           std::string& reason);

// A finite decimal, as parse_decimal_general reads it. Inline, with the common case ("-12",
// "49.99": at most 15 digits, at most 22 after the point) computed here as digits / 10^k, which
// is exact for such operands and rounded once, so the same double std::from_chars returns (the
// fast path of Clinger's algorithm, as fast_float's); from_chars took 200 instructions a value.
inline bool parse_decimal(std::string_view text, double& out, std::string_view what,
                          std::string& reason) {
  static constexpr double powers_of_ten[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                             1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                             1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char* p = text.data();
  const char* const end = p + text.size();
  const bool negative = p != end && *p == '-';
  p += negative ? 1 : 0;
  std::uint64_t digits = 0;
  std::size_t count = 0, after_point = 0;
  const char* const whole = p;
  for (; p != end && static_cast<unsigned>(*p - '0') <= 9; ++p, ++count) {
    digits = digits * 10 + static_cast<std::uint64_t>(*p - '0');
  }
  bool plain = p != whole;  // digits before the point, and after it if there is one
  if (plain && p != end && *p == '.') {
    const char* const fraction = ++p;
    for (; p != end && static_cast<unsigned>(*p - '0') <= 9; ++p, ++count) {
      digits = digits * 10 + static_cast<std::uint64_t>(*p - '0');
    }
    after_point = static_cast<std::size_t>(p - fraction);
    plain = after_point > 0;
  }
  // FLT_EVAL_METHOD 0: the division is done in double, not in a wider type rounded twice.
  if (FLT_EVAL_METHOD == 0 && plain && p == end && count <= 15 && after_point <= 22) [[likely]] {
    const double v = static_cast<double>(digits) / powers_of_ten[after_point];
    out = negative ? -v : v;
    return true;
  }
  return parse_decimal_general(text, out, what, reason);
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
