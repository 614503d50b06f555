// Text forms of instants and durations, and Boost.Date_Time conversions.
#include <charconv>
#include <limits>
#include <stdexcept>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <fmt/format.h>

#include <nudge/time.hpp>

namespace nudge {
namespace {

bool parse_uint(std::string_view s, std::int64_t& out) noexcept {
  if (s.empty() || s.front() == '+' || s.front() == '-') {
    return false;
  }
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Parses exactly `n` digits at s[pos...].
bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) noexcept {
  if (pos + n > s.size()) {
    return false;
  }
  out = 0;
  for (std::size_t i = 0; i < n; ++i) {
    char c = s[pos + i];
    if (c < '0' || c > '9') {
      return false;
    }
    out = out * 10 + (c - '0');
  }
  return true;
}

}  // namespace

std::optional<duration> parse_duration(std::string_view text) noexcept {
  if (text.size() < 2) {
    return std::nullopt;
  }
  std::int64_t unit = 0;
  switch (text.back()) {
    case 's':
      unit = 1;
      break;
    case 'm':
      unit = 60;
      break;
    case 'h':
      unit = 3600;
      break;
    case 'd':
      unit = 86400;
      break;
    case 'w':
      unit = 7 * 86400;
      break;
    default:
      return std::nullopt;
  }
  std::int64_t n = 0;
  if (!parse_uint(text.substr(0, text.size() - 1), n) ||
      n > std::numeric_limits<std::int64_t>::max() / unit) {
    return std::nullopt;
  }
  return duration{n * unit};
}

std::optional<months> parse_months(std::string_view text) noexcept {
  std::int64_t per = 0;
  std::string_view number;
  if (text.size() > 2 && text.ends_with("mo")) {
    per = 1;
    number = text.substr(0, text.size() - 2);
  } else if (text.size() > 1 && text.back() == 'y') {
    per = 12;
    number = text.substr(0, text.size() - 1);
  } else {
    return std::nullopt;
  }
  std::int64_t n = 0;
  // The bound keeps n * 12 and the 31-day estimate far inside 64 bits; limits refuse far less.
  if (!parse_uint(number, n) || n > 1'000'000 / per) {
    return std::nullopt;
  }
  return months{static_cast<std::int32_t>(n * per)};
}

std::string format_duration(duration d) {
  const std::int64_t s = d.count();
  if (s != 0) {
    for (auto [unit, letter] :
         {std::pair{7 * 86400LL, 'w'}, {86400LL, 'd'}, {3600LL, 'h'}, {60LL, 'm'}}) {
      if (s % unit == 0) {
        return fmt::format("{}{}", s / unit, letter);
      }
    }
  }
  return fmt::format("{}s", s);
}

namespace {

// Digits at s[pos...]: how many, and their value (saturated, so that a long run stays large).
std::size_t digit_run(std::string_view s, std::size_t pos, std::int64_t& value) noexcept {
  std::size_t n = 0;
  value = 0;
  while (pos + n < s.size() && s[pos + n] >= '0' && s[pos + n] <= '9') {
    if (value < 1'000'000'000'000'000LL) {
      value = value * 10 + (s[pos + n] - '0');
    }
    ++n;
  }
  return n;
}

std::optional<time_point> refuse(time_error* why, time_error what) noexcept {
  if (why != nullptr) {
    *why = what;
  }
  return std::nullopt;
}

std::optional<time_point> checked(std::int64_t seconds, time_error* why) noexcept {
  const auto t = from_epoch(seconds);
  if (!in_input_range(t)) {
    return refuse(why, time_error::out_of_range);
  }
  if (why != nullptr) {
    *why = time_error::none;
  }
  return t;
}

// Epoch seconds: an optional minus sign, digits, and optionally '.' and more digits (floored).
std::optional<time_point> parse_epoch(std::string_view text, time_error* why) noexcept {
  const bool negative = !text.empty() && text.front() == '-';
  const std::string_view body = text.substr(negative ? 1 : 0);
  const auto dot = body.find('.');
  const std::string_view whole = body.substr(0, dot);
  bool fraction = false;
  if (dot != std::string_view::npos) {
    const std::string_view frac = body.substr(dot + 1);
    if (frac.empty() || frac.find_first_not_of("0123456789") != std::string_view::npos) {
      return refuse(why, time_error::syntax);
    }
    fraction = frac.find_first_not_of('0') != std::string_view::npos;
  }
  if (whole.empty() || whole.find_first_not_of("0123456789") != std::string_view::npos) {
    return refuse(why, time_error::syntax);
  }
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), v);
  if (ec == std::errc::result_out_of_range) {
    return refuse(why, time_error::out_of_range);
  }
  if (ec != std::errc{} || end != whole.data() + whole.size()) {
    return refuse(why, time_error::syntax);
  }
  // Towards the earlier second: -1.5 is 2 seconds before the epoch, not 1.
  return checked(negative ? -v - (fraction ? 1 : 0) : v, why);
}

}  // namespace

std::optional<time_point> parse_time(std::string_view text, time_error* why) noexcept {
  if (!text.empty() && text.find_first_not_of("-.0123456789") == std::string_view::npos &&
      text.find('-', 1) == std::string_view::npos) {
    return parse_epoch(text, why);
  }
  // YYYY-MM-DDTHH:MM:SS[.fraction] then Z, +HH:MM, +HHMM or +HH (or '-'). A year of more than
  // four digits is read, so that it is refused as out of range rather than as a bad text.
  std::int64_t year = 0;
  const std::size_t ny = digit_run(text, 0, year);
  if (ny < 4) {
    return refuse(why, time_error::syntax);
  }
  const std::string_view rest = text.substr(ny);  // "-MM-DDTHH:MM:SS..."
  int mo, d, h, mi, se;
  if (rest.size() < 16 || rest[0] != '-' || !digits(rest, 1, 2, mo) || rest[3] != '-' ||
      !digits(rest, 4, 2, d) || (rest[6] != 'T' && rest[6] != 't' && rest[6] != ' ') ||
      !digits(rest, 7, 2, h) || rest[9] != ':' || !digits(rest, 10, 2, mi) || rest[12] != ':' ||
      !digits(rest, 13, 2, se)) {
    return refuse(why, time_error::syntax);
  }
  std::string_view zone = rest.substr(15);
  if (!zone.empty() && zone.front() == '.') {
    std::int64_t ignored = 0;
    const std::size_t n = digit_run(zone, 1, ignored);
    if (n == 0) {
      return refuse(why, time_error::syntax);
    }
    zone.remove_prefix(1 + n);  // a fraction of a second: dropped (towards the earlier second)
  }
  std::int64_t offset = 0;
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else {
    int oh = 0, om = 0;
    const bool sign = !zone.empty() && (zone[0] == '+' || zone[0] == '-');
    const bool ok = sign && digits(zone, 1, 2, oh) &&
                    (zone.size() == 3 ||                                               // +HH
                     (zone.size() == 5 && digits(zone, 3, 2, om)) ||                   // +HHMM
                     (zone.size() == 6 && zone[3] == ':' && digits(zone, 4, 2, om)));  // +HH:MM
    if (!ok || oh > 23 || om > 59) {
      return refuse(why, time_error::syntax);
    }
    offset = (zone[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59) {
    return refuse(why, time_error::syntax);
  }
  if (ny > 4) {  // "02024-..." is no year; "10000-..." is one past the range
    return refuse(why, year > 9999 ? time_error::out_of_range : time_error::syntax);
  }
  namespace chr = std::chrono;
  const chr::year_month_day ymd{chr::year{static_cast<int>(year)},
                                chr::month{static_cast<unsigned>(mo)},
                                chr::day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) {
    return refuse(why, time_error::syntax);
  }
  const std::int64_t day_count = chr::sys_days{ymd}.time_since_epoch().count();
  return checked(day_count * 86400LL + h * 3600LL + mi * 60LL + se - offset, why);
}

std::string format_time(time_point t) {
  namespace chr = std::chrono;
  const std::int64_t s = to_epoch(t);
  if (t < min_time || t > max_time) {
    throw std::out_of_range(fmt::format(
        "nudge::format_time: {} is outside the supported range (1900-01-01T00:00:00Z to "
        "9999-12-31T23:59:59Z)",
        s));
  }
  std::int64_t day_count = s / 86400;
  std::int64_t rem = s % 86400;
  if (rem < 0) {
    rem += 86400;
    --day_count;
  }
  const chr::year_month_day ymd{chr::sys_days{chr::days{day_count}}};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     rem / 3600, rem % 3600 / 60, rem % 60);
}

boost::posix_time::ptime to_ptime(time_point t) {
  static const boost::posix_time::ptime epoch{boost::gregorian::date{1970, 1, 1}};
  const std::int64_t s = to_epoch(t);
  // Split into days and seconds: boost's seconds() takes a long, and the day part keeps the sum
  // exact for any instant in nudge's range.
  std::int64_t day_count = s / 86400, rem = s % 86400;
  if (rem < 0) {
    rem += 86400;
    --day_count;
  }
  return epoch + boost::gregorian::days{static_cast<long>(day_count)} +
         boost::posix_time::seconds{static_cast<long>(rem)};
}

time_point from_ptime(const boost::posix_time::ptime& p) {
  if (p.is_special()) {
    throw std::out_of_range("nudge::from_ptime: not a date-time");
  }
  static const boost::posix_time::ptime epoch{boost::gregorian::date{1970, 1, 1}};
  const std::int64_t day_count = (p.date() - epoch.date()).days();
  const std::int64_t secs = p.time_of_day().total_seconds();
  return from_epoch(day_count * 86400 + secs);
}

}  // namespace nudge
