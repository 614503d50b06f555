// nudge/detail/evaluate_into.hpp: the evaluation step as the engine runs it. Not part of the API.
#pragma once

#include <span>
#include <vector>

#include <nudge/evaluate.hpp>
#include <nudge/stats.hpp>
#include <nudge/store.hpp>

namespace nudge::detail {

/// Where rule outcomes go: a list of records (the public evaluate), or counters per rule that
/// the engine folds into its statistics (a batch of a million events then builds no list).
struct outcome_recorder {
  std::vector<rule_outcome>* list = nullptr;
  std::vector<rule_stats>* counts = nullptr;  ///< indexed by rule
  std::vector<workflow_outcome>* workflow_list = nullptr;
  std::vector<workflow_stats>* workflow_counts = nullptr;  ///< indexed by workflow, steps sized
  /// When set, each rule (workflow) whose counts get their first outcome is appended here, so
  /// that a batch folds in and clears only those, not every rule of the program.
  std::vector<std::uint32_t>* touched = nullptr;
  std::vector<std::uint32_t>* workflows_touched = nullptr;

  void note(const workflow_outcome& o) const {
    if (workflow_list != nullptr) {
      workflow_list->push_back(o);
      return;
    }
    if (workflow_counts == nullptr) {
      return;
    }
    workflow_stats& w = (*workflow_counts)[o.workflow];
    if (workflows_touched != nullptr && !w.first) {
      workflows_touched->push_back(o.workflow);
    }
    touch(w.first, w.last, o.ts);
    workflow_step_stats* s = o.step < w.steps.size() ? &w.steps[o.step] : nullptr;
    if (s != nullptr) {
      touch(s->first, s->last, o.ts);
    }
    using k = workflow_outcome_kind;
    switch (o.kind) {
      case k::entered:
        ++w.entered;
        ++w.active;
        break;
      case k::completed:
        ++w.completed;
        --w.active;
        break;
      case k::exited:
        ++w.exited;
        --w.active;
        break;
      case k::ended:
        ++w.ended;
        --w.active;
        if (s != nullptr) {
          ++s->ended;
        }
        break;
      case k::reached:
        if (s != nullptr) {
          ++s->reached;
        }
        break;
      case k::sent:
        ++w.sent;
        if (s != nullptr) {
          ++s->sent;
        }
        break;
      case k::opened:
        ++w.opened;
        if (s != nullptr) {
          ++s->opened;
        }
        break;
      case k::clicked:
        ++w.clicked;
        if (s != nullptr) {
          ++s->clicked;
        }
        break;
      case k::wait_started:
        if (s != nullptr) {
          ++s->waiting;
        }
        break;
      case k::wait_ended:
        if (s != nullptr) {
          --s->waiting;
        }
        break;
      case k::blocked_no_consent:
      case k::blocked_cap:
      case k::blocked_hours:
      case k::deferred_cap:
      case k::deferred_hours:
        count(w.delivery, o.kind);
        if (s != nullptr) {
          count(s->delivery, o.kind);
        }
        break;
    }
  }

  static void count(delivery_counts& d, workflow_outcome_kind kind) {
    using k = workflow_outcome_kind;
    ++(kind == k::blocked_no_consent ? d.no_consent
       : kind == k::blocked_cap      ? d.capped
       : kind == k::blocked_hours    ? d.off_hours
       : kind == k::deferred_cap     ? d.deferred_cap
                                     : d.deferred_hours);
  }

  static void touch(std::optional<time_point>& first, std::optional<time_point>& last,
                    time_point at) {
    if (!first || at < *first) {
      first = at;
    }
    if (!last || at > *last) {
      last = at;
    }
  }

  [[gnu::always_inline]] void note(std::uint32_t rule, rule_outcome_kind kind,
                                   time_point at) const {
    if (list != nullptr) {
      list->push_back({rule, kind, at});
      return;
    }
    rule_stats& s = (*counts)[rule];
    if (touched != nullptr && !s.first) {
      touched->push_back(rule);
    }
    switch (kind) {
      case rule_outcome_kind::triggered:
        ++s.triggered;
        break;
      case rule_outcome_kind::passed:
        ++s.passed;
        break;
      case rule_outcome_kind::failed:
        ++s.failed;
        break;
      case rule_outcome_kind::suppressed:
        ++s.suppressed;
        break;
      case rule_outcome_kind::blocked_no_consent:
        ++s.delivery.no_consent;
        break;
      case rule_outcome_kind::blocked_cap:
        ++s.delivery.capped;
        break;
      case rule_outcome_kind::blocked_hours:
        ++s.delivery.off_hours;
        break;
      case rule_outcome_kind::deferred_cap:
        ++s.delivery.deferred_cap;
        break;
      case rule_outcome_kind::deferred_hours:
        ++s.delivery.deferred_hours;
        break;
    }
    if (!s.first || at < *s.first) {
      s.first = at;
    }
    if (!s.last || at > *s.last) {
      s.last = at;
    }
  }
};

/// A state lent by a store (store::lend), evaluated in place: the store is told before the
/// evaluation changes its profile (store::will_change_profile).
struct profile_guard {
  nudge::store* store = nullptr;
  contact_state* lent = nullptr;
  bool told = false;
  void before_change() {
    if (!told) {
      store->will_change_profile(*lent);
      told = true;
    }
  }
};

/// evaluate(), but mutating `state` in place and appending to batch-wide lists, so a batch over
/// many contacts builds no per-contact vectors. On an exception `state` and the lists may hold
/// partial changes: the caller discards them (a copy loaded from the store), or the store that
/// lent the state puts it back (store::abandon).
/// With `timers_at_now` false, timers due exactly at `now` stay pending (the engine runs two
/// contacts up to an identify event at `now` that way: events stamped `now` come before timers
/// due at `now`).
/// `guard`: non-null when `state` is lent (evaluated in place in the store).
void evaluate_into(const program& program, contact_state& state,
                   std::span<const event* const> events, time_point now,
                   round_robin_counters* counters, std::vector<due_action>& actions,
                   const outcome_recorder& outcomes, bool timers_at_now = true,
                   profile_guard* guard = nullptr);

/// The evaluation of engine::upsert_contacts with an instant: replaces the profile of `state`
/// with `profile` as of `at` and evaluates the contact there with no events (timers due before
/// `at`, then the profile's consequences, then timers due at `at`). Throws input_error (event
/// index 0) for another contact's profile, an alias record, or `at` outside the supported range
/// or before the contact's clock; `state` may then hold partial changes, as with evaluate_into.
void replace_profile_into(const program& program, contact_state& state, contact profile,
                          time_point at, round_robin_counters* counters,
                          std::vector<due_action>& actions, const outcome_recorder& outcomes);

}  // namespace nudge::detail
