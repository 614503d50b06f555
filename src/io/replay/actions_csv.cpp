// The actions CSV writer (write_actions_csv, actions_csv_writer): each line formatted straight
// into one buffer, with no call per character and no format string.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <string>

#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/replay.hpp>

namespace nudge {
namespace {

// The buffer's size: lines are written to the stream a MiB at a time.
constexpr std::size_t buffer_bytes = std::size_t{1} << 20;

constexpr std::uint64_t ones = 0x0101010101010101u;
constexpr std::uint64_t highs = 0x8080808080808080u;

// Nonzero if a byte of `w` may need quoting: one below 0x23 (among them '\n', '\r' and '"';
// also a space or a control character, which csv_needs_quotes then clears) or a ','. Exact in
// the other direction: zero means no byte of `w` needs quoting (Bit Twiddling Hacks' hasless
// and haszero).
constexpr std::uint64_t may_need_quotes(std::uint64_t w) noexcept {
  const std::uint64_t low = (w - ones * 0x23) & ~w & highs;
  const std::uint64_t x = w ^ (ones * ',');
  const std::uint64_t comma = (x - ones) & ~x & highs;
  return low | comma;
}

std::uint64_t load8(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

std::uint32_t load4(const char* p) noexcept {
  std::uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}

// Copies `f` to `o` and says whether it may need quotes, eight bytes at a time: one pass over
// the field instead of a scan for the four specials and then a copy.
[[gnu::always_inline]] inline bool copy_field(char* o, std::string_view f) noexcept {
  const char* s = f.data();
  const std::size_t n = f.size();
  if (n >= 8) {
    std::uint64_t maybe = 0;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const std::uint64_t w = load8(s + i);
      std::memcpy(o + i, &w, 8);
      maybe |= may_need_quotes(w);
    }
    if (i < n) {  // the last eight bytes, overlapping the words before
      const std::uint64_t w = load8(s + n - 8);
      std::memcpy(o + n - 8, &w, 8);
      maybe |= may_need_quotes(w);
    }
    return maybe != 0;
  }
  if (n >= 4) {  // two four-byte words, overlapping
    const std::uint32_t a = load4(s);
    const std::uint32_t b = load4(s + n - 4);
    std::memcpy(o, &a, 4);
    std::memcpy(o + n - 4, &b, 4);
    return may_need_quotes(a | (std::uint64_t{b} << 32)) != 0;
  }
  bool maybe = false;
  for (std::size_t i = 0; i < n; ++i) {
    o[i] = s[i];
    maybe |= static_cast<unsigned char>(s[i]) <= '"' || s[i] == ',';
  }
  return maybe;
}

// Writes `f` at `o` as one CSV field, quoted if it must be (nudge/io/csv.hpp); returns its end.
// `o` has room for 2 * f.size() + 2 bytes.
[[gnu::always_inline]] inline char* put_field(char* o, std::string_view f) {
  if (!copy_field(o, f) || !csv_needs_quotes(f)) [[likely]] {
    return o + f.size();
  }
  return write_csv_field(o, f);
}

constexpr char two_digits[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

char* put2(char* o, unsigned v) noexcept {
  std::memcpy(o, two_digits + 2 * v, 2);
  return o + 2;
}

// The epoch seconds as to_chars writes them; a time of ten digits (2001 to 2286) two digits at
// a time, without counting them first (to_chars took 140 instructions a line).
char* put_epoch(char* o, time_point t) noexcept {
  const std::int64_t s = to_epoch(t);
  if (s < 1'000'000'000 || s > 9'999'999'999) [[unlikely]] {
    return std::to_chars(o, o + 24, s).ptr;
  }
  // Two digits, then eight in 32-bit arithmetic (cheaper divisions by constants).
  const auto v = static_cast<std::uint64_t>(s);
  const auto high = static_cast<std::uint32_t>(v / 100'000'000);
  const auto low = static_cast<std::uint32_t>(v % 100'000'000);
  const std::uint32_t a = low / 10'000, b = low % 10'000;
  std::memcpy(o, two_digits + 2 * high, 2);
  std::memcpy(o + 2, two_digits + 2 * (a / 100), 2);
  std::memcpy(o + 4, two_digits + 2 * (a % 100), 2);
  std::memcpy(o + 6, two_digits + 2 * (b / 100), 2);
  std::memcpy(o + 8, two_digits + 2 * (b % 100), 2);
  return o + 10;
}

// format_time's "YYYY-MM-DDTHH:MM:SSZ" for an instant in its range, the date part kept from the
// previous line when the day is the same (a batch's actions are sorted by time).
class iso_times {
 public:
  char* put(char* o, time_point t) {
    const std::int64_t s = to_epoch(t);
    std::int64_t day = s / 86400;
    std::int64_t rem = s % 86400;
    if (rem < 0) {
      rem += 86400;
      --day;
    }
    if (day != day_) {
      day_ = day;
      const std::chrono::year_month_day ymd{std::chrono::sys_days{std::chrono::days{day}}};
      const auto year = static_cast<unsigned>(static_cast<int>(ymd.year()));
      char* d = put2(put2(date_, year / 100), year % 100);
      *d++ = '-';
      d = put2(d, static_cast<unsigned>(ymd.month()));
      *d++ = '-';
      d = put2(d, static_cast<unsigned>(ymd.day()));
      *d = 'T';
    }
    std::memcpy(o, date_, sizeof date_);
    o += sizeof date_;
    const auto r = static_cast<unsigned>(rem);
    o = put2(o, r / 3600);
    *o++ = ':';
    o = put2(o, r % 3600 / 60);
    *o++ = ':';
    o = put2(o, r % 60);
    *o++ = 'Z';
    return o;
  }

 private:
  std::int64_t day_ = std::numeric_limits<std::int64_t>::min();
  char date_[11] = {};  // "YYYY-MM-DDT"
};

}  // namespace

void write_actions_csv(std::ostream& out, std::span<const due_action> actions, time_format format) {
  actions_csv_writer writer{out, format};
  writer.write(actions);
}

actions_csv_writer::actions_csv_writer(std::ostream& out, time_format format)
    : out_(out), format_(format) {
  out_ << "ts,contact,rule,action,arg\n";
}

void actions_csv_writer::write(std::span<const due_action> actions) {
  iso_times iso;
  std::size_t used = 0;
  for (const auto& a : actions) {
    const std::string_view action = a.action();
    // The longest the line can be: a time of at most 20 bytes (24: put_epoch's room), four
    // fields quoted with every byte doubled (rule/step as one), four commas, the line break.
    const std::size_t most =
        24 + 4 * 2 + 5 +
        2 * (a.contact.size() + a.rule.size() + 1 + a.step.size() + action.size() + a.arg.size());
    if (capacity_ - used < most) {
      if (used > 0) {
        out_.write(buf_.get(), static_cast<std::streamsize>(used));
      }
      used = 0;
      if (capacity_ < most) {
        capacity_ = std::max(buffer_bytes, most);
        buf_ = std::make_unique_for_overwrite<char[]>(capacity_);
      }
    }
    char* o = buf_.get() + used;
    if (format_ == time_format::epoch) {
      o = put_epoch(o, a.ts);
    } else if (a.ts >= min_time && a.ts <= max_time) [[likely]] {
      o = iso.put(o, a.ts);
    } else {
      const std::string ts = format_time(a.ts);  // throws: outside the range it prints
      o = std::copy(ts.begin(), ts.end(), o);
    }
    *o++ = ',';
    // RFC 4180: a field holding a comma, quote or line break is quoted (nudge/io/csv.hpp). A
    // workflow step's action names "workflow/step" in the rule column.
    o = put_field(o, a.contact);
    *o++ = ',';
    if (!a.from_workflow()) {
      o = put_field(o, a.rule);
    } else if (!csv_needs_quotes(a.rule) && !csv_needs_quotes(a.step)) {
      o = std::copy(a.rule.begin(), a.rule.end(), o);
      *o++ = '/';
      o = std::copy(a.step.begin(), a.step.end(), o);
    } else {
      o = write_csv_field(o, fmt::format("{}/{}", a.rule, a.step));
    }
    *o++ = ',';
    o = put_field(o, action);
    *o++ = ',';
    o = put_field(o, a.arg);
    *o++ = '\n';
    used = static_cast<std::size_t>(o - buf_.get());
  }
  if (used > 0) {
    out_.write(buf_.get(), static_cast<std::streamsize>(used));
  }
}

}  // namespace nudge
