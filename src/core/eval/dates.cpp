// Yearly date entries: workflows entered on a date read from a contact detail.

#include <boost/date_time/gregorian/gregorian_types.hpp>

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::month_day(const value* v) -> std::optional<md> {
  if (v == nullptr) {
    return std::nullopt;
  }
  if (const auto* t = std::get_if<time_point>(v)) {
    const auto d = to_ptime(*t).date();
    return md{d.month().as_number(), d.day().as_number()};
  }
  const auto* s = std::get_if<std::string>(v);
  if (s == nullptr) {
    return std::nullopt;
  }
  // "YYYY-MM-DD" (a year of birth is common and ignored) or "--MM-DD" (ISO 8601 without year).
  std::string_view text{*s};
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    text.remove_prefix(5);
  } else if (text.size() == 7 && text.starts_with("--") && text[4] == '-') {
    text.remove_prefix(2);
  } else {
    return std::nullopt;
  }
  auto digits = [](std::string_view d) {
    return d.size() == 2 && d[0] >= '0' && d[0] <= '9' && d[1] >= '0' && d[1] <= '9'
               ? (d[0] - '0') * 10 + (d[1] - '0')
               : -1;
  };
  const int m = digits(text.substr(0, 2)), d = digits(text.substr(3, 2));
  if (m < 1 || m > 12 || d < 1 || d > 31 ||
      d > static_cast<int>(boost::gregorian::gregorian_calendar::end_of_month_day(
              2000, static_cast<unsigned short>(m)))) {  // 2000: a leap year allows 29 Feb
    return std::nullopt;
  }
  return md{m, d};
}

// The date's local midnight in `year` (29 February is 28 February in other years), plus
// `offset_days` and `time_of_day`, as local wall time in seconds since 1970-01-01T00:00.
auto evaluator::occurrence(md date, int year, std::int32_t offset_days, std::int32_t time_of_day)
    -> std::int64_t {
  using boost::gregorian::gregorian_calendar;
  const auto y = static_cast<unsigned short>(year);
  const auto m = static_cast<unsigned short>(date.month);
  auto d = static_cast<unsigned short>(date.day);
  d = std::min(d, static_cast<unsigned short>(gregorian_calendar::end_of_month_day(y, m)));
  const auto days_since_epoch =
      (boost::gregorian::date(y, m, d) - boost::gregorian::date(1970, 1, 1)).days();
  return (days_since_epoch + offset_days) * std::int64_t{86'400} + time_of_day;
}

// The first instant whose wall time on the contact's clock is `local` (detail/calendar.hpp).
auto evaluator::first_at_local(const zone_rules* z, std::int64_t local) -> std::int64_t {
  return detail::first_at_local(z, local);
}

// The first occurrence at or after `from`, or nullopt outside the supported years.
auto evaluator::next_yearly(md date, std::int32_t offset_days, std::int32_t time_of_day,
                            time_point from) const -> std::optional<time_point> {
  const zone_rules* z = local_zone();
  const int year = static_cast<int>(to_ptime(std::clamp(from, min_time, max_time)).date().year());
  for (int y = std::max(year - 1, 1901); y <= std::min(year + 1, 9998); ++y) {
    const auto t = from_epoch(first_at_local(z, occurrence(date, y, offset_days, time_of_day)));
    if (t >= from) {
      return t;
    }
  }
  return std::nullopt;
}

// The first instant at or after `from` at local `time_of_day` on an allowed local weekday.
auto evaluator::next_time_of_day(time_point from, std::int32_t time_of_day,
                                 std::uint8_t weekdays) const -> time_point {
  const zone_rules* z = local_zone();
  const std::int64_t secs = to_epoch(from);
  std::int64_t day = floor_div(secs + offset_at(z, secs), 86'400) - 1;
  for (int k = 0; k < 10; ++k, ++day) {
    const auto weekday = static_cast<unsigned>(((day + 3) % 7 + 7) % 7);  // 0: Monday
    if ((weekdays >> weekday & 1U) == 0) {
      continue;
    }
    const std::int64_t t = first_at_local(z, day * 86'400 + time_of_day);
    if (t >= secs) {
      return from_epoch(t);
    }
  }
  return from;  // weekdays empty: rejected by validation
}

// Keeps one pending timer per yearly workflow at the next occurrence of the contact's date
// after the last one that fired. An unchanged date keeps its timer (and its scheduling order).
auto evaluator::sync_dates(time_point anchor, const std::string_view* changed_detail) -> void {
  for (auto w : c_.date_workflows) {
    const workflow_entry& e = wf(w).entry;
    if (changed_detail != nullptr && *changed_detail != e.detail) {
      continue;
    }
    std::optional<time_point> due;
    if (const auto date = month_day(s_.contact.detail(e.detail))) {
      auto from = anchor;
      if (auto m = s_.workflow_history.find(w);
          m != s_.workflow_history.end() && m->second.last_date != min_time) {
        from = std::max(from, m->second.last_date + seconds(1));
      }
      due = next_yearly(*date, e.offset_days, e.time_of_day, from);
    }
    auto it = std::find_if(s_.timers.begin(), s_.timers.end(), [&](const timer& t) {
      return t.kind == timer_kind::workflow_date && t.rule == w;
    });
    if (it != s_.timers.end()) {
      if (due && it->due_at == *due) {
        continue;
      }
      s_.timers.erase(it);
    }
    if (due) {
      timer t;
      t.kind = timer_kind::workflow_date;
      t.due_at = *due;
      t.rule = w;
      t.triggered_at = *due;
      schedule(t);
    }
  }
}

auto evaluator::date_due(const timer& tm) -> void {
  s_.workflow_history[tm.rule].last_date = tm.due_at;
  try_enter(tm.rule, tm.due_at, s_.events_applied, nullptr);
  sync_dates(tm.due_at, nullptr);
}

}  // namespace nudge::eval
