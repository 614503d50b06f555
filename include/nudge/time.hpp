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

/// The supported range. Every instant nudge stores, reads back (snapshots, the SQLite store) or
/// prints lies in [min_time, max_time]: 1900-01-01T00:00:00Z to 9999-12-31T23:59:59Z, so that an
/// ISO-8601 time always has a four-digit year. The snapshot codec and the SQLite store refuse a
/// stored instant outside it as corrupt; format_time refuses to print one.
inline constexpr time_point min_time = from_epoch(-2'208'988'800);
inline constexpr time_point max_time = from_epoch(253'402'300'799);

/// The latest instant an input may carry (an event's time, a time-valued prop, detail or tag, a
/// time in a rule file, an upsert's instant, a batch's `now`, `--until`):
/// 9799-12-31T23:59:59Z, 200 years before max_time. Every timer is set at an instant no later
/// than the batch's `now`, and at most one delay, window, wait or cap period
/// (program_limits::max_delay, 100 years) plus a yearly date or a send window after it, so a
/// timer set from valid input is always due by max_time: no stored state holds an instant it
/// cannot read back. (The engine refuses a batch that would set a timer past max_time anyway, for
/// a host that raised max_delay.)
inline constexpr time_point max_input_time = from_epoch(247'090'953'599);

/// The input range as messages state it.
inline constexpr std::string_view input_range_text = "1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z";

/// True if `t` lies in the input range [min_time, max_input_time].
constexpr bool in_input_range(time_point t) noexcept {
  return t >= min_time && t <= max_input_time;
}

/// A length in whole calendar months ("2mo"; a year is 12 months), counted on the contact's
/// local calendar rather than in seconds: a month after 10:00 on 15 March is 10:00 on 15 April
/// whatever the month's length or a daylight-saving change in between. A day that the target
/// month lacks is clamped to its last day (31 January + 1 month = 29 February in a leap year,
/// else 28 February). Rule delays (rule::delay_months), `within` / `older_than` windows
/// (condition::window_months) and fixed workflow waits (workflow_step::length_months) take
/// months; docs/rules.md says how, and where a month counts as 31 days (replay's default end).
struct months {
  std::int32_t count = 0;
  friend bool operator==(const months&, const months&) = default;
};
/// `n` calendar years: 12 x n calendar months (29 February + 1 year = 28 February).
constexpr months years(std::int32_t n) noexcept {
  return months{n * 12};
}
/// The longest `n` calendar months can last (31 days each): what replay's default end and
/// the kept history assume.
constexpr duration longest(months m) noexcept {
  return duration{std::int64_t{m.count} * 31 * 86400};
}

/// Parses "90s", "15m", "2h", "60d" or "2w" (a non-negative integer and one unit letter; "m"
/// is minutes, kept for existing rule files). Returns nullopt for anything else, including
/// overflow and the calendar units of parse_months.
std::optional<duration> parse_duration(std::string_view text) noexcept;

/// Parses calendar months "2mo" or years "1y" (12 months): a non-negative integer and the
/// unit. Returns nullopt for anything else, including more than 1,000,000 months.
std::optional<months> parse_months(std::string_view text) noexcept;

/// The units parse_duration and parse_months accept, for error messages: "s (seconds), m
/// (minutes), ...".
inline constexpr std::string_view duration_units =
    "s (seconds), m (minutes), h (hours), d (days), w (weeks), mo (calendar months), y "
    "(calendar years)";

/// Formats a duration in the largest unit that divides it exactly: 5184000 s -> "60d".
std::string format_duration(duration d);

/// Why parse_time refused a text.
enum class time_error : std::uint8_t {
  none,
  syntax,        ///< not a time in one of the forms below
  out_of_range,  ///< a time, but outside [min_time, max_input_time]
};

/// Parses an input time:
/// - ISO-8601 with an explicit offset: "2024-01-01T10:00:00Z" (or 'z'), "...+02:00", "...+0200",
///   "...+02"; a space may stand for the 'T'. A fraction of a second ("10:00:00.123Z", as
///   JavaScript's toISOString() writes) is dropped towards the earlier second: nudge counts whole
///   seconds.
/// - Decimal epoch seconds ("1704103200", "-1"), optionally with a fraction
///   ("1704103200.5"), likewise floored to the second.
/// The result must lie in the input range [min_time, max_input_time]. Returns nullopt for
/// anything else, including a time without an offset (a local time is never guessed); `why`
/// (if given) then tells a bad text from a time out of range.
std::optional<time_point> parse_time(std::string_view text, time_error* why = nullptr) noexcept;

/// Formats as ISO-8601 UTC: "2024-01-01T10:00:00Z".
/// @throws std::out_of_range for an instant outside [min_time, max_time].
std::string format_time(time_point t);

/// Conversions to and from Boost.Date_Time (UTC).
boost::posix_time::ptime to_ptime(time_point t);
/// @throws std::out_of_range for a special value (not_a_date_time, infinities).
time_point from_ptime(const boost::posix_time::ptime& p);

}  // namespace nudge
