// Recording the contact's timeline (what `nudge explain` shows).

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::record_entry(timeline_what what, std::uint32_t r, time_point at, std::uint32_t step,
                             timeline_reason reason, std::uint32_t detail, time_point until,
                             timeline_source kind) -> void {
  timeline_entry e;
  e.ts = at;
  e.until = until == min_time ? at : until;
  e.source = r;
  e.step = step;
  e.detail = detail;
  e.source_kind = kind;
  e.what = what;
  e.reason = reason;
  s_.timeline.record(e, timeline_size_);
}

// The top-level condition that made a check fail: the first failing child of a root `all`
// (the usual shape of a rule's `if`), or timeline_none when the root is a single leaf, an
// `any` or a `not` (the root itself failed). Only computed when a timeline is kept.
auto evaluator::failing_part(std::uint32_t root, time_point now, time_point triggered_at) const
    -> std::uint32_t {
  const detail::node& nd = c_.nodes[root];
  if (nd.kind != condition::kind::all) {
    return timeline_none;
  }
  for (std::uint32_t i = 0; i < nd.count; ++i) {
    if (!eval(c_.children[nd.first + i], now, triggered_at)) {
      return i;
    }
  }
  return timeline_none;
}

}  // namespace nudge::eval
