// One batch of the engine's work, from its setup to its commit or rollback. Private to
// src/core/engine: every path that evaluates contacts (process / advance, the identity path,
// upsert_contacts at an instant) runs as one such batch, so they are atomic in the same way.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/detail/evaluate_into.hpp>
#include <nudge/engine.hpp>

namespace nudge::detail {

/// Zeroed statistics naming every workflow and step of `p`.
std::vector<workflow_stats> empty_workflow_stats(const program& p);

/// The reason an input_error gives for a contact with more than `limit` events in one batch
/// (engine_options::max_events_per_contact).
std::string too_many_events(std::size_t limit);

/// One batch of an engine. Evaluation runs against the batch's own copy of the engine's
/// round-robin counters and its own zeroed statistics, and gathers the due actions and the
/// states to save. commit() hands the actions to the sink and the states to the store, and only
/// then folds the statistics and counters into the engine. A batch destroyed before commit()
/// saved changed nothing: the engine's statistics and counters are as they were, nothing was
/// saved, and the store is told to put back the states it lent (store::abandon).
///
///     detail::batch b{engine};
///     contact_state* s = b.lend(id);   // or a copy: b.evaluate(copy, ...); b.keep(copy)
///     b.evaluate(*s, events, now);
///     b.end_contact(0);
///     return b.commit(ids);            // ids[0] == id
class batch {
 public:
  explicit batch(engine& owner);
  ~batch();
  batch(const batch&) = delete;
  batch& operator=(const batch&) = delete;

  /// The store's own state of `id`, lent to be evaluated in place (store::lend), or nullptr:
  /// then load a copy and keep() it. Each id at most once per batch.
  contact_state* lend(std::string_view id);
  /// True once the store lent this batch a state (a failed batch then calls store::abandon).
  bool lent_any() const noexcept { return lent_any_; }

  /// Evaluates `state` (`lent`, or a copy) with `events` up to `until`
  /// (detail::evaluate_into), appending to the batch's actions and counting into its
  /// statistics.
  void evaluate(contact_state& state, std::span<const event* const> events, time_point until,
                bool timers_at_until, bool lent) {
    profile_guard guard{owner_.store_, &state};
    evaluate_into(program_, state, events, until, &counters_, actions_, outcomes_, timers_at_until,
                  lent ? &guard : nullptr);
  }
  /// The engine is about to change the profile of the lent `state` outside evaluation (a merge).
  void changing_profile(contact_state& state) { owner_.store_->will_change_profile(state); }
  /// Replaces the profile of `state` at `at` and evaluates it there
  /// (detail::replace_profile_into).
  void replace_profile(contact_state& state, contact profile, time_point at) {
    replace_profile_into(program_, state, std::move(profile), at, &counters_, actions_, outcomes_);
  }
  /// Counts a workflow outcome that happened outside evaluation (the runs a merge ended).
  void note(const workflow_outcome& o) const { outcomes_.note(o); }

  /// Room for `n` kept states.
  void reserve(std::size_t n) { states_.reserve(n); }
  /// A copy of a state (loaded, or new) to save with the batch; lent states need not be kept:
  /// the store saves those itself.
  /// Returns it, to evaluate where it lies (until the next keep()).
  contact_state& keep(contact_state&& state) { return states_.emplace_back(std::move(state)); }

  /// Marks the actions appended since the previous call as those of contact `who` (its index
  /// in the ids given to commit). Call it after each evaluation; a contact may have several
  /// runs (the identity path evaluates a contact up to each merge).
  void end_contact(std::uint32_t who) {
    if (!actions_.empty() && (runs_.empty() || runs_.back().second != actions_.size())) {
      runs_.emplace_back(who, actions_.size());
    }
  }

  /// Commits the batch: sorts the actions in due_order (each contact's in emission order;
  /// `ids[who]` is the id of the contact end_contact named `who`), hands them to the sink,
  /// saves the kept states (and the store the lent ones), then folds the statistics and
  /// counters into the engine. Returns the sorted actions.
  /// @throws callback_error if the sink or the store fails; the batch then changed nothing,
  ///   except after the sink accepted the actions (the message says so: engine.hpp).
  std::vector<due_action> commit(std::span<const std::string_view> ids);

 private:
  void sort(std::span<const std::string_view> ids);
  // Puts actions_[keys[i].position] at i, for every i.
  template <class Key>
  void apply_order(const std::vector<Key>& keys);
  void deliver_and_save();
  void fold_in() noexcept;

  // Clears the statistics this batch touched and hands them back to the engine for the next.
  void give_back() noexcept;

  engine& owner_;
  const program& program_;
  round_robin_counters counters_;
  std::vector<rule_stats> counts_;
  std::vector<workflow_stats> workflow_counts_;
  // counts_ / workflow_counts_ used. These lists and the ones below are the engine's
  // (engine::batch_scratch), lent for the batch and given back empty with their capacity.
  std::vector<std::uint32_t> touched_, workflows_touched_;
  outcome_recorder outcomes_;
  std::vector<due_action> actions_;
  // (contact, end of its run of actions) for every run of actions: actions are appended run by
  // run, so these ranges say whose each action is without comparing strings.
  std::vector<std::pair<std::uint32_t, std::size_t>> runs_;
  std::vector<contact_state> states_;  // the copies; the store saves lent states itself
  bool lent_any_ = false;
  bool saved_ = false;
};

}  // namespace nudge::detail
