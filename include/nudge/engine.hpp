// nudge/engine.hpp: the engine: groups a batch of events by contact, loads each contact from the
// host's store, evaluates, hands due actions to the host's sink, saves the new states.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <boost/unordered/unordered_flat_map.hpp>

#include <nudge/contact.hpp>
#include <nudge/due_action.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/event.hpp>
#include <nudge/memory_store.hpp>
#include <nudge/program.hpp>
#include <nudge/sink.hpp>
#include <nudge/stats.hpp>
#include <nudge/store.hpp>

namespace nudge {

namespace detail {
class batch;
}

struct engine_options {
  /// An event for a contact the store does not have creates it (an anonymous visitor, say).
  /// When false, such an event is an input_error.
  bool create_unknown_contacts = true;
  /// Most events one contact may have in one batch. A contact's events are evaluated one after
  /// another on one state, so a batch with millions of events for one contact (a runaway
  /// client, a replayed log stuck in a loop) is refused up front with an input_error naming the
  /// contact, the first event past the limit and the limit; the batch then changed nothing.
  /// 0: no limit. Split larger histories into several batches (the result is the same).
  std::size_t max_events_per_contact = 100'000;
};

/// Runs a program over batches of events with the host's clock, store and sink.
///
/// Example:
///
///     nudge::engine engine{program};                  // in-memory store, no sink
///     auto due = engine.process(events, nudge::from_epoch(1704103200));
///     due = engine.advance(nudge::from_epoch(1709251200));   // timers that came due since
///
/// Atomicity: a batch either completes, or throws and leaves the store, the statistics and the
/// round-robin counters as they were, with nothing handed to the sink; the exception names the
/// contact, event index or callback. One exception: if store.save throws after the sink accepted
/// the actions, those actions were delivered but no state was saved; processing the same batch
/// again produces the same idempotency keys, so the host can drop the duplicates.
///
/// Thread-safety: one batch at a time per engine.
class engine {
 public:
  /// Uses `store` and `sink` if given (not owned; they must outlive the engine); otherwise an
  /// internal memory_store and no sink (the actions are returned all the same).
  explicit engine(std::shared_ptr<const nudge::program> program, nudge::store* store = nullptr,
                  nudge::sink* sink = nullptr, engine_options options = {});

  /// Applies `events` (any contacts, each contact's events in time order), then fires every
  /// timer due at or before `now`. Returns the batch's due actions sorted by (ts, contact),
  /// each contact's in emission order.
  ///
  /// Identity: an `identify` event for id A with key K (the known contact's id) merges A into
  /// K at the event's second T. Both contacts first run up to T (their events before the
  /// identify event in (time, batch position) order, and their timers due before T); then
  /// merge_states (identity.hpp) makes the merged state K, A's stored state becomes an alias
  /// record (contact_state::merged_into = K), and the identify event is applied to K with key A,
  /// so rules on `identify` and the segment / threshold re-evaluation see the merged contact.
  /// Events for A later in the batch, and in later batches, go to K; aliases chain (A -> B,
  /// then B identified as C: A's events go to C). An identify of two ids that are already one
  /// contact (in either direction) merges nothing and is applied as an ordinary event. Refused
  /// with an input_error naming the event: an empty key, a key equal to the event's contact, an
  /// id already merged into one contact identified as another (merge the contacts themselves),
  /// an unknown key when create_unknown_contacts is false (otherwise K is created). It is all
  /// one batch: on any error nothing is merged or saved.
  /// @throws input_error (also for more than engine_options::max_events_per_contact events of
  ///   one contact), rule_cycle_error, callback_error; the batch then changed nothing.
  std::vector<due_action> process(std::span<const event> events, time_point now);

  /// Fires every timer due at or before `now`; touches only contacts the store reports due.
  std::vector<due_action> advance(time_point now) { return process({}, now); }

  /// Creates the contact or replaces its profile, keeping its history and timers. Nothing is
  /// evaluated: segments over profile fields, score thresholds and yearly date entries see the
  /// new profile at the contact's next event or timer (use the overload with an instant to
  /// evaluate now). Kept for loading profiles before any instant is known (a snapshot, a
  /// contacts file ahead of its events) and because it costs one store call and no evaluation.
  /// @throws callback_error if the store fails; nothing changes then.
  void upsert_contact(contact c);
  /// Creates or replaces many profiles in one store call (all or none), without evaluating.
  void upsert_contacts(std::span<const contact> contacts);

  /// Creates the contact or replaces its profile at instant `at`, and evaluates it there with
  /// no events, as one batch (atomic like process(): the store, the sink, statistics and
  /// counters change all together or not at all). For each contact, as if an event stamped
  /// `at` changed its profile:
  ///  1. its timers due before `at` fire, on the old profile (as advance would);
  ///  2. the profile is replaced; score thresholds and decay, segments (segment_entered /
  ///     _exited, which rules and workflows act on at `at`), workflow goals given as conditions
  ///     and yearly date entries (timers (re)scheduled from the new details) are evaluated on it;
  ///  3. its timers due at `at` fire.
  /// Returns the due actions sorted by (ts, contact), as process() does. Only the given
  /// contacts are evaluated; other contacts' timers wait for the next process() / advance().
  /// A contact listed twice is evaluated once, with its last profile.
  ///
  ///     engine.upsert_contact(profile_with_birthday, nudge::from_epoch(1704067200));
  ///     auto due = engine.advance(nudge::from_epoch(1735689600));   // the birthday message
  ///
  /// @throws input_error naming the contact and its position in `contacts`: an empty id, `at`
  ///   before the contact's clock (its last event or timer) or outside [min_time, max_time], an
  ///   id merged into another contact (upsert that one); rule_cycle_error, callback_error. The
  ///   batch then changed nothing.
  std::vector<due_action> upsert_contact(contact c, time_point at);
  /// The same for many contacts in one batch.
  std::vector<due_action> upsert_contacts(std::span<const contact> contacts, time_point at);
  /// The same, taking the profiles instead of copying them (a replay's contacts file: a copy
  /// of each profile was a tenth of the upsert).
  std::vector<due_action> upsert_contacts(std::vector<contact>&& contacts, time_point at);
  /// The contact's profile, or nullopt.
  std::optional<contact> find_contact(std::string_view id);

  /// Ids of the contacts currently in segment `name`, sorted; asks the store
  /// (store::segment_members). Membership is as of each contact's last evaluation: a window
  /// edge that passed since is applied by the next process() / advance() reaching it.
  /// @throws std::invalid_argument if the program has no such segment; callback_error if the
  ///   store fails (or cannot answer segment queries).
  std::vector<std::string> segment_members(std::string_view name);
  /// Number of contacts in segment `name` (store::segment_size); throws as segment_members.
  std::size_t segment_size(std::string_view name);

  /// Statistics per rule, in program order.
  const std::vector<rule_stats>& stats() const noexcept { return stats_; }
  /// Statistics per workflow (and per step), in program order. `active` and each step's
  /// `waiting` count the runs inside now, across all contacts.
  const std::vector<nudge::workflow_stats>& workflow_stats() const noexcept {
    return workflow_stats_;
  }
  /// Round-robin owner counters (one per assign_owner action with round robin).
  const round_robin_counters& counters() const noexcept { return counters_; }
  /// Restores statistics and counters saved from an engine on the same program (snapshots).
  /// An empty `workflows` leaves the workflow statistics at zero.
  /// @throws std::invalid_argument if `stats` does not name this program's rules in order, or
  ///   `workflows` (when given) its workflows and steps.
  void restore(std::vector<rule_stats> stats, round_robin_counters counters,
               std::vector<nudge::workflow_stats> workflows = {});
  /// Takes a changed rule program at instant `at` (lifecycle.hpp): checks the change
  /// (check_program_change), migrates every stored state (migrate_state: runs of archived
  /// workflows end, runs move to new versions by step id, held runs of reactivated workflows
  /// resume at `at`), saves the changed states in one store.save, and carries the statistics over
  /// (by workflow and step id; the ended runs counted in `ended`). Resumed waits fire at the
  /// next process() / advance() whose `now` reaches `at`. Rule statistics and round-robin
  /// counters are kept.
  ///
  ///     engine.process(events, t1);
  ///     engine.change_program(nudge::load_rules_file("rules_v2.json"), t1);
  ///     engine.advance(t2);   // held waits fire at t1, then the new program runs
  ///
  /// `at` must not be before any changed contact's clock (its last event or timer): pass the
  /// latest `now` given to process(), or later.
  /// @throws rule_error if the change is refused, std::invalid_argument for an `at` in a
  ///   contact's past, callback_error if the store fails or cannot list its contacts
  ///   (store::contacts); nothing changed then.
  /// Complexity: loads every stored state once.
  void change_program(std::shared_ptr<const nudge::program> next, time_point at);
  const nudge::program& program() const noexcept { return *program_; }
  std::shared_ptr<const nudge::program> shared_program() const noexcept { return program_; }
  nudge::store& store() noexcept { return *store_; }

 private:
  // One batch's setup, commit and rollback (src/core/engine/batch.hpp) use the members below.
  friend class detail::batch;

  // A batch with identify events or events for merged ids: contacts run in one global time
  // order with the merges in between (a plain batch never takes this path). `lent`: states
  // process() already borrowed from the store (store::lend) into batch `b`, by id; `b` abandons
  // them if the batch fails.
  // upsert_contacts at an instant, copying the profiles from a span of const contacts and
  // moving them from a span of contacts.
  template <class Contact>
  std::vector<due_action> upsert_at(std::span<Contact> contacts, time_point at);
  std::vector<due_action> process_linked(std::span<const event> events, time_point now,
                                         const detail::string_map<contact_state*>& lent,
                                         detail::batch& b);

  std::shared_ptr<const nudge::program> program_;
  std::unique_ptr<memory_store> own_store_;
  nudge::store* store_;
  nudge::sink* sink_;
  engine_options options_;
  std::vector<rule_stats> stats_;
  std::vector<nudge::workflow_stats> workflow_stats_;
  round_robin_counters counters_;
  // Zeroed per-batch statistics, lent to each batch and handed back cleared: a batch of one
  // event must not build (and destroy) statistics for every rule of the program.
  std::vector<rule_stats> spare_counts_;
  std::vector<nudge::workflow_stats> spare_workflow_counts_;
  // The buffers process() groups a batch's events in, kept from call to call: a batch of one
  // event allocated and freed all of them each time (a third of `nudge replay --batch 1`'s
  // instructions were malloc and free). A host callback that calls process() again while they
  // are in use (scratch_busy_) gets fresh ones.
  struct process_scratch {
    // Contacts are grouped by a linear search while a batch has few (a batch of one event
    // needs no hash map, and clearing the map costs its capacity), by group_of beyond.
    static constexpr std::size_t linear_limit = 16;
    bool mapped = false;
    // Keyed by views of the batch's ids (they outlive the call): one hash per event, where a
    // map of strings needed a find and then an emplace for every new contact.
    boost::unordered_flat_map<std::string_view, std::uint32_t, detail::string_hash> group_of;
    std::vector<std::string_view> contacts;
    std::vector<std::uint32_t> group, start, original, fill;
    std::vector<const event*> ordered;
    std::vector<contact_state*> lent;
    // The group of contact `id`, added as the next one if it has none yet.
    std::uint32_t group_of_id(std::string_view id);
    void clear() noexcept;
  };
  bool scratch_busy_ = false;
  // The same for a batch (detail::batch): its lists of touched statistics, runs of actions and
  // kept states.
  struct batch_scratch {
    std::vector<std::uint32_t> touched, workflows_touched;
    std::vector<std::pair<std::uint32_t, std::size_t>> runs;
    std::vector<contact_state> states;
  };
  batch_scratch batch_scratch_;
  process_scratch scratch_;
};

}  // namespace nudge
