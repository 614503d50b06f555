// The evaluator: the pure evaluation step for one contact (apply events in order, fire timers
// between them, run triggered rules, apply internal actions and the events they raise, emit
// due actions). Private to the library, never installed: the class is declared once here and
// its member functions are defined by concept in the .cpp files beside this header, one per
// section below; the public entry points are in evaluate.cpp. The library is built without
// LTO, so the functions called per event or per condition leaf stay inline here, where every
// section can inline them as it did when the evaluator was one translation unit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nudge/detail/calendar.hpp>
#include <nudge/detail/evaluate_into.hpp>
#include <nudge/detail/state_conditions.hpp>
#include <nudge/evaluate.hpp>

namespace nudge::eval {

using detail::none;

// splitmix64's finalizer: a cheap, well-mixed combination for idempotency keys.
inline std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  std::uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Numeric view of a value for mixed integer/decimal comparisons.
inline bool as_number(const value& v, double& out) noexcept {
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    out = static_cast<double>(*i);
    return true;
  }
  if (const auto* d = std::get_if<double>(&v)) {
    out = *d;
    return true;
  }
  return false;
}

// A leaf's comparison of a value with its operands (conditions.cpp).
bool compare_value(const value* v, compare_op op, const std::vector<value>& operands);

inline bool check_count(std::int64_t n, count_op op, std::int64_t bound) noexcept {
  switch (op) {
    case count_op::at_least:
      return n >= bound;
    case count_op::at_most:
      return n <= bound;
    case count_op::exactly:
      return n == bound;
  }
  return false;
}

// An event waiting to be applied: the host's, or one an internal action raised.
struct pending_event {
  std::string type;
  std::string key;
  time_point at;
  std::size_t depth = 0;
  std::vector<std::uint32_t> chain;  // rules whose actions led here, for cycle errors
};

// Where an evaluation writes: the state it mutates and the lists it appends to. The engine
// points these at batch-wide lists so that no per-contact vectors are built and merged.
struct sinks {
  contact_state& state;
  std::vector<due_action>& actions;
  const detail::outcome_recorder& outcomes;
  detail::profile_guard* guard = nullptr;  ///< non-null: `state` is lent by the store
};

class evaluator {
 public:
  evaluator(const program& p, sinks out, round_robin_counters* counters)
      : p_(p),
        c_(p.compiled()),
        out_(out),
        s_(out.state),
        counters_(counters),
        contact_hash_(fnv1a64(out.state.contact.id)),
        timeline_size_(p.timeline_size()) {
    const auto& defs = p_.rules().segments;
    members_.resize(defs.size());
    for (std::size_t i = 0; i < defs.size(); ++i) {
      members_[i] = s_.segments.contains(defs[i].name) ? 1 : 0;
    }
    // Nothing is known yet about what changed since the state was saved: the first refresh
    // evaluates every segment.
    seg_stable_until_.assign(defs.size(), min_time);
    seg_edge_.assign(defs.size(), max_time);
  }

  /// `type` is the event type's index in the program (resolved while validating).
  void apply_external(const event& e, std::uint32_t type) {
    fire_timers_before(e.ts);
    apply(type, e.key, e.ts, 0, nullptr, &e.props);
    drain();
  }

  /// The host replaced the profile at `at` (engine::upsert_contacts with an instant). It is
  /// applied as an event stamped `at` would be: timers due before `at` fire first, on the old
  /// profile; then everything that reads the profile is re-evaluated on the new one (score
  /// thresholds and decay, segments, yearly date entries, workflow goals given as conditions)
  /// and the events this raises run their rules and workflows at `at`. Timers due at `at` fire
  /// after, in finish().
  void replace_profile(contact c, time_point at) {
    fire_timers_before(at);
    s_.clock = std::max(s_.clock, at);
    const auto before = s_.contact.location;
    changing_profile();
    s_.contact = std::move(c);
    if (s_.contact.location != before) {
      // Moved through move_to, so that areas see where it came from.
      const auto after = s_.contact.location;
      s_.contact.location = before;
      move_to(after, at, 0, nullptr);
    }
    touch_all_segments();  // any field may have changed
    if (!p_.rules().scoring.thresholds.empty()) {
      check_thresholds(at, 0, nullptr);
    }
    if (p_.rules().scoring.decay) {
      sync_decay_timer(at);
    }
    if (!c_.segments.empty()) {
      refresh_segments(at, 0, nullptr);
    }
    if (!c_.date_workflows.empty()) {
      sync_dates(at, nullptr);
    }
    if (!c_.workflows.empty()) {
      check_exit_conditions(at);
    }
    drain();
  }

  void finish(time_point now) { fire_timers_through(now); }
  /// Timers due at `now` stay pending; messages held at `now` are decided (nothing is left
  /// undecided when the evaluation ends).
  void finish_before(time_point now) {
    fire_timers_before(now);
    while (!held_.empty()) {
      flush_held();
    }
  }

  /// Before the batch: schedules yearly date entries from the contact's details, as of `anchor`
  /// (the contact's clock, or for a contact never evaluated, its first event or `now`).
  void start(time_point anchor) {
    if (!c_.date_workflows.empty()) {
      sync_dates(anchor, nullptr);
      drain();
    }
  }

 private:
  // Every change of the profile other than its score and location goes through here first:
  // a store that lent the state backs the profile up on its first change (profile_guard).
  void changing_profile() {
    if (out_.guard != nullptr) {
      out_.guard->before_change();
    }
  }

  const program& p_;
  const detail::compiled_program& c_;
  sinks out_;
  contact_state& s_;
  round_robin_counters* counters_;
  std::uint64_t contact_hash_;
  std::size_t timeline_size_;  // 0: recording is off
  // A FIFO of raised events: a vector and a read position, so that the common case (no internal
  // actions) allocates nothing.
  std::vector<pending_event> raised_;
  std::size_t raised_head_ = 0;
  std::size_t cascade_raised_ = 0;  ///< events raised since the current cascade began
  // Who performs an action: a rule's action or a workflow step. Both go through perform(), the
  // one path by which anything is applied to the contact or handed to the host.
  struct emission {
    std::string_view source;     // the rule's or workflow's id
    std::string_view step;       // the workflow step's id; empty for rules
    std::uint32_t index = 0;     // rule or workflow index
    std::uint32_t chain_id = 0;  // in cascade chains: rule index, or rule count + workflow index
    std::uint32_t owner_group = none;
    std::uint32_t round_robin = none;
    std::uint64_t key = 0;
    timeline_source kind = timeline_source::rule;
    std::uint32_t timeline_step = timeline_none;  // the rule's action index, or the step index
    // The delivery policy governing its messages (nullptr: ungoverned), and the timer a
    // deferral schedules (source, action or step, trigger time and ordinal).
    const delivery_policy* policy = nullptr;
    timer retry;
  };

  // Messages under a delivery policy wait here until everything at their instant has run, then
  // are decided together by priority (flush_held). Empty without a policy.
  struct held_message {
    due_action action;
    timer retry;  // rule, action, trigger time and ordinal: what a deferral schedules
    const delivery_policy* policy;
    channel on;
  };
  std::vector<held_message> held_;
  time_point held_at_{};
  // Membership of each segment (by index) while this evaluator runs, in step with
  // s_.segments: refresh_segments (the one writer of s_.segments during an evaluation) updates
  // both, so it and the in_segment leaf need no search by name per applied event. (Those searches
  // were ~15 % of a W1 replay with 20 segments; see bench/README.md.)
  std::vector<std::uint8_t> members_;
  // Per segment, while this evaluator runs: until when its last evaluation still holds (min_time:
  // something it reads changed, evaluate it again), and the flip instant that evaluation computed
  // (its part of the flip timer). Both are functions of what the segment reads: the profile
  // fields, the memberships and the events inside its windows, which stay the same until a
  // window's oldest event leaves it (the stable-until instant) or an input is touched. So a
  // segment that nothing touched gives, before that instant, the same membership and the same
  // flip instant as evaluating it again would; refresh_segments evaluates only the others.
  // (Evaluating all 20 segments of bench/make_workflow_rules.py after every applied event was
  // ~35 % of a W1 replay; see bench/README.md.)
  std::vector<time_point> seg_stable_until_;
  std::vector<time_point> seg_edge_;
  time_point seg_refreshed_at_ = min_time;  // the last refresh's instant
  // Since the last refresh: was any segment touched; and the earliest stable-until instant. When
  // neither says so, no segment needs evaluating and the flip timer is already right.
  bool seg_touched_ = true;
  time_point seg_stable_min_ = min_time;
  // A run of a workflow some segment reads moved since the last drain (run_moved).
  bool runs_moved_ = false;
  time_point runs_moved_at_ = min_time;

  // Marks segments as to be evaluated again: something they read has changed.
  void touch_segments(const std::vector<std::uint32_t>& segments) {
    for (std::uint32_t i : segments) {
      seg_stable_until_[i] = min_time;
      seg_touched_ = true;
    }
  }
  void touch_all_segments() {
    std::fill(seg_stable_until_.begin(), seg_stable_until_.end(), min_time);
    seg_touched_ = true;
  }
  void touch_named(const detail::string_map<std::vector<std::uint32_t>>& by_name,
                   std::string_view name) {
    if (by_name.empty()) {
      return;
    }
    if (auto it = by_name.find(name); it != by_name.end()) {
      touch_segments(it->second);
    }
  }
  void touch_field(field f) {
    touch_segments(c_.segment_reads.by_field[static_cast<std::size_t>(f)]);
  }

  // ---- timeline -----------------------------------------------------------------------------
  // What happened to the contact, step by step, for `nudge explain` and timelines (timeline.cpp).
  // Off unless the program records it (timeline_size_ > 0).
  // Inline test, out-of-line record: with the timeline off (the default) a would-be entry costs
  // a predictable branch and no call. (A template on the flag was tried: GCC then inlined less
  // of the evaluator and W1 got slower, not faster.)
  [[gnu::always_inline]] void note(timeline_what what, std::uint32_t r, time_point at,
                                   std::uint32_t step = timeline_none,
                                   timeline_reason reason = timeline_reason::none,
                                   std::uint32_t detail = timeline_none,
                                   time_point until = min_time,
                                   timeline_source kind = timeline_source::rule) {
    if (timeline_size_ != 0) [[unlikely]] {
      record_entry(what, r, at, step, reason, detail, until, kind);
    }
  }
  [[gnu::noinline]] void record_entry(timeline_what what, std::uint32_t r, time_point at,
                                      std::uint32_t step, timeline_reason reason,
                                      std::uint32_t detail, time_point until, timeline_source kind);
  std::uint32_t failing_part(std::uint32_t root, time_point now, time_point triggered_at) const;

  // ---- delivery policy ------------------------------------------------------------------------
  // Messages under a delivery policy (hours, caps, priorities) wait until everything at their
  // instant has run, then are decided together (delivery.cpp).
  // Inlined into the hot emission path; the policy's functions below stay out of line (cold).
  [[gnu::always_inline]] due_action make_due(const action& a, const emission& src, time_point now,
                                             std::string_view arg) const {
    due_action d;
    d.contact = s_.contact.id;
    d.ts = now;
    d.rule = src.source;
    d.rule_index = src.index;
    d.step = src.step;
    d.kind = a.kind;
    d.arg = arg;
    d.definition = &a;
    d.idempotency_key = src.key;
    return d;
  }
  [[gnu::noinline]] void hold(due_action d, const delivery_policy* policy, timer retry);
  [[gnu::noinline]] void flush_held();
  struct verdict {
    timeline_reason reason = timeline_reason::none;  // none: send
    std::uint32_t cap = timeline_none;
    std::optional<time_point> retry_at;  // set: defer to it; else (with a reason) skip
  };
  void decide(held_message& m);
  verdict judge(const delivery_policy& p, channel on, time_point now) const;

  // ---- local time ---------------------------------------------------------------------------
  // The contact's wall clock: its zone, the allowed hours of a policy, the next allowed instant
  // (local_time.cpp).
  const zone_rules* zone() const;
  static std::int64_t offset_at(const zone_rules* z, std::int64_t t) {
    return z == nullptr ? 0 : z->utc_offset(from_epoch(t)).count();
  }
  static bool within(const local_hours& h, std::int64_t second_of_day) {
    return h.from_seconds < h.to_seconds
               ? second_of_day >= h.from_seconds && second_of_day < h.to_seconds
               : second_of_day >= h.from_seconds || second_of_day < h.to_seconds;
  }
  static timeline_reason refusal_at(const delivery_policy& p, std::int64_t local);
  timeline_reason hours_refusal(const delivery_policy& p, time_point now) const;
  std::optional<time_point> next_allowed(const delivery_policy& p, time_point from) const;

  // ---- timers -----------------------------------------------------------------------------
  // Everything a contact waits for (delayed checks, deferred messages, workflow waits, yearly
  // dates, segment flips, score decay) is one list of timers sorted by due time; firing one hands
  // it to its section (timers.cpp).
  // Held messages (delivery policy) are decided when their instant is over: before a timer or
  // event at a later time, and at the end. Deciding may schedule deferrals, which may be due
  // before `t`: hence the loops re-read the front.
  void fire_timers_before(time_point t) {
    for (;;) {
      if (!s_.timers.empty() && s_.timers.front().due_at < t) {
        if (!held_.empty() && s_.timers.front().due_at > held_at_) [[unlikely]] {
          flush_held();
        } else {
          fire_front();
        }
      } else if (!held_.empty() && t > held_at_) [[unlikely]] {
        flush_held();
      } else {
        return;
      }
    }
  }
  void fire_timers_through(time_point t);
  void fire_front();
  void schedule(timer t) {
    if (s_.timers.size() >= p_.limits().max_pending_timers) {
      throw_too_many_timers();
    }
    if (t.due_at > max_time) [[unlikely]] {
      throw_timer_out_of_range(t);
    }
    t.sequence = s_.timers_scheduled++;
    auto pos =
        std::upper_bound(s_.timers.begin(), s_.timers.end(), t, [](const timer& a, const timer& b) {
          return a.due_at < b.due_at || (a.due_at == b.due_at && a.sequence < b.sequence);
        });
    s_.timers.insert(pos, t);
  }
  [[noreturn, gnu::cold, gnu::noinline]] void throw_timer_out_of_range(const timer& t) const;
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_timers() const;

  // ---- events -----------------------------------------------------------------------------
  // Applying an event: history, measures, location, the rules and workflow steps it triggers, and
  // the FIFO of events that actions raise, drained to the end of the cascade (events.cpp).
  void drain();
  const detail::match_lists* lookup(std::uint32_t type, std::string_view key,
                                    detail::match_lists& merged);
  void apply(std::uint32_t type, std::string_view key, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain, const name_map<value>* props);
  void move_to(std::optional<geo_point> to, time_point at, std::size_t depth,
               const std::vector<std::uint32_t>* chain);
  static void record(history_slot& h, std::uint32_t keep, time_point at);
  void record_measure(std::uint32_t m, time_point at, const name_map<value>* props);
  void raise(std::string_view type, std::string key, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain, std::uint32_t r);
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_raised() const;

  // ---- scoring --------------------------------------------------------------------------------
  // Score changes by rules, thresholds crossed, and decay on the engine's own timer (scoring.cpp).
  void change_score(double points, std::string_view why, time_point at, std::size_t depth,
                    const std::vector<std::uint32_t>* chain);
  void award(std::uint32_t r, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain);
  static std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
  }
  void check_thresholds(time_point at, std::size_t depth, const std::vector<std::uint32_t>* chain);
  timer* find_own_timer(std::int32_t kind);
  void drop_own_timer(std::int32_t kind);
  void set_own_timer(std::int32_t kind, time_point due);
  void sync_decay_timer(time_point at);
  void apply_decay(time_point at);

  // ---- segments -------------------------------------------------------------------------------
  // Segment membership, evaluated again only when something it reads changed or a window edge
  // passed (segments.cpp).
  void refresh_segments(time_point at, std::size_t depth, const std::vector<std::uint32_t>* chain);
  time_point stable_until(const detail::node& nd, time_point t) const;
  time_point edge(const detail::node& nd, time_point t) const;
  // When an event at `e` leaves the leaf's window: e + its length, or e plus its calendar
  // months on the contact's calendar. An event is inside at `t` while t < expiry.
  time_point expiry(const condition& leaf, time_point e) const {
    if (leaf.window_months == 0) [[likely]] {
      return e + leaf.window_length;  // no zone look-up on the hot path
    }
    return detail::add_months(e, leaf.window_months, local_zone());
  }
  static bool aggregate_holds(const condition& leaf, double sum, std::int64_t n) {
    if (leaf.aggregate == aggregate_fn::average && n == 0) {
      return false;
    }
    const value v{leaf.aggregate == aggregate_fn::sum ? sum : sum / static_cast<double>(n)};
    return compare_value(&v, leaf.op, leaf.operands);
  }

  // ---- checks and actions -------------------------------------------------------------------
  // A triggered rule: its (delayed) check, its policy, then its actions through perform(), the one
  // path by which anything is applied or emitted (actions.cpp).
  struct cascade_ctx {
    std::size_t depth;
    const std::vector<std::uint32_t>* chain;
  };
  void trigger(std::uint32_t r, time_point at, std::uint64_t ordinal, std::size_t depth,
               const std::vector<std::uint32_t>* chain);
  void run_check(std::uint32_t r, time_point now, time_point triggered_at, std::uint64_t ordinal,
                 const cascade_ctx* ctx);
  timeline_reason policy_allows(const rule& def, std::uint32_t r, time_point now) const;
  void run_action(std::uint32_t r, std::size_t i, time_point now, time_point triggered_at,
                  std::uint64_t ordinal, const cascade_ctx* ctx);
  emission rule_emission(std::uint32_t r, std::size_t i, time_point triggered_at,
                         std::uint64_t ordinal) const;
  // Whether the delivery policy decides on `a` (held until its instant is over) rather than it
  // being emitted at once.
  static bool governed(const action& a, const emission& src) {
    return src.policy != nullptr && !a.transactional && channel_of(a.kind).has_value() &&
           (is_external(a.kind) || a.notify);
  }
  bool perform(const action& a, const emission& src, time_point now, const cascade_ctx* ctx);

  // ---- workflows ----------------------------------------------------------------------------
  // Runs of workflows: entering, steps, waits, goals and exits (workflows.cpp).
  using wk = workflow_outcome_kind;
  const workflow& wf(std::uint32_t w) const { return p_.rules().workflows[w]; }
  void run_moved(std::uint32_t w, wk k, time_point at);
  void note(std::uint32_t w, std::uint32_t step, wk k, time_point at);
  std::size_t find_run(std::uint64_t id) const {
    for (std::size_t i = 0; i < s_.runs.size(); ++i) {
      if (s_.runs[i].id == id) {
        return i;
      }
    }
    return s_.runs.size();
  }
  static bool key_matches(const event_match& m, std::string_view key);
  void cancel_timers(std::uint64_t run_id);
  void schedule_wait(const workflow_run& r, time_point due);
  std::pair<std::uint32_t, std::uint32_t> attribution(const name_map<value>* props,
                                                      std::string_view key) const;
  void on_workflow_event(std::uint32_t type, std::string_view key, time_point at,
                         std::uint64_t ordinal, const cascade_ctx& ctx,
                         const name_map<value>* props);
  void check_exit_conditions(time_point at);
  void try_enter(std::uint32_t w, time_point at, std::uint64_t ordinal, const cascade_ctx* ctx);
  void leave_wait(const workflow_run& r, time_point at);
  void end_run(std::size_t i, time_point at, bool by_goal);
  void complete(std::size_t i, time_point at, const cascade_ctx* ctx);
  emission step_emission(const workflow_run& r) const;
  void step_decided(std::size_t i, time_point now, bool sent);
  // The contact's bucket 0..99 for splits: the same contact and workflow always get the same.
  std::uint32_t bucket(std::uint32_t w) const {
    return static_cast<std::uint32_t>(fnv1a64(wf(w).id, fnv1a64(s_.contact.id)) % 100);
  }
  void go(std::uint64_t id, std::uint32_t target, time_point now, const cascade_ctx* ctx);
  std::optional<time_point> wait_due(workflow_run& r, const workflow_step& st, time_point now);
  void schedule_if_finite(const workflow_run& r, time_point due);
  void wait_over(const timer& tm);

  // ---- yearly date entries ----------------------------------------------------------------
  // Workflows entered on a yearly date read from a contact detail (dates.cpp).
  struct md {
    int month, day;
  };
  static std::optional<md> month_day(const value* v);
  static std::int64_t occurrence(md date, int year, std::int32_t offset_days,
                                 std::int32_t time_of_day);
  static std::int64_t first_at_local(const zone_rules* z, std::int64_t local);
  std::optional<time_point> next_yearly(md date, std::int32_t offset_days, std::int32_t time_of_day,
                                        time_point from) const;
  time_point next_time_of_day(time_point from, std::int32_t time_of_day,
                              std::uint8_t weekdays) const;
  // The contact's zone for workflow times: none (UTC) when no policy or workflow of the program
  // reads local time, so such programs never look zones up.
  const zone_rules* local_zone() const { return c_.delivery.default_zone ? zone() : nullptr; }
  void sync_dates(time_point anchor, const std::string_view* changed_detail);
  void date_due(const timer& tm);

  // ---- conditions ---------------------------------------------------------------------------
  // A compiled condition tree evaluated for the contact at an instant (conditions.cpp).
  bool eval(std::uint32_t n, time_point now, time_point triggered_at) const;
  bool eval_compare(const condition& leaf) const;
  bool eval_happened(const condition& leaf, const history_slot& h, time_point now,
                     time_point triggered_at) const;
};

}  // namespace nudge::eval
