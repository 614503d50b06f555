// What is still pending in a store: the timers a replay reports at its end, and the ones that
// extend its default end.
#include <algorithm>

#include <nudge/contact_state.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/store.hpp>

namespace nudge {

pending_work find_pending_work(store& s) {
  pending_work work;
  // Every contact with a timer at all: store::due at the end of time.
  for (const auto& id : s.due(max_time)) {
    const auto state = s.load(id);
    if (!state) {
      continue;
    }
    for (const timer& t : state->timers) {
      // Yearly date entries come back every year and decay on every grid instant while the
      // score is not 0: waiting for them to run out would never end.
      const bool recurring = t.kind == timer_kind::workflow_date ||
                             (t.kind == timer_kind::rule && t.action == timer::score_decay);
      if (recurring) {
        ++work.recurring;
      } else {
        work.last = work.timers == 0 ? t.due_at : std::max(work.last, t.due_at);
        ++work.timers;
      }
    }
  }
  return work;
}

}  // namespace nudge
