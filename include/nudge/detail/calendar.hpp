// nudge/detail/calendar.hpp: calendar months on a contact's local clock. Not part of the API.
#pragma once

#include <cstdint>

#include <nudge/delivery.hpp>
#include <nudge/time.hpp>

namespace nudge::detail {

/// The first instant whose wall time on clock `z` (nullptr: UTC) is `local` (seconds since
/// 1970-01-01T00:00 local): of a wall time that exists twice (clocks set back), the earlier; of
/// one that does not exist (clocks set forward), the first instant after the gap. The rule
/// delivery.hpp states for send windows.
std::int64_t first_at_local(const zone_rules* z, std::int64_t local);

/// `t` plus `n` calendar months (n >= 0) on clock `z`: the same local wall time on the same day
/// of the month `n` months later, the day clamped to that month's last day, resolved to an
/// instant by first_at_local. Saturates at max_time past the year 9999.
time_point add_months(time_point t, std::int32_t n, const zone_rules* z);

}  // namespace nudge::detail
