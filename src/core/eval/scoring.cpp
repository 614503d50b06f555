// Scores: rule awards, thresholds crossed, and decay on the engine's own timer.

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::change_score(double points, std::string_view why, time_point at, std::size_t depth,
                             const std::vector<std::uint32_t>* chain) -> void {
  if (points == 0) {
    return;
  }
  s_.contact.score += points;
  touch_field(field::score);
  raise(event_types::score_changed, std::string{why}, at, depth, chain, none);
}

auto evaluator::award(std::uint32_t r, time_point at, std::size_t depth,
                      const std::vector<std::uint32_t>* chain) -> void {
  const score_rule& sr = p_.rules().scoring.rules[r];
  double points = sr.points;
  if (sr.cap) {
    const std::int64_t period = floor_div(to_epoch(at), sr.cap->per.count());
    score_award& a = s_.score_awards[r];
    if (a.period != period) {
      a.period = period;
      a.points = 0;
    }
    const double room = std::max(0.0, sr.cap->max_points - std::abs(a.points));
    points = std::copysign(std::min(std::abs(points), room), points);
    a.points += points;
  }
  change_score(points, sr.id, at, depth, chain);
}

auto evaluator::check_thresholds(time_point at, std::size_t depth,
                                 const std::vector<std::uint32_t>* chain) -> void {
  for (const auto& t : p_.rules().scoring.thresholds) {
    const bool reached = s_.contact.score >= t.at;
    auto it = s_.thresholds_reached.find(t.name);
    if (reached && it == s_.thresholds_reached.end()) {
      s_.thresholds_reached.emplace(t.name, at);
      raise(event_types::score_crossed, t.name, at, depth, chain, none);
    } else if (!reached && it != s_.thresholds_reached.end()) {
      s_.thresholds_reached.erase(it);  // re-armed
    }
  }
}

auto evaluator::find_own_timer(std::int32_t kind) -> timer* {
  for (auto& t : s_.timers) {
    if (t.action == kind) {
      return &t;
    }
  }
  return nullptr;
}

auto evaluator::drop_own_timer(std::int32_t kind) -> void {
  auto it = std::find_if(s_.timers.begin(), s_.timers.end(),
                         [kind](const timer& t) { return t.action == kind; });
  if (it != s_.timers.end()) {
    s_.timers.erase(it);
  }
}

// Keeps the one timer of `kind` due at `due` (none when due is max_time).
auto evaluator::set_own_timer(std::int32_t kind, time_point due) -> void {
  if (const timer* t = find_own_timer(kind); t != nullptr) {
    if (t->due_at == due) {
      return;
    }
    drop_own_timer(kind);
  }
  if (due == max_time) {
    return;
  }
  timer t;
  t.due_at = due;
  t.rule = 0;
  t.action = kind;
  t.triggered_at = due;
  schedule(t);
}

// A non-zero score needs a decay timer at the next grid instant after `at`.
auto evaluator::sync_decay_timer(time_point at) -> void {
  if (s_.contact.score == 0) {
    drop_own_timer(timer::score_decay);
    return;
  }
  if (find_own_timer(timer::score_decay) != nullptr) {
    return;
  }
  const std::int64_t every = p_.rules().scoring.decay->every.count();
  const std::int64_t next = (floor_div(to_epoch(at), every) + 1) * every;
  if (next <= to_epoch(max_time)) {
    set_own_timer(timer::score_decay, from_epoch(next));
  }
}

auto evaluator::apply_decay(time_point at) -> void {
  const score_decay& d = *p_.rules().scoring.decay;
  const double before = s_.contact.score;
  double after = before * d.factor;
  if (after > 0) {
    after = std::max(0.0, after - d.subtract);
  } else if (after < 0) {
    after = std::min(0.0, after + d.subtract);
  }
  change_score(after - before, "decay", at, 0, nullptr);
  if (s_.contact.score == before) {
    sync_decay_timer(at);  // nothing raised, so nothing re-arms it
  }
}

}  // namespace nudge::eval
