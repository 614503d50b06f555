// Engine.stats and Engine.workflow_stats (and ReplayResult's): the per-rule and per-workflow
// counters as dicts, of the dict subclasses nudge.Stats / nudge.WorkflowStats (nudge/_display.py),
// which add to_frame() and a notebook rendering.
#include "nudge_py.hpp"

using namespace pybind11::literals;

namespace nudge_py {

namespace {

// The delivery policy's counts (nudge::delivery_counts), nested under "delivery" for rules,
// workflows and steps alike, as in C++.
py::dict delivery_dict(const nudge::delivery_counts& c) {
  return py::dict("no_consent"_a = c.no_consent, "capped"_a = c.capped, "off_hours"_a = c.off_hours,
                  "deferred_cap"_a = c.deferred_cap, "deferred_hours"_a = c.deferred_hours);
}

}  // namespace

py::object workflow_stats_dict(std::span<const nudge::workflow_stats> stats) {
  py::dict out;
  for (const auto& w : stats) {
    py::dict steps;
    for (const auto& st : w.steps) {
      py::dict d("step"_a = st.step, "reached"_a = st.reached, "sent"_a = st.sent,
                 "opened"_a = st.opened, "clicked"_a = st.clicked, "waiting"_a = st.waiting,
                 "ended"_a = st.ended, "first"_a = to_datetime(st.first),
                 "last"_a = to_datetime(st.last), "delivery"_a = delivery_dict(st.delivery));
      steps[py::str(st.step)] = d;
    }
    py::dict d("workflow"_a = w.workflow, "entered"_a = w.entered, "completed"_a = w.completed,
               "exited"_a = w.exited, "ended"_a = w.ended, "sent"_a = w.sent, "opened"_a = w.opened,
               "clicked"_a = w.clicked, "active"_a = w.active, "first"_a = to_datetime(w.first),
               "last"_a = to_datetime(w.last), "delivery"_a = delivery_dict(w.delivery),
               "steps"_a = steps);
    out[py::str(w.workflow)] = d;
  }
  return py::module_::import("nudge._display").attr("WorkflowStats")(out);
}

py::object stats_dict(std::span<const nudge::rule_stats> stats) {
  py::dict out;
  for (const auto& s : stats) {
    py::dict d("rule"_a = s.rule, "triggered"_a = s.triggered, "passed"_a = s.passed,
               "failed"_a = s.failed, "suppressed"_a = s.suppressed, "emitted"_a = s.emitted,
               "delivery"_a = delivery_dict(s.delivery), "first"_a = to_datetime(s.first),
               "last"_a = to_datetime(s.last));
    out[py::str(s.rule)] = d;
  }
  return py::module_::import("nudge._display").attr("Stats")(out);
}

py::object py_engine::workflow_stats() const {
  return workflow_stats_dict(engine_->workflow_stats());
}

py::object py_engine::stats() const {
  return stats_dict(engine_->stats());
}

}  // namespace nudge_py
