// Calendar months on a contact's local clock (rule delays, windows and workflow waits of "2mo").
#include <algorithm>

#include <boost/date_time/gregorian/gregorian.hpp>

#include <nudge/detail/calendar.hpp>

namespace nudge::detail {
namespace {

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t q = a / b;
  return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

std::int64_t offset_at(const zone_rules* z, std::int64_t t) {
  return z == nullptr ? 0 : z->utc_offset(from_epoch(t)).count();
}

}  // namespace

std::int64_t first_at_local(const zone_rules* z, std::int64_t local) {
  if (z == nullptr) {
    return local;
  }
  // Offsets change at most once within two days of any wall time a zone rule describes.
  const std::int64_t before = offset_at(z, local - 2 * 86'400);
  const std::int64_t after = offset_at(z, local + 2 * 86'400);
  const std::int64_t early = local - std::max(before, after);
  const std::int64_t late = local - std::min(before, after);
  for (const std::int64_t u : {early, late}) {
    if (u + offset_at(z, u) == local) {
      return u;
    }
  }
  // In the gap: the transition, the first instant in [early, late] on the later offset.
  std::int64_t lo = early, hi = late;  // offset(lo) == before, offset(hi) == after
  while (hi - lo > 1) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    (offset_at(z, mid) == before ? lo : hi) = mid;
  }
  return hi;
}

time_point add_months(time_point t, std::int32_t n, const zone_rules* z) {
  using boost::gregorian::date;
  using boost::gregorian::gregorian_calendar;
  const std::int64_t secs = to_epoch(t);
  const std::int64_t local = secs + offset_at(z, secs);
  const std::int64_t day = floor_div(local, 86'400);
  const std::int64_t second_of_day = local - day * 86'400;
  const date epoch{1970, 1, 1};
  const date d = epoch + boost::gregorian::date_duration{day};
  // Months since year 0, then back to a year and month.
  const std::int64_t index = std::int64_t{d.year()} * 12 + (d.month() - 1) + n;
  const std::int64_t year = index / 12;
  if (year > 9999) {
    return max_time;
  }
  const auto y = static_cast<unsigned short>(year);
  const auto m = static_cast<unsigned short>(index % 12 + 1);
  const auto last = static_cast<unsigned short>(gregorian_calendar::end_of_month_day(y, m));
  const auto dom = std::min(static_cast<unsigned short>(d.day()), last);
  const std::int64_t target_day = (date{y, m, dom} - epoch).days();
  return from_epoch(first_at_local(z, target_day * 86'400 + second_of_day));
}

}  // namespace nudge::detail
