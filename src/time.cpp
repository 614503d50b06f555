// Text forms of instants and durations, and Boost.Date_Time conversions.
#include <charconv>
#include <limits>

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

std::optional<time_point> parse_time(std::string_view text) noexcept {
  // Epoch seconds: an optional minus sign and digits only.
  if (!text.empty() && text.find_first_not_of("-0123456789") == std::string_view::npos) {
    std::int64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc{} || end != text.data() + text.size()) {
      return std::nullopt;
    }
    auto t = from_epoch(v);
    if (t < min_time || t > max_time) {
      return std::nullopt;
    }
    return t;
  }
  // YYYY-MM-DDTHH:MM:SS then Z or +HH:MM / -HH:MM.
  int y, mo, d, h, mi, se;
  if (text.size() < 20 || !digits(text, 0, 4, y) || text[4] != '-' || !digits(text, 5, 2, mo) ||
      text[7] != '-' || !digits(text, 8, 2, d) || (text[10] != 'T' && text[10] != ' ') ||
      !digits(text, 11, 2, h) || text[13] != ':' || !digits(text, 14, 2, mi) || text[16] != ':' ||
      !digits(text, 17, 2, se)) {
    return std::nullopt;
  }
  std::string_view zone = text.substr(19);
  std::int64_t offset = 0;
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else {
    int oh, om;
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || !digits(zone, 1, 2, oh) ||
        zone[3] != ':' || !digits(zone, 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = (zone[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  namespace chr = std::chrono;
  const chr::year_month_day ymd{chr::year{y}, chr::month{static_cast<unsigned>(mo)},
                                chr::day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || se > 59) {
    return std::nullopt;
  }
  const std::int64_t day_count = chr::sys_days{ymd}.time_since_epoch().count();
  auto t = from_epoch(day_count * 86400LL + h * 3600LL + mi * 60LL + se - offset);
  if (t < min_time || t > max_time) {
    return std::nullopt;
  }
  return t;
}

std::string format_time(time_point t) {
  namespace chr = std::chrono;
  const std::int64_t s = to_epoch(t);
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
