// Engine.stats and Engine.workflow_stats: the engine's per-rule and per-workflow counters as
// dicts.
#include "nudge_py.hpp"

using namespace pybind11::literals;

namespace nudge_py {

namespace {

// The delivery policy's counts, under the same keys as a rule's statistics.
void add_delivery(py::dict& d, const nudge::delivery_counts& c) {
  d["no_consent"] = c.no_consent;
  d["capped"] = c.capped;
  d["off_hours"] = c.off_hours;
  d["deferred_cap"] = c.deferred_cap;
  d["deferred_hours"] = c.deferred_hours;
}

}  // namespace

py::dict py_engine::workflow_stats() const {
  py::dict out;
  for (const auto& w : engine_->workflow_stats()) {
    py::dict steps;
    for (const auto& st : w.steps) {
      py::dict d("step"_a = st.step, "reached"_a = st.reached, "sent"_a = st.sent,
                 "opened"_a = st.opened, "clicked"_a = st.clicked, "waiting"_a = st.waiting,
                 "ended"_a = st.ended, "first"_a = to_datetime(st.first),
                 "last"_a = to_datetime(st.last));
      add_delivery(d, st.delivery);
      steps[py::str(st.step)] = d;
    }
    py::dict d("workflow"_a = w.workflow, "entered"_a = w.entered, "completed"_a = w.completed,
               "exited"_a = w.exited, "ended"_a = w.ended, "sent"_a = w.sent, "opened"_a = w.opened,
               "clicked"_a = w.clicked, "active"_a = w.active, "first"_a = to_datetime(w.first),
               "last"_a = to_datetime(w.last), "steps"_a = steps);
    add_delivery(d, w.delivery);
    out[py::str(w.workflow)] = d;
  }
  return out;
}

py::dict py_engine::stats() const {
  py::dict out;
  for (const auto& s : engine_->stats()) {
    py::dict d("rule"_a = s.rule, "triggered"_a = s.triggered, "passed"_a = s.passed,
               "failed"_a = s.failed, "suppressed"_a = s.suppressed, "emitted"_a = s.emitted,
               "first"_a = to_datetime(s.first), "last"_a = to_datetime(s.last));
    d["no_consent"] = s.no_consent;
    d["capped"] = s.capped;
    d["off_hours"] = s.off_hours;
    d["deferred_cap"] = s.deferred_cap;
    d["deferred_hours"] = s.deferred_hours;
    out[py::str(s.rule)] = d;
  }
  return out;
}

}  // namespace nudge_py
