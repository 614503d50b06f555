// nudge/time.hpp: instants and durations in whole seconds, and their text forms.
//
// nudge never reads a clock: every instant comes from the host (an event's time, the `now` of a
// batch). Time is UTC seconds since 1970-01-01, kept in 64 bits, so a replay is exact to the
// second.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <boost/date_time/posix_time/ptime.hpp>

namespace nudge {

/// A length of time in whole seconds ("60d" is 5'184'000 s).
using duration = std::chrono::duration<std::int64_t>;
/// An instant: UTC seconds since the Unix epoch.
using time_point = std::chrono::time_point<std::chrono::system_clock, duration>;

/// The instant `seconds` after 1970-01-01T00:00:00Z.
constexpr time_point from_epoch(std::int64_t seconds) noexcept {
  return time_point{duration{seconds}};
}
/// Seconds since the Unix epoch.
constexpr std::int64_t to_epoch(time_point t) noexcept {
  return t.time_since_epoch().count();
}

constexpr duration seconds(std::int64_t n) noexcept {
  return duration{n};
}
constexpr duration minutes(std::int64_t n) noexcept {
  return duration{n * 60};
}
constexpr duration hours(std::int64_t n) noexcept {
  return duration{n * 3600};
}
constexpr duration days(std::int64_t n) noexcept {
  return duration{n * 86400};
}
constexpr duration weeks(std::int64_t n) noexcept {
  return duration{n * 7 * 86400};
}

/// Earliest and latest instants nudge accepts (years 1900 to 9999), so that adding a delay of
/// up to a century never overflows.
inline constexpr time_point min_time = from_epoch(-2'208'988'800);
inline constexpr time_point max_time = from_epoch(253'402'300'799);

/// Parses "90s", "15m", "2h", "60d" or "2w" (a non-negative integer and one unit letter).
/// Returns nullopt for anything else, including overflow.
std::optional<duration> parse_duration(std::string_view text) noexcept;

/// Formats a duration in the largest unit that divides it exactly: 5184000 s -> "60d".
std::string format_duration(duration d);

/// Parses ISO-8601 with an explicit offset ("2024-01-01T10:00:00Z", "...+02:00"), or a decimal
/// string of epoch seconds ("1704103200"). Returns nullopt for anything else, including a time
/// without an offset (a local time is never guessed).
std::optional<time_point> parse_time(std::string_view text) noexcept;

/// Formats as ISO-8601 UTC: "2024-01-01T10:00:00Z".
std::string format_time(time_point t);

/// Conversions to and from Boost.Date_Time (UTC).
boost::posix_time::ptime to_ptime(time_point t);
/// @throws std::out_of_range for a special value (not_a_date_time, infinities).
time_point from_ptime(const boost::posix_time::ptime& p);

}  // namespace nudge
