// The pure evaluation step for one contact: apply events in order, fire timers between them,
// run triggered rules, apply internal actions (and the events they raise), emit due actions.
#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <boost/container/small_vector.hpp>
#include <boost/date_time/gregorian/gregorian_types.hpp>
#include <fmt/format.h>

#include <nudge/detail/calendar.hpp>
#include <nudge/detail/evaluate_into.hpp>
#include <nudge/detail/state_conditions.hpp>
#include <nudge/evaluate.hpp>

namespace nudge {

std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t seed) noexcept {
  std::uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

using detail::none;

// splitmix64's finalizer: a cheap, well-mixed combination for idempotency keys.
std::uint64_t mix(std::uint64_t h, std::uint64_t v) noexcept {
  std::uint64_t z = h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2));
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Numeric view of a value for mixed integer/decimal comparisons.
bool as_number(const value& v, double& out) noexcept {
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

// -1, 0, 1, or 2 when the two cannot be ordered (different kinds).
int order(const value& a, const value& b) noexcept {
  double x, y;
  if (as_number(a, x) && as_number(b, y)) {
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.index() != b.index()) {
    return 2;
  }
  return std::visit(
      [&](const auto& lhs) -> int {
        using T = std::decay_t<decltype(lhs)>;
        const auto& rhs = std::get<T>(b);
        return lhs < rhs ? -1 : (rhs < lhs ? 1 : 0);
      },
      a);
}

bool compare_value(const value* v, compare_op op, const std::vector<value>& operands) {
  if (op == compare_op::exists) {
    if (v == nullptr) {
      return false;
    }
    const auto* s = std::get_if<std::string>(v);
    return s == nullptr || !s->empty();
  }
  if (v == nullptr) {
    return op == compare_op::ne;  // a missing detail differs from any value
  }
  switch (op) {
    case compare_op::eq:
      return order(*v, operands[0]) == 0;
    case compare_op::ne:
      return order(*v, operands[0]) != 0;
    case compare_op::lt:
      return order(*v, operands[0]) == -1;
    case compare_op::le: {
      int o = order(*v, operands[0]);
      return o == -1 || o == 0;
    }
    case compare_op::gt:
      return order(*v, operands[0]) == 1;
    case compare_op::ge: {
      int o = order(*v, operands[0]);
      return o == 1 || o == 0;
    }
    case compare_op::in:
      return std::any_of(operands.begin(), operands.end(),
                         [&](const value& c) { return order(*v, c) == 0; });
    case compare_op::contains:
    case compare_op::prefix: {
      const auto* s = std::get_if<std::string>(v);
      const auto* p = std::get_if<std::string>(&operands[0]);
      if (s == nullptr || p == nullptr) {
        return false;
      }
      return op == compare_op::contains ? s->find(*p) != std::string::npos
                                        : std::string_view{*s}.starts_with(*p);
    }
    case compare_op::exists:
      break;
  }
  return false;
}

bool check_count(std::int64_t n, count_op op, std::int64_t bound) noexcept {
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
    fire_timers_before(e.at);
    apply(type, e.key, e.at, 0, nullptr, &e.props);
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
                                      std::uint32_t detail, time_point until,
                                      timeline_source kind) {
    timeline_entry e;
    e.at = at;
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
  std::uint32_t failing_part(std::uint32_t root, time_point now, time_point triggered_at) const {
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

  // ---- delivery policy ------------------------------------------------------------------------
  // Inlined into the hot emission path; the policy's functions below stay out of line (cold).
  [[gnu::always_inline]] due_action make_due(const action& a, const emission& src, time_point now,
                                             std::string_view arg) const {
    due_action d;
    d.contact = s_.contact.id;
    d.due_at = now;
    d.rule = src.source;
    d.rule_index = src.index;
    d.step = src.step;
    d.kind = a.kind;
    d.arg = arg;
    d.definition = &a;
    d.idempotency_key = src.key;
    return d;
  }

  [[gnu::noinline]] void hold(due_action d, const delivery_policy* policy, timer retry) {
    const auto on = *channel_of(d.kind);
    held_at_ = d.due_at;
    held_.push_back({std::move(d), retry, policy, on});
  }

  // Decides the held messages of one instant: highest priority first, ties in the order they
  // were emitted; each one sent counts against the caps of those after it. A decided workflow
  // message moves its run on, which may hold new messages at the same instant: they go to a
  // fresh list, decided by the caller's next round.
  [[gnu::noinline]] void flush_held() {
    if (held_.empty()) {
      return;
    }
    std::vector<held_message> now = std::move(held_);
    held_.clear();
    std::stable_sort(now.begin(), now.end(), [](const held_message& a, const held_message& b) {
      return a.policy->priority > b.policy->priority;
    });
    for (auto& m : now) {
      decide(m);
    }
    drain();
  }

  struct verdict {
    timeline_reason reason = timeline_reason::none;  // none: send
    std::uint32_t cap = timeline_none;
    std::optional<time_point> retry_at;  // set: defer to it; else (with a reason) skip
  };

  // A rule's message is counted for the rule; a workflow step's (retry.kind workflow_step) for
  // the step, and its run, resting at the step meanwhile, moves on once the message is sent or
  // dropped.
  void decide(held_message& m) {
    const time_point now = m.action.due_at;
    const std::uint32_t source = m.retry.rule;
    const bool of_step = m.retry.kind == timer_kind::workflow_step;
    std::size_t run = s_.runs.size();
    std::uint32_t step = static_cast<std::uint32_t>(m.retry.action);
    timeline_source kind = timeline_source::rule;
    if (of_step) {
      run = find_run(m.retry.trigger_ordinal);
      if (run == s_.runs.size() || s_.runs[run].step != step || s_.runs[run].phase != 2) {
        return;  // a goal at this instant ended the run: its message is not sent
      }
      kind = timeline_source::workflow;
      step = c_.workflows[source].steps[step].stat;
    }
    const verdict v = judge(*m.policy, m.on, now);
    if (v.reason == timeline_reason::none) {
      if (const auto keep = c_.delivery.keep[static_cast<std::size_t>(m.on)]; keep > 0) {
        auto& log = s_.channel_sends[static_cast<std::uint8_t>(m.on)];
        if (log.size() == keep) {
          log.erase(log.begin());
        }
        log.push_back(now);
      }
      out_.actions.push_back(std::move(m.action));
      note(timeline_what::action_emitted, source, now, step, timeline_reason::none, timeline_none,
           min_time, kind);
      if (of_step) {
        step_decided(run, now, true);
      }
      return;
    }
    const bool hours =
        v.reason == timeline_reason::quiet_hours || v.reason == timeline_reason::send_window;
    if (v.retry_at) {
      timer t = m.retry;
      t.due_at = *v.retry_at;
      t.deferred = true;
      schedule(t);
      if (of_step) {
        note(source, m.retry.action, hours ? wk::deferred_hours : wk::deferred_cap, now);
      } else {
        out_.outcomes.note(
            source, hours ? rule_outcome_kind::deferred_hours : rule_outcome_kind::deferred_cap,
            now);
      }
      note(timeline_what::action_deferred, source, now, step, v.reason, v.cap, *v.retry_at, kind);
      return;
    }
    const bool consent = v.reason == timeline_reason::no_consent;
    if (of_step) {
      note(source, m.retry.action,
           consent ? wk::blocked_no_consent
           : hours ? wk::blocked_hours
                   : wk::blocked_cap,
           now);
    } else {
      out_.outcomes.note(source,
                         consent ? rule_outcome_kind::blocked_no_consent
                         : hours ? rule_outcome_kind::blocked_hours
                                 : rule_outcome_kind::blocked_cap,
                         now);
    }
    note(timeline_what::action_suppressed, source, now, step, v.reason, v.cap, min_time, kind);
    if (of_step) {
      step_decided(run, now, false);
    }
  }

  verdict judge(const delivery_policy& p, channel on, time_point now) const {
    verdict v;
    if (p.require_consent) {
      auto it = s_.contact.consent.find(channel_name(on));
      if (it == s_.contact.consent.end() || !it->second) {
        v.reason = timeline_reason::no_consent;
        return v;
      }
    }
    // Caps: the first instant every cap has room again.
    time_point free_at = now;
    const std::vector<time_point>* log = nullptr;
    if (auto it = s_.channel_sends.find(static_cast<std::uint8_t>(on));
        it != s_.channel_sends.end()) {
      log = &it->second;
    }
    for (std::size_t k = 0; k < p.caps.size(); ++k) {
      const channel_cap& cap = p.caps[k];
      if (cap.on != on || log == nullptr) {
        continue;
      }
      const time_point from = now - cap.per;
      std::int64_t in_window = 0;
      for (auto t = log->rbegin(); t != log->rend() && *t > from; ++t) {
        ++in_window;
      }
      if (in_window >= cap.max_messages) {
        // The max-th latest send leaves the window at its time + per.
        const time_point frees =
            (*log)[log->size() - static_cast<std::size_t>(cap.max_messages)] + cap.per;
        if (v.reason == timeline_reason::none) {
          v.reason = timeline_reason::channel_cap;
          v.cap = static_cast<std::uint32_t>(k);
        }
        free_at = std::max(free_at, frees);
      }
    }
    if (v.reason == timeline_reason::channel_cap) {
      if (p.on_cap == on_refusal::defer) {
        v.retry_at = next_allowed(p, free_at);
      }
      return v;
    }
    if (const auto why = hours_refusal(p, now); why != timeline_reason::none) {
      v.reason = why;
      if (p.on_quiet_hours == on_refusal::defer) {
        v.retry_at = next_allowed(p, now);
      }
    }
    return v;
  }

  // ---- local time ---------------------------------------------------------------------------
  const zone_rules* zone() const {
    const auto& d = c_.delivery;
    const std::string& name = s_.contact.time_zone;
    if (!name.empty()) {
      if (auto it = d.zones.find(name); it != d.zones.end()) {
        return &it->second;
      }
      if (d.system_zones != nullptr) {
        if (auto it = d.system_zones->find(name); it != d.system_zones->end()) {
          return &it->second;
        }
      }
    }
    return d.default_zone ? &*d.default_zone : nullptr;
  }
  static std::int64_t offset_at(const zone_rules* z, std::int64_t t) {
    return z == nullptr ? 0 : z->utc_offset(from_epoch(t)).count();
  }
  static bool within(const local_hours& h, std::int64_t second_of_day) {
    return h.from_seconds < h.to_seconds
               ? second_of_day >= h.from_seconds && second_of_day < h.to_seconds
               : second_of_day >= h.from_seconds || second_of_day < h.to_seconds;
  }
  // Why local wall time `local` (seconds since 1970-01-01T00:00 local) is refused, or none.
  static timeline_reason refusal_at(const delivery_policy& p, std::int64_t local) {
    const std::int64_t day = floor_div(local, 86'400);
    const std::int64_t second = local - day * 86'400;
    const std::int64_t weekday = (day % 7 + 7 + 3) % 7;  // 1970-01-01 was a Thursday; Monday 0
    if (((p.weekdays >> weekday) & 1U) == 0 || (p.send_hours && !within(*p.send_hours, second))) {
      return timeline_reason::send_window;
    }
    if (p.quiet_hours && within(*p.quiet_hours, second)) {
      return timeline_reason::quiet_hours;
    }
    return timeline_reason::none;
  }
  timeline_reason hours_refusal(const delivery_policy& p, time_point now) const {
    if (!p.quiet_hours && !p.send_hours && p.weekdays == all_weekdays) {
      return timeline_reason::none;
    }
    const std::int64_t t = to_epoch(now);
    return refusal_at(p, t + offset_at(zone(), t));
  }
  // The first instant at or after `from` whose local wall time the policy allows (see
  // delivery.hpp for what that means on daylight-saving days); nullopt if none within ~10 days.
  std::optional<time_point> next_allowed(const delivery_policy& p, time_point from) const {
    if (!p.quiet_hours && !p.send_hours && p.weekdays == all_weekdays) {
      return from;
    }
    const zone_rules* z = zone();
    std::int64_t t = to_epoch(from);
    for (int guard = 0; guard < 64; ++guard) {
      const std::int64_t off = offset_at(z, t);
      const std::int64_t local = t + off;
      if (refusal_at(p, local) == timeline_reason::none) {
        return from_epoch(t);
      }
      // The next local wall time > local at which the answer may change.
      const std::int64_t day = floor_div(local, 86'400) * 86'400;
      std::int64_t boundary = day + 86'400;
      for (const auto& h : {p.send_hours, p.quiet_hours}) {
        if (!h) {
          continue;
        }
        for (std::int64_t edge : {std::int64_t{h->from_seconds}, std::int64_t{h->to_seconds}}) {
          if (day + edge > local) {
            boundary = std::min(boundary, day + edge);
          }
        }
      }
      // The first instant after t whose wall time reaches the boundary: t + (boundary - local)
      // unless the offset changes on the way (a transition between t and there).
      std::int64_t u = boundary - off;
      if (offset_at(z, u) != off) {
        std::int64_t lo = t, hi = u;  // offset(lo) == off, offset(hi) != off
        while (hi - lo > 1) {
          const std::int64_t mid = lo + (hi - lo) / 2;
          (offset_at(z, mid) == off ? lo : hi) = mid;
        }
        const std::int64_t after = offset_at(z, hi);
        // Spring forward past the boundary: the first instant after the gap. Fall back: the
        // boundary is reached again in the new offset.
        u = hi + after >= boundary ? hi : boundary - after;
      }
      t = u;
    }
    return std::nullopt;
  }

  // ---- timers -----------------------------------------------------------------------------
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
  void fire_timers_through(time_point t) {
    for (;;) {
      if (!s_.timers.empty() && s_.timers.front().due_at <= t) {
        if (!held_.empty() && s_.timers.front().due_at > held_at_) [[unlikely]] {
          flush_held();
        } else {
          fire_front();
        }
      } else if (!held_.empty()) [[unlikely]] {
        flush_held();
      } else {
        return;
      }
    }
  }
  void fire_front() {
    const timer tm = s_.timers.front();
    s_.timers.erase(s_.timers.begin());
    s_.clock = std::max(s_.clock, tm.due_at);
    if (tm.kind == timer_kind::workflow_step) {
      wait_over(tm);
    } else if (tm.kind == timer_kind::workflow_date) {
      date_due(tm);
    } else if (tm.action == timer::segment_flip) {
      refresh_segments(tm.due_at, 0, nullptr);
    } else if (tm.action == timer::score_decay) {
      apply_decay(tm.due_at);
    } else if (tm.deferred) {
      // A message the policy postponed: it goes through the policy again, not its condition.
      const auto i = static_cast<std::size_t>(tm.action);
      const action& a = p_.rules().rules[tm.rule].actions[i];
      const emission src = rule_emission(tm.rule, i, tm.triggered_at, tm.trigger_ordinal);
      hold(make_due(a, src, tm.due_at, a.arg), src.policy, src.retry);
    } else if (tm.action < 0) {
      run_check(tm.rule, tm.due_at, tm.triggered_at, tm.trigger_ordinal, nullptr);
    } else {
      run_action(tm.rule, static_cast<std::size_t>(tm.action), tm.due_at, tm.triggered_at,
                 tm.trigger_ordinal, nullptr);
    }
    drain();
  }
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

  // Inputs end at max_input_time, 200 years before max_time, and one timer reaches at most
  // max_delay past its batch's `now`: only a host that raised program_limits::max_delay gets
  // here. The batch fails (nothing is stored) rather than store a time nothing can read back.
  [[noreturn, gnu::cold, gnu::noinline]] void throw_timer_out_of_range(const timer& t) const {
    throw input_error(
        s_.contact.id, 0,
        fmt::format("a timer would be due at epoch {}, after {} (the latest time nudge can "
                    "store); program_limits::max_delay must stay at most 100 years",
                    to_epoch(t.due_at), format_time(max_time)));
  }

  // Names the rules holding the pending timers, most timers first (ties by rule order).
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_timers() const {
    std::vector<std::size_t> per_rule(p_.rule_count(), 0);
    for (const timer& t : s_.timers) {
      // The engine's own segment and decay timers belong to no rule.
      if (t.kind == timer_kind::rule && t.action >= timer::check && t.rule < per_rule.size()) {
        ++per_rule[t.rule];
      }
    }
    std::vector<std::uint32_t> order;
    for (std::uint32_t r = 0; r < per_rule.size(); ++r) {
      if (per_rule[r] > 0) {
        order.push_back(r);
      }
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](std::uint32_t a, std::uint32_t b) { return per_rule[a] > per_rule[b]; });
    std::vector<std::string> rules;
    std::vector<std::size_t> counts;
    for (std::uint32_t r : order) {
      rules.push_back(p_.rules().rules[r].id);
      counts.push_back(per_rule[r]);
    }
    throw rule_cycle_error::pending_timers(s_.contact.id, std::move(rules), counts,
                                           p_.limits().max_pending_timers);
  }

  // ---- events -----------------------------------------------------------------------------
  void drain() {
    do {
      while (raised_head_ < raised_.size()) {
        pending_event e = std::move(raised_[raised_head_++]);
        if (raised_head_ == raised_.size()) {
          raised_.clear();
          raised_head_ = 0;
        }
        auto t = c_.types.find(e.type);
        apply(t == c_.types.end() ? none : t->second, e.key, e.at, e.depth, &e.chain, nullptr);
      }
      // Segments reading workflow state see the runs as the cascade left them (a run moves
      // after the events that move it were applied, and by timers that apply no event).
      if (runs_moved_) [[unlikely]] {
        runs_moved_ = false;
        refresh_segments(runs_moved_at_, 0, nullptr);
      }
    } while (raised_head_ < raised_.size());
    cascade_raised_ = 0;  // the cascade is over: the next external event or timer starts anew
  }

  // Rules and slots for (type, key): the precomputed lists for a key some rule names, else the
  // any-key lists merged with the prefix patterns that match.
  const detail::match_lists* lookup(std::uint32_t type, std::string_view key,
                                    detail::match_lists& merged) {
    if (type == none) {
      return nullptr;
    }
    const detail::type_index& ti = c_.by_type[type];
    if (!ti.exact.empty()) {
      auto k = ti.exact.find(key);
      if (k != ti.exact.end()) {
        return &k->second;
      }
    }
    if (!ti.has_prefixes()) {
      return &ti.other_keys;
    }
    auto add = [&](std::vector<std::uint32_t>& into, const std::vector<std::uint32_t>& any,
                   const std::vector<std::pair<std::string, std::uint32_t>>& prefixes) {
      into = any;
      for (const auto& [prefix, id] : prefixes) {
        if (key.starts_with(prefix)) {
          into.push_back(id);
        }
      }
      std::sort(into.begin(), into.end());
    };
    add(merged.rules, ti.other_keys.rules, ti.prefix_rules);
    add(merged.slots, ti.other_keys.slots, ti.prefix_slots);
    add(merged.measures, ti.other_keys.measures, ti.prefix_measures);
    add(merged.scores, ti.other_keys.scores, ti.prefix_scores);
    return &merged;
  }

  void apply(std::uint32_t type, std::string_view key, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain, const name_map<value>* props) {
    s_.clock = std::max(s_.clock, at);
    const std::uint64_t ordinal = s_.events_applied++;
    if (props != nullptr && !props->empty()) {
      std::string unused;  // validated before the batch (check_finite)
      if (auto here = detail::location_of(*props, &unused)) {
        move_to(here, at, depth, chain);
      }
    }
    if (type == c_.tag_added_type) {
      if (!s_.contact.has_tag(key)) {
        s_.contact.tags.emplace(std::string{key}, at);
        touch_named(c_.segment_reads.by_tag, key);
      }
    } else if (type == c_.stage_entered_type) {
      s_.contact.stage = std::string{key};
      touch_field(field::stage);
    } else if (type == c_.tag_removed_type) {
      if (auto it = s_.contact.tags.find(key); it != s_.contact.tags.end()) {
        s_.contact.tags.erase(it);
        touch_named(c_.segment_reads.by_tag, key);
      }
    }
    detail::match_lists merged;
    const detail::match_lists* lists = lookup(type, key, merged);
    if (lists == nullptr) {
      return;
    }
    for (std::uint32_t slot : lists->slots) {
      record(s_.history[slot], c_.slots[slot].recent_needed, at);
      touch_segments(c_.segment_reads.by_slot[slot]);
    }
    for (std::uint32_t m : lists->measures) {
      record_measure(m, at, props);
    }
    for (std::uint32_t r : lists->scores) {
      award(r, at, depth, chain);
    }
    if (!p_.rules().scoring.thresholds.empty()) {
      check_thresholds(at, depth, chain);
    }
    if (p_.rules().scoring.decay) {
      sync_decay_timer(at);
    }
    if (!c_.segments.empty()) {
      refresh_segments(at, depth, chain);
    }
    // Safe to iterate while rules run: raised events wait in raised_ and never re-enter here.
    for (std::uint32_t r : lists->rules) {
      trigger(r, at, ordinal, depth, chain);
    }
    if (!c_.workflows.empty()) {
      const cascade_ctx ctx{depth, chain};
      on_workflow_event(type, key, at, ordinal, ctx, props);
    }
  }

  // The contact's location changes to `to`: remember where it was (moved), have the segments
  // reading it re-evaluated, and raise area_entered / area_exited for the areas it crossed into
  // or out of (after the event moving it, like segment events).
  void move_to(std::optional<geo_point> to, time_point at, std::size_t depth,
               const std::vector<std::uint32_t>* chain) {
    const auto from = s_.contact.location;
    if (from == to) {
      return;
    }
    if (from) {
      s_.previous_location = from;
    }
    s_.contact.location = to;
    touch_segments(c_.segment_reads.by_location);
    for (const area& a : p_.rules().areas) {
      const bool was = from && distance_km(*from, a.center) <= a.radius_km;
      const bool is = to && distance_km(*to, a.center) <= a.radius_km;
      if (is != was) {
        raise(is ? event_types::area_entered : event_types::area_exited, a.name, at, depth, chain,
              none);
      }
    }
  }

  static void record(history_slot& h, std::uint32_t keep, time_point at) {
    if (h.count == 0) {
      h.first = at;
    }
    ++h.count;
    h.last = at;
    if (keep > 0) {
      if (h.recent.size() == keep) {
        h.recent.erase(h.recent.begin());
      }
      h.recent.push_back(at);
    }
  }

  void record_measure(std::uint32_t m, time_point at, const name_map<value>* props) {
    if (props == nullptr) {
      return;  // raised events carry no properties
    }
    const detail::measure_def& def = c_.measures[m];
    auto it = props->find(def.property);
    double amount = 0;
    if (it == props->end() || !as_number(it->second, amount)) {
      return;  // counts as 0 in a sum and is left out of an average: the same as not kept
    }
    auto& recent = s_.measures[m].recent;
    // Values at or before at - keep can never be inside a window again (time only moves on).
    const time_point expired = at - def.keep;
    std::size_t drop = 0;
    while (drop < recent.size() && recent[drop].at <= expired) {
      ++drop;
    }
    if (drop == 0 && recent.size() >= c_.max_kept) {
      drop = recent.size() - c_.max_kept + 1;
    }
    recent.erase(recent.begin(), recent.begin() + static_cast<std::ptrdiff_t>(drop));
    recent.push_back({at, amount});
    touch_segments(c_.segment_reads.by_measure[m]);
  }

  // ---- scoring --------------------------------------------------------------------------------
  void change_score(double points, std::string_view why, time_point at, std::size_t depth,
                    const std::vector<std::uint32_t>* chain) {
    if (points == 0) {
      return;
    }
    s_.contact.score += points;
    touch_field(field::score);
    raise(event_types::score_changed, std::string{why}, at, depth, chain, none);
  }

  void award(std::uint32_t r, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain) {
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

  static std::int64_t floor_div(std::int64_t a, std::int64_t b) noexcept {
    const std::int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
  }

  void check_thresholds(time_point at, std::size_t depth, const std::vector<std::uint32_t>* chain) {
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

  timer* find_own_timer(std::int32_t kind) {
    for (auto& t : s_.timers) {
      if (t.action == kind) {
        return &t;
      }
    }
    return nullptr;
  }
  void drop_own_timer(std::int32_t kind) {
    auto it = std::find_if(s_.timers.begin(), s_.timers.end(),
                           [kind](const timer& t) { return t.action == kind; });
    if (it != s_.timers.end()) {
      s_.timers.erase(it);
    }
  }
  // Keeps the one timer of `kind` due at `due` (none when due is max_time).
  void set_own_timer(std::int32_t kind, time_point due) {
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
  void sync_decay_timer(time_point at) {
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

  void apply_decay(time_point at) {
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

  // ---- segments -------------------------------------------------------------------------------
  // Brings every segment up to date at `at` in definition order, raises an event per membership
  // change, and keeps the flip timer at the next instant a windowed leaf changes its value (the
  // earliest over all segments, evaluated now or not). Evaluates a segment again only when
  // something it reads was touched or one of its windows lost an event since it was last
  // evaluated (see seg_stable_until_); a membership change touches the segments naming it, which
  // come later in definition order and so are brought up to date in the same pass.
  void refresh_segments(time_point at, std::size_t depth, const std::vector<std::uint32_t>* chain) {
    const auto& defs = p_.rules().segments;
    // Windows only move forward; an instant before the last refresh (not expected: timers and
    // raised events are never due before the clock) evaluates everything, as before.
    const bool everything = at < seg_refreshed_at_;
    seg_refreshed_at_ = at;
    if (!everything && !seg_touched_ && at < seg_stable_min_) {
      // Every segment would keep its membership and its flip instant. The flip timer is the one
      // the last refresh set: it has not fired, since it is due at some segment's flip instant,
      // which is no earlier than that segment's stable-until instant.
      return;
    }
    time_point next = max_time;
    for (std::size_t i = 0; i < defs.size(); ++i) {
      if (!everything && at < seg_stable_until_[i]) {
        next = std::min(next, seg_edge_[i]);
        continue;
      }
      const detail::segment_def& d = c_.segments[i];
      const bool is_member = d.root == none || eval(d.root, at, at);
      const bool was_member = members_[i] != 0;
      if (is_member && !was_member) {
        s_.segments.emplace(defs[i].name, at);
        members_[i] = 1;
        touch_segments(c_.segment_reads.by_segment[i]);
        raise(event_types::segment_entered, defs[i].name, at, depth, chain, none);
      } else if (!is_member && was_member) {
        s_.segments.erase(defs[i].name);
        members_[i] = 0;
        touch_segments(c_.segment_reads.by_segment[i]);
        raise(event_types::segment_exited, defs[i].name, at, depth, chain, none);
      }
      time_point edge_at = max_time;
      time_point stable = d.every_event ? at : max_time;
      for (std::uint32_t n = d.first; n < d.last; ++n) {
        edge_at = std::min(edge_at, edge(c_.nodes[n], at));
        stable = std::min(stable, stable_until(c_.nodes[n], at));
      }
      seg_edge_[i] = edge_at;
      seg_stable_until_[i] = stable;
      next = std::min(next, edge_at);
    }
    seg_touched_ = false;
    seg_stable_min_ = *std::min_element(seg_stable_until_.begin(), seg_stable_until_.end());
    set_own_timer(timer::segment_flip, next);
  }

  // The first instant after `t` at which the events inside the leaf's window change with no new
  // event (its oldest one leaves), or max_time if never; `t` for a leaf whose value this cannot
  // bound (re-evaluate it at every refresh). Until then the leaf's value and edge() are those
  // computed at `t`: both depend only on the events inside the window and what the leaf reads.
  // Mirrors eval()'s windows (an aggregate or occurred leaf reads its window_length whatever
  // its window kind).
  time_point stable_until(const detail::node& nd, time_point t) const {
    using k = condition::kind;
    const condition& leaf = *nd.source;
    switch (nd.kind) {
      case k::always:
      case k::all:
      case k::any:
      case k::negate:
      case k::compare:
      case k::has_tag:
      case k::in_group:
      case k::in_segment:
      case k::in_workflow:
      case k::completed_workflow:
      case k::exited_workflow:
      case k::near:
      case k::moved:
        return max_time;  // no window; their inputs are touched when they change
      case k::happened: {
        if (leaf.window == window_kind::lifetime) {
          return max_time;
        }
        if (leaf.window != window_kind::within) {
          return t;  // since_trigger: rejected in segments
        }
        const auto& recent = s_.history[nd.slot].recent;
        auto first = std::partition_point(recent.begin(), recent.end(),
                                          [&](time_point e) { return expiry(leaf, e) <= t; });
        return first == recent.end() ? max_time : expiry(leaf, *first);
      }
      case k::aggregate: {
        const auto& recent = s_.measures[nd.slot].recent;
        auto first = std::partition_point(recent.begin(), recent.end(), [&](const timed_value& v) {
          return expiry(leaf, v.at) <= t;
        });
        return first == recent.end() ? max_time : expiry(leaf, first->at);
      }
      case k::occurred: {
        const history_slot& h = s_.history[nd.slot];
        if (h.count == 0) {
          return max_time;
        }
        const time_point o = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
        return o > t ? o : max_time;
      }
    }
    return t;
  }

  // The first instant after `t` at which the leaf's value changes with no new event: when the
  // oldest events still inside its window leave it. max_time if never.
  time_point edge(const detail::node& nd, time_point t) const {
    const condition& leaf = *nd.source;
    if (leaf.window != window_kind::within) {
      return max_time;
    }
    switch (nd.kind) {
      case condition::kind::happened: {
        const auto& recent = s_.history[nd.slot].recent;
        auto first = std::partition_point(recent.begin(), recent.end(),
                                          [&](time_point e) { return expiry(leaf, e) <= t; });
        const auto n = static_cast<std::int64_t>(recent.end() - first);
        const bool now_value = check_count(n, leaf.count, leaf.count_bound);
        for (auto it = first; it != recent.end(); ++it) {
          // Events of one instant leave the window together (and, for calendar months, events
          // whose day the end of a shorter month clamps to the same one).
          if (it + 1 != recent.end() && expiry(leaf, *(it + 1)) == expiry(leaf, *it)) {
            continue;
          }
          const auto left = static_cast<std::int64_t>(recent.end() - (it + 1));
          if (check_count(left, leaf.count, leaf.count_bound) != now_value) {
            return expiry(leaf, *it);
          }
        }
        return max_time;
      }
      case condition::kind::aggregate: {
        const auto& recent = s_.measures[nd.slot].recent;
        auto first = std::partition_point(recent.begin(), recent.end(), [&](const timed_value& v) {
          return expiry(leaf, v.at) <= t;
        });
        double sum = 0;
        std::int64_t n = 0;
        for (auto it = first; it != recent.end(); ++it) {
          sum += it->amount;
          ++n;
        }
        const bool now_value = aggregate_holds(leaf, sum, n);
        for (auto it = first; it != recent.end(); ++it) {
          sum -= it->amount;
          --n;
          if (it + 1 != recent.end() && expiry(leaf, (it + 1)->at) == expiry(leaf, it->at)) {
            continue;
          }
          if (aggregate_holds(leaf, n == 0 ? 0.0 : sum, n) != now_value) {
            return expiry(leaf, it->at);
          }
        }
        return max_time;
      }
      case condition::kind::occurred: {
        const history_slot& h = s_.history[nd.slot];
        if (h.count == 0) {
          return max_time;
        }
        const time_point o = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
        return o > t ? o : max_time;
      }
      default:
        return max_time;
    }
  }

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

  // Queues an event an action (rule `r`) or the engine itself (r == none) raised.
  void raise(std::string_view type, std::string key, time_point at, std::size_t depth,
             const std::vector<std::uint32_t>* chain, std::uint32_t r) {
    pending_event e;
    e.type = std::string{type};
    e.key = std::move(key);
    e.at = at;
    e.depth = depth + 1;
    if (chain != nullptr) {
      e.chain = *chain;
    }
    if (r != none) {
      e.chain.push_back(r);
    }
    if (e.depth > p_.limits().max_cascade_depth) {
      std::vector<std::string> names;
      for (auto id : e.chain) {
        names.push_back(id < p_.rule_count()
                            ? p_.rules().rules[id].id
                            : "workflow " + p_.rules().workflows[id - p_.rule_count()].id);
      }
      if (r == none) {
        names.push_back(fmt::format("{} \"{}\"", e.type, e.key));
      }
      throw rule_cycle_error(s_.contact.id, std::move(names));
    }
    raised_.push_back(std::move(e));
    if (++cascade_raised_ > p_.limits().max_cascade_events) {
      throw_too_many_raised();
    }
  }

  // Names the rules (or workflows) that raised the queued events, most first (ties by order).
  [[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_raised() const {
    const std::size_t sources = p_.rule_count() + p_.rules().workflows.size();
    std::vector<std::size_t> per_source(sources, 0);
    for (std::size_t i = raised_head_; i < raised_.size(); ++i) {
      if (!raised_[i].chain.empty() && raised_[i].chain.back() < sources) {
        ++per_source[raised_[i].chain.back()];
      }
    }
    std::vector<std::uint32_t> order;
    for (std::uint32_t r = 0; r < sources; ++r) {
      if (per_source[r] > 0) {
        order.push_back(r);
      }
    }
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return per_source[a] > per_source[b];
    });
    std::vector<std::string> names;
    std::vector<std::size_t> counts;
    for (std::uint32_t id : order) {
      names.push_back(id < p_.rule_count()
                          ? p_.rules().rules[id].id
                          : "workflow " + p_.rules().workflows[id - p_.rule_count()].id);
      counts.push_back(per_source[id]);
    }
    throw rule_cycle_error::cascade_events(s_.contact.id, std::move(names), counts,
                                           p_.limits().max_cascade_events);
  }

  void trigger(std::uint32_t r, time_point at, std::uint64_t ordinal, std::size_t depth,
               const std::vector<std::uint32_t>* chain) {
    const rule& def = p_.rules().rules[r];
    out_.outcomes.note(r, rule_outcome_kind::triggered, at);
    const time_point check_at = def.delay_months == 0
                                    ? at + def.delay
                                    : detail::add_months(at, def.delay_months, local_zone());
    note(timeline_what::triggered, r, at, timeline_none, timeline_reason::none, timeline_none,
         check_at);
    if (check_at > at) {
      timer t;
      t.due_at = check_at;
      t.rule = r;
      t.action = -1;
      t.triggered_at = at;
      t.trigger_ordinal = ordinal;
      schedule(t);
      return;
    }
    cascade_ctx ctx{depth, chain};
    run_check(r, at, at, ordinal, &ctx);
  }

  struct cascade_ctx {
    std::size_t depth;
    const std::vector<std::uint32_t>* chain;
  };

  // ---- checks and actions -------------------------------------------------------------------
  void run_check(std::uint32_t r, time_point now, time_point triggered_at, std::uint64_t ordinal,
                 const cascade_ctx* ctx) {
    const rule& def = p_.rules().rules[r];
    const detail::compiled_rule& cr = c_.rules[r];
    if (cr.condition != none && !eval(cr.condition, now, triggered_at)) {
      out_.outcomes.note(r, rule_outcome_kind::failed, now);
      if (timeline_size_ != 0) {
        note(timeline_what::condition_failed, r, now, timeline_none, timeline_reason::none,
             failing_part(cr.condition, now, triggered_at));
      }
      return;
    }
    if (cr.memory_depth > 0) {
      if (const timeline_reason why = policy_allows(def, r, now); why != timeline_reason::none) {
        out_.outcomes.note(r, rule_outcome_kind::suppressed, now);
        note(timeline_what::refused, r, now, timeline_none, why);
        return;
      }
    }
    out_.outcomes.note(r, rule_outcome_kind::passed, now);
    note(timeline_what::condition_passed, r, now);
    if (cr.memory_depth > 0) {
      rule_memory& m = s_.rule_runs[r];
      if (m.runs > 0 && cr.memory_depth > 1) {
        if (m.earlier.size() + 1 == cr.memory_depth) {
          m.earlier.erase(m.earlier.begin());
        }
        m.earlier.push_back(m.last);
      }
      ++m.runs;
      m.last = now;
    }
    for (std::size_t i = 0; i < def.actions.size(); ++i) {
      if (def.actions[i].delay > duration{0}) {
        timer t;
        t.due_at = now + def.actions[i].delay;
        t.rule = r;
        t.action = static_cast<std::int32_t>(i);
        t.triggered_at = triggered_at;
        t.trigger_ordinal = ordinal;
        schedule(t);
      } else {
        run_action(r, i, now, triggered_at, ordinal, ctx);
      }
    }
  }

  // timeline_reason::none when the rule may run, else why not.
  timeline_reason policy_allows(const rule& def, std::uint32_t r, time_point now) const {
    auto it = s_.rule_runs.find(r);
    if (it == s_.rule_runs.end() || it->second.runs == 0) {
      return timeline_reason::none;
    }
    const rule_memory& m = it->second;
    if (def.reentry_policy == reentry::once) {
      return timeline_reason::reentry_once;
    }
    if (def.reentry_policy == reentry::once_per && m.last > now - def.reentry_window) {
      return timeline_reason::reentry_window;
    }
    if (def.cap) {
      const time_point from = now - def.cap->per;
      std::int64_t in_window = m.last > from ? 1 : 0;
      for (time_point t : m.earlier) {
        in_window += t > from ? 1 : 0;
      }
      if (in_window >= def.cap->max_runs) {
        return timeline_reason::rule_cap;
      }
    }
    return timeline_reason::none;
  }

  void run_action(std::uint32_t r, std::size_t i, time_point now, time_point triggered_at,
                  std::uint64_t ordinal, const cascade_ctx* ctx) {
    const rule& def = p_.rules().rules[r];
    const action& a = def.actions[i];
    const detail::compiled_rule& cr = c_.rules[r];
    if (cr.action_conditions[i] != none && !eval(cr.action_conditions[i], now, triggered_at)) {
      note(timeline_what::action_skipped, r, now, static_cast<std::uint32_t>(i));
      return;
    }
    perform(a, rule_emission(r, i, triggered_at, ordinal), now, ctx);
  }

  emission rule_emission(std::uint32_t r, std::size_t i, time_point triggered_at,
                         std::uint64_t ordinal) const {
    const detail::compiled_rule& cr = c_.rules[r];
    emission src;
    src.source = p_.rules().rules[r].id;
    src.index = r;
    src.chain_id = r;
    src.owner_group = cr.owner_groups[i];
    src.round_robin = c_.round_robin_index[r][i];
    src.key = mix(mix(mix(contact_hash_, c_.rule_id_hashes[r]), ordinal), i);
    src.timeline_step = static_cast<std::uint32_t>(i);
    if (!c_.delivery.rule_policy.empty()) [[unlikely]] {
      src.policy = c_.delivery.rule_policy[r];
      src.retry.rule = r;
      src.retry.action = static_cast<std::int32_t>(i);
      src.retry.triggered_at = triggered_at;
      src.retry.trigger_ordinal = ordinal;
    }
    return src;
  }

  // Whether the delivery policy decides on `a` (held until its instant is over) rather than it
  // being emitted at once.
  static bool governed(const action& a, const emission& src) {
    return src.policy != nullptr && !a.transactional && channel_of(a.kind).has_value() &&
           (is_external(a.kind) || a.notify);
  }

  // Applies `a` and, for an external action (or notify), emits it. Returns true if emitted.
  bool perform(const action& a, const emission& src, time_point now, const cascade_ctx* ctx) {
    std::string_view arg = a.arg;
    std::string_view raised_type;
    std::string raised_key;
    contact& c = s_.contact;
    switch (a.kind) {
      case action_kind::add_tag:
        if (!c.has_tag(a.arg)) {
          c.tags.emplace(a.arg, now);
          touch_named(c_.segment_reads.by_tag, a.arg);
          raised_type = event_types::tag_added;
          raised_key = a.arg;
        }
        break;
      case action_kind::remove_tag:
        if (c.tags.erase(a.arg) > 0) {
          touch_named(c_.segment_reads.by_tag, a.arg);
          raised_type = event_types::tag_removed;
          raised_key = a.arg;
        }
        break;
      case action_kind::set_detail: {
        auto it = c.details.find(a.arg);
        if (it == c.details.end() || !(it->second == a.val)) {
          c.details.insert_or_assign(a.arg, a.val);
          touch_named(c_.segment_reads.by_detail, a.arg);
          raised_type = event_types::detail_set;
          raised_key = a.arg;
        }
        break;
      }
      case action_kind::set_status:
        if (c.status != a.arg) {
          c.status = a.arg;
          touch_field(field::status);
          raised_type = event_types::status_changed;
          raised_key = a.arg;
        }
        break;
      case action_kind::set_stage:
        if (c.stage != a.arg) {
          c.stage = a.arg;
          touch_field(field::stage);
          raised_type = event_types::stage_entered;
          raised_key = a.arg;
        }
        break;
      case action_kind::add_score: {
        double points = 0;
        as_number(a.val, points);
        if (points != 0) {
          c.score += points;
          touch_field(field::score);
          raised_type = event_types::score_changed;
        }
        break;
      }
      case action_kind::assign_owner: {
        const auto& members = c_.owner_groups[src.owner_group];
        std::size_t pick = 0;
        if (a.pick == owner_pick::hash) {
          pick = fnv1a64(a.salt, fnv1a64(c.id)) % members.size();
        } else {
          std::uint64_t n = 0;
          if (counters_ != nullptr) {
            if (counters_->size() < c_.round_robin_counters) {
              counters_->resize(c_.round_robin_counters);
            }
            n = (*counters_)[src.round_robin]++;
          }
          pick = n % members.size();
        }
        arg = members[pick];
        if (c.owner != arg) {
          c.owner = std::string{arg};
          touch_field(field::owner);
          raised_type = event_types::owner_assigned;
          raised_key = c.owner;
        }
        break;
      }
      case action_kind::add_to_group:
        if (c.groups.insert(a.arg).second) {
          touch_named(c_.segment_reads.by_group, a.arg);
          raised_type = event_types::group_added;
          raised_key = a.arg;
        }
        break;
      case action_kind::remove_from_group:
        if (c.groups.erase(a.arg) > 0) {
          touch_named(c_.segment_reads.by_group, a.arg);
          raised_type = event_types::group_removed;
          raised_key = a.arg;
        }
        break;
      default:
        break;  // external: nothing to apply
    }
    const bool emits = is_external(a.kind) || a.notify;
    if (emits) {
      if (governed(a, src)) [[unlikely]] {
        hold(make_due(a, src, now, arg), src.policy, src.retry);
        return false;  // decided when the instant is over; messages raise no events
      }
      out_.actions.push_back(make_due(a, src, now, arg));
    }
    if (timeline_size_ != 0) {
      note(emits ? timeline_what::action_emitted : timeline_what::action_applied, src.index, now,
           src.timeline_step, timeline_reason::none, timeline_none, min_time, src.kind);
    }
    if (!raised_type.empty()) {
      raise(raised_type, std::move(raised_key), now, ctx != nullptr ? ctx->depth : 0,
            ctx != nullptr ? ctx->chain : nullptr, src.chain_id);
    }
    return emits;
  }

  // ---- workflows ----------------------------------------------------------------------------
  using wk = workflow_outcome_kind;

  const workflow& wf(std::uint32_t w) const { return p_.rules().workflows[w]; }
  // A run of workflow `w` entered, moved, completed or exited: remember the ends for
  // completed_workflow / exited_workflow, and have the segments reading the workflow
  // re-evaluated once the cascade at `at` is over (drain).
  void run_moved(std::uint32_t w, wk k, time_point at) {
    if (k == wk::completed) {
      ++s_.workflow_history[w].completed;
    } else if (k == wk::exited) {
      ++s_.workflow_history[w].exited;
    }
    if (!c_.segment_reads.by_workflow.empty() && !c_.segment_reads.by_workflow[w].empty()) {
      touch_segments(c_.segment_reads.by_workflow[w]);
      runs_moved_ = true;
      runs_moved_at_ = at;
    }
  }
  // `step` is a step table index: statistics and the timeline name the current version's step
  // with the same id (none for a step only a kept older version has).
  void note(std::uint32_t w, std::uint32_t step, wk k, time_point at) {
    if (k == wk::entered || k == wk::reached || k == wk::completed || k == wk::exited) {
      run_moved(w, k, at);
    }
    if (step != none) {
      step = c_.workflows[w].steps[step].stat;
    }
    out_.outcomes.note(workflow_outcome{w, step, k, at});
    if (timeline_size_ != 0) {
      timeline_what what = timeline_what::workflow_step;
      switch (k) {
        case wk::entered:
          what = timeline_what::workflow_entered;
          break;
        case wk::reached:
          what = timeline_what::workflow_step;
          break;
        case wk::exited:
          what = timeline_what::workflow_exited;
          break;
        case wk::completed:
          what = timeline_what::workflow_completed;
          break;
        default:
          return;  // sends are recorded as actions; opens, clicks and waits are statistics
      }
      note(what, w, at, step == none ? timeline_none : step, timeline_reason::none, timeline_none,
           min_time, timeline_source::workflow);
    }
  }
  std::size_t find_run(std::uint64_t id) const {
    for (std::size_t i = 0; i < s_.runs.size(); ++i) {
      if (s_.runs[i].id == id) {
        return i;
      }
    }
    return s_.runs.size();
  }
  static bool key_matches(const event_match& m, std::string_view key) {
    switch (m.match) {
      case key_match::any:
        return true;
      case key_match::exact:
        return key == m.key;
      case key_match::prefix:
        return key.starts_with(m.key);
    }
    return false;
  }
  void cancel_timers(std::uint64_t run_id) {
    std::erase_if(s_.timers, [&](const timer& t) {
      return t.kind == timer_kind::workflow_step && t.trigger_ordinal == run_id;
    });
  }
  void schedule_wait(const workflow_run& r, time_point due) {
    timer t;
    t.kind = timer_kind::workflow_step;
    t.due_at = due;
    t.rule = r.workflow;
    t.action = static_cast<std::int32_t>(r.step);
    t.triggered_at = r.entered_at;
    t.trigger_ordinal = r.id;
    schedule(t);
  }

  // The (workflow, step) indices an email_open / email_click names, or none: its props
  // `workflow` and `step`, or else a key "<workflow id>/<step id>" (event logs without props).
  std::pair<std::uint32_t, std::uint32_t> attribution(const name_map<value>* props,
                                                      std::string_view key) const {
    auto find = [&](std::string_view wid, std::string_view sid) {
      const auto wi = p_.find_workflow(wid);
      if (wi) {
        const auto& steps = wf(static_cast<std::uint32_t>(*wi)).steps;
        for (std::uint32_t j = 0; j < steps.size(); ++j) {
          if (steps[j].id == sid) {
            return std::pair{static_cast<std::uint32_t>(*wi), j};
          }
        }
      }
      return std::pair{none, none};
    };
    if (props != nullptr) {
      auto w = props->find(workflow_props::workflow);
      auto st = props->find(workflow_props::step);
      if (w != props->end() && st != props->end()) {
        const auto* wid = std::get_if<std::string>(&w->second);
        const auto* sid = std::get_if<std::string>(&st->second);
        return wid != nullptr && sid != nullptr ? find(*wid, *sid) : std::pair{none, none};
      }
    }
    for (auto slash = key.find('/'); slash != std::string_view::npos;
         slash = key.find('/', slash + 1)) {
      if (auto found = find(key.substr(0, slash), key.substr(slash + 1)); found.first != none) {
        return found;
      }
    }
    return {none, none};
  }

  void on_workflow_event(std::uint32_t type, std::string_view key, time_point at,
                         std::uint64_t ordinal, const cascade_ctx& ctx,
                         const name_map<value>* props) {
    std::pair<std::uint32_t, std::uint32_t> source{none, none};
    const bool opened = type == c_.email_open_type, clicked = type == c_.email_click_type;
    if (opened || clicked) {
      source = attribution(props, key);
      if (source.first != none) {
        note(source.first, source.second, opened ? wk::opened : wk::clicked, at);
        for (auto& r : s_.runs) {
          if (r.workflow == source.first && r.last_send >= 0 &&
              c_.workflows[r.workflow].steps[static_cast<std::size_t>(r.last_send)].stat ==
                  source.second) {
            time_point& first = opened ? r.last_opened_at : r.last_clicked_at;
            if (first == min_time) {
              first = at;
            }
          }
        }
      }
    }
    if (!s_.runs.empty()) {
      boost::container::small_vector<std::uint64_t, 4> ids;
      for (const auto& r : s_.runs) {
        ids.push_back(r.id);
      }
      for (auto id : ids) {
        auto i = find_run(id);
        if (i == s_.runs.size()) {
          continue;
        }
        workflow_run& r = s_.runs[i];
        const auto& cw = c_.workflows[r.workflow];
        bool exits = false;
        for (const auto& [exit_type, match] : cw.exits) {
          exits = exits || (exit_type == type && key_matches(*match, key));
        }
        if (exits) {
          end_run(i, at, true);
          continue;
        }
        if (!cw.runs || r.held) {
          continue;  // paused: the run holds where it is
        }
        const detail::compiled_step& cs = cw.steps[r.step];
        const workflow_step& st = *cs.def;
        const bool of_previous =
            source.first == r.workflow && r.last_send >= 0 &&
            cw.steps[static_cast<std::size_t>(r.last_send)].stat == source.second;
        if (st.kind == step_kind::wait_for && cs.event_type == type && key_matches(st.event, key) &&
            (!st.from_previous_message || of_previous)) {
          leave_wait(r, at);
          go(id, cs.yes, at, &ctx);
        } else if (st.kind == step_kind::wait && st.wait == wait_kind::after_message &&
                   st.moment != message_moment::delivered && r.phase == 0 &&
                   cs.event_type == type && of_previous) {
          cancel_timers(id);
          r.phase = 1;
          if (st.length > duration{0}) {
            schedule_wait(r, at + st.length);
          } else {
            leave_wait(r, at);
            go(id, cs.next, at, &ctx);
          }
        }
      }
    }
    if (type < c_.workflow_entries.size()) {
      for (auto w : c_.workflow_entries[type]) {
        if (key_matches(wf(w).entry.on, key)) {
          try_enter(w, at, ordinal, &ctx);
        }
      }
    }
    if (type == c_.detail_set_type && !c_.date_workflows.empty()) {
      sync_dates(at, &key);
    }
    check_exit_conditions(at);
  }

  // Goals given as conditions end runs whenever the contact is evaluated and they hold.
  void check_exit_conditions(time_point at) {
    for (std::size_t i = 0; i < s_.runs.size();) {
      const auto& r = s_.runs[i];
      const auto cond = c_.workflows[r.workflow].exit_condition;
      if (cond != none && wf(r.workflow).status != workflow_status::draft &&
          eval(cond, at, r.entered_at)) {
        end_run(i, at, true);
      } else {
        ++i;
      }
    }
  }

  void try_enter(std::uint32_t w, time_point at, std::uint64_t ordinal, const cascade_ctx* ctx) {
    const workflow& def = wf(w);
    const auto& cw = c_.workflows[w];
    if (!cw.runs) {
      return;  // draft, paused, archived: nobody enters (a paused yearly date passes unused)
    }
    if (cw.entry_condition != none && !eval(cw.entry_condition, at, at)) {
      return;
    }
    auto mem = s_.workflow_history.find(w);
    if (mem != s_.workflow_history.end() && mem->second.entries > 0) {
      if (def.reentry == workflow_reentry::never) {
        return;
      }
      if (def.reentry == workflow_reentry::cool_down &&
          mem->second.last_entry > at - def.cool_down) {
        return;
      }
    }
    std::uint32_t inside = 0;
    for (const auto& r : s_.runs) {
      inside += r.workflow == w ? 1 : 0;
    }
    if (inside >= def.max_active_runs) {
      return;
    }
    workflow_memory& m = s_.workflow_history[w];
    ++m.entries;
    m.last_entry = at;
    workflow_run r;
    r.workflow = w;
    r.version = def.version;
    r.id = s_.runs_started++;
    r.entry_ordinal = ordinal;
    r.entered_at = r.step_at = at;
    s_.runs.push_back(r);
    note(w, none, wk::entered, at);
    go(r.id, 0, at, ctx);
  }

  // A wait's end (or an awaited event) moves the run on: counted as a wait that ended.
  void leave_wait(const workflow_run& r, time_point at) {
    cancel_timers(r.id);
    note(r.workflow, r.step, wk::wait_ended, at);
  }

  // Removes run `i`: a goal ended it (at rest, so it was waiting) or it completed.
  void end_run(std::size_t i, time_point at, bool by_goal) {
    const workflow_run r = s_.runs[i];
    if (by_goal) {
      leave_wait(r, at);
      note(r.workflow, r.step, wk::exited, at);
    } else {
      note(r.workflow, r.step, wk::completed, at);
    }
    s_.runs.erase(s_.runs.begin() + static_cast<std::ptrdiff_t>(i));
  }

  void complete(std::size_t i, time_point at, const cascade_ctx* ctx) {
    const std::uint32_t w = s_.runs[i].workflow;
    const workflow& def = wf(w);
    end_run(i, at, false);
    emission src;
    src.source = def.id;
    src.index = w;
    src.chain_id = static_cast<std::uint32_t>(p_.rule_count()) + w;
    src.kind = timeline_source::workflow;
    if (!def.complete_from_group.empty()) {
      perform(make_action(action_kind::remove_from_group, def.complete_from_group), src, at, ctx);
    }
    if (!def.complete_to_group.empty()) {
      perform(make_action(action_kind::add_to_group, def.complete_to_group), src, at, ctx);
    }
  }

  // What run `r`'s current send or act step emits: the same key each time it is asked (a
  // deferred message keeps its idempotency key).
  emission step_emission(const workflow_run& r) const {
    const std::uint32_t w = r.workflow;
    const auto& cw = c_.workflows[w];
    const detail::compiled_step& cs = cw.steps[r.step];
    emission src;
    src.source = wf(w).id;
    src.step = cs.def->id;
    src.index = w;
    src.chain_id = static_cast<std::uint32_t>(p_.rule_count()) + w;
    src.owner_group = cs.owner_group;
    src.round_robin = cs.round_robin;
    src.key = mix(mix(mix(mix(contact_hash_, cw.id_hash), r.id), r.step), r.steps_taken);
    src.kind = timeline_source::workflow;
    src.timeline_step = cs.stat;
    if (!c_.delivery.workflow_policy.empty()) [[unlikely]] {
      src.policy = c_.delivery.workflow_policy[w];
      src.retry.kind = timer_kind::workflow_step;
      src.retry.rule = w;
      src.retry.action = static_cast<std::int32_t>(r.step);
      src.retry.triggered_at = r.entered_at;
      src.retry.trigger_ordinal = r.id;
    }
    return src;
  }

  // The held message of run `i` (at a send step, phase 2) was sent or dropped: the run moves on.
  void step_decided(std::size_t i, time_point now, bool sent) {
    workflow_run& r = s_.runs[i];
    const std::uint32_t w = r.workflow, step = r.step;
    r.phase = 0;
    note(w, step, wk::wait_ended, now);
    if (sent) {
      r.last_send = static_cast<std::int32_t>(step);
      r.last_send_at = now;
      r.last_opened_at = r.last_clicked_at = min_time;
      note(w, step, wk::sent, now);
    }
    go(r.id, c_.workflows[w].steps[step].next, now, nullptr);
  }

  // The contact's bucket 0..99 for splits: the same contact and workflow always get the same.
  std::uint32_t bucket(std::uint32_t w) const {
    return static_cast<std::uint32_t>(fnv1a64(wf(w).id, fnv1a64(s_.contact.id)) % 100);
  }

  // Moves run `id` to step `target` (none: completes) and runs steps until one waits.
  void go(std::uint64_t id, std::uint32_t target, time_point now, const cascade_ctx* ctx) {
    std::size_t guard = 0;
    for (;;) {
      const auto i = find_run(id);
      if (i == s_.runs.size()) {
        return;
      }
      if (target == none) {
        complete(i, now, ctx);
        return;
      }
      workflow_run& r = s_.runs[i];
      const std::uint32_t w = r.workflow;
      const auto& cw = c_.workflows[w];
      const workflow& def = wf(w);
      if (++guard > 2 * cw.steps.size() + 2) {
        // Validation rejects cycles without a wait; this only guards the contact's budget.
        throw rule_cycle_error(s_.contact.id, {"workflow " + def.id});
      }
      r.step = target;
      r.step_at = now;
      r.phase = 0;
      ++r.steps_taken;
      note(w, target, wk::reached, now);
      if (cw.exit_condition != none && eval(cw.exit_condition, now, r.entered_at)) {
        note(w, target, wk::exited, now);
        s_.runs.erase(s_.runs.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
      const detail::compiled_step& cs = cw.steps[target];
      const workflow_step& st = *cs.def;
      switch (st.kind) {
        case step_kind::send:
        case step_kind::act: {
          if (cs.action_condition == none || eval(cs.action_condition, now, r.entered_at)) {
            const emission src = step_emission(r);
            const std::uint64_t run_id = r.id;
            if (governed(st.act, src)) [[unlikely]] {
              // The policy decides when the instant is over; the run rests here until then
              // (and, if the message is deferred, until it goes out or is dropped).
              perform(st.act, src, now, ctx);
              s_.runs[find_run(run_id)].phase = 2;
              note(w, target, wk::wait_started, now);
              return;
            }
            if (perform(st.act, src, now, ctx) && st.kind == step_kind::send) {
              workflow_run& again = s_.runs[find_run(run_id)];
              again.last_send = static_cast<std::int32_t>(target);
              again.last_send_at = now;
              again.last_opened_at = again.last_clicked_at = min_time;
              note(w, target, wk::sent, now);
            }
          }
          target = cs.next;
          break;
        }
        case step_kind::branch:
          target = cs.condition == none || eval(cs.condition, now, r.entered_at) ? cs.yes : cs.no;
          break;
        case step_kind::split: {
          const auto b = bucket(w);
          target = none;
          for (const auto& [bound, step] : cs.paths) {
            if (b < bound) {
              target = step;
              break;
            }
          }
          break;
        }
        case step_kind::end:
          target = none;
          break;
        case step_kind::wait_for:
          note(w, target, wk::wait_started, now);
          if (st.timeout > duration{0}) {
            schedule_wait(r, now + st.timeout);
          }
          return;
        case step_kind::wait: {
          const auto due = wait_due(r, st, now);
          if (!due) {  // no message to wait for, or the timeout already passed
            target = cs.no != none ? cs.no : cs.next;
            break;
          }
          if (*due <= now) {
            target = cs.next;
            break;
          }
          note(w, target, wk::wait_started, now);
          schedule_if_finite(r, *due);
          return;
        }
      }
    }
  }

  // When a wait step that a run just reached ends: a time (at or before `now`: at once), max_time
  // for "until the awaited event, without a limit", or nullopt for "take the timeout path now".
  std::optional<time_point> wait_due(workflow_run& r, const workflow_step& st, time_point now) {
    switch (st.wait) {
      case wait_kind::fixed:
        return st.length_months == 0 ? now + st.length
                                     : detail::add_months(now, st.length_months, local_zone());
      case wait_kind::after_message: {
        if (st.moment == message_moment::delivered) {
          return (r.last_send >= 0 ? r.last_send_at : now) + st.length;
        }
        if (r.last_send < 0) {
          return std::nullopt;
        }
        const time_point seen =
            st.moment == message_moment::opened ? r.last_opened_at : r.last_clicked_at;
        if (seen != min_time) {
          r.phase = 1;
          return seen + st.length;
        }
        if (st.timeout == duration{0}) {
          return max_time;  // no timer: only the event moves it
        }
        const time_point limit = r.last_send_at + st.timeout;
        if (limit <= now) {
          return std::nullopt;
        }
        return limit;
      }
      case wait_kind::time_of_day:
        return next_time_of_day(now, st.time_of_day, st.weekdays);
      case wait_kind::date: {
        const auto date = month_day(s_.contact.detail(st.detail));
        if (!date) {
          return now;  // no such date: nothing to wait for
        }
        auto t = next_yearly(*date, 0, 0, now - st.length);
        return t ? std::optional{*t + st.length} : std::optional{now};
      }
    }
    return now;
  }

  void schedule_if_finite(const workflow_run& r, time_point due) {
    if (due != max_time) {
      schedule_wait(r, due);
    }
  }

  // A run's timer came due: its wait is over, or its timeout passed.
  void wait_over(const timer& tm) {
    const auto i = find_run(tm.trigger_ordinal);
    if (i == s_.runs.size() || s_.runs[i].step != static_cast<std::uint32_t>(tm.action)) {
      return;  // cancelled timers are removed; this guards a state edited by hand
    }
    workflow_run& r = s_.runs[i];
    const auto& cw = c_.workflows[r.workflow];
    if (!cw.runs) {
      r.held = true;  // paused: continue when the workflow is active again
      return;
    }
    const detail::compiled_step& cs = cw.steps[r.step];
    const workflow_step& st = *cs.def;
    if (r.phase == 2 && st.kind == step_kind::send) {
      // A deferred message (or one held when the workflow was paused): decided again.
      const emission src = step_emission(r);
      if (src.policy != nullptr) {
        hold(make_due(st.act, src, tm.due_at, st.act.arg), src.policy, src.retry);
        return;
      }
      // A program change left the step without a policy: the message goes out now.
      const auto id = r.id;
      perform(st.act, src, tm.due_at, nullptr);
      step_decided(find_run(id), tm.due_at, true);
      return;
    }
    std::uint32_t target = cs.next;
    if (st.kind == step_kind::wait_for ||
        (st.kind == step_kind::wait && st.wait == wait_kind::after_message &&
         st.moment != message_moment::delivered && r.phase == 0)) {
      target = st.kind == step_kind::wait_for || cs.no != none ? cs.no : cs.next;
    }
    const auto id = r.id;
    leave_wait(r, tm.due_at);
    go(id, target, tm.due_at, nullptr);
  }

  // ---- yearly date entries ----------------------------------------------------------------
  struct md {
    int month, day;
  };
  static std::optional<md> month_day(const value* v) {
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
  static std::int64_t occurrence(md date, int year, std::int32_t offset_days,
                                 std::int32_t time_of_day) {
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
  static std::int64_t first_at_local(const zone_rules* z, std::int64_t local) {
    return detail::first_at_local(z, local);
  }

  // The first occurrence at or after `from`, or nullopt outside the supported years.
  std::optional<time_point> next_yearly(md date, std::int32_t offset_days, std::int32_t time_of_day,
                                        time_point from) const {
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
  time_point next_time_of_day(time_point from, std::int32_t time_of_day,
                              std::uint8_t weekdays) const {
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

  // The contact's zone for workflow times: none (UTC) when no policy or workflow of the program
  // reads local time, so such programs never look zones up.
  const zone_rules* local_zone() const { return c_.delivery.default_zone ? zone() : nullptr; }

  // Keeps one pending timer per yearly workflow at the next occurrence of the contact's date
  // after the last one that fired. An unchanged date keeps its timer (and its scheduling order).
  void sync_dates(time_point anchor, const std::string_view* changed_detail) {
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

  void date_due(const timer& tm) {
    s_.workflow_history[tm.rule].last_date = tm.due_at;
    try_enter(tm.rule, tm.due_at, s_.events_applied, nullptr);
    sync_dates(tm.due_at, nullptr);
  }

  // ---- conditions ---------------------------------------------------------------------------
  bool eval(std::uint32_t n, time_point now, time_point triggered_at) const {
    const detail::node& nd = c_.nodes[n];
    using k = condition::kind;
    switch (nd.kind) {
      case k::always:
        return true;
      case k::all:
        for (std::uint32_t i = 0; i < nd.count; ++i) {
          if (!eval(c_.children[nd.first + i], now, triggered_at)) {
            return false;
          }
        }
        return true;
      case k::any:
        for (std::uint32_t i = 0; i < nd.count; ++i) {
          if (eval(c_.children[nd.first + i], now, triggered_at)) {
            return true;
          }
        }
        return false;
      case k::negate:
        return !eval(c_.children[nd.first], now, triggered_at);
      case k::has_tag:
        return s_.contact.has_tag(nd.source->name);
      case k::in_group:
        return s_.contact.in_group(nd.source->name);
      case k::compare:
        return eval_compare(*nd.source);
      case k::happened:
        return eval_happened(*nd.source, s_.history[nd.slot], now, triggered_at);
      case k::in_segment:
        return members_[nd.slot] != 0;
      case k::in_workflow:
      case k::completed_workflow:
      case k::exited_workflow:
        return detail::workflow_state_holds(nd, s_, c_);
      case k::near:
      case k::moved:
        return detail::location_holds(*nd.source, s_);
      case k::aggregate: {
        const condition& leaf = *nd.source;
        double sum = 0;
        std::int64_t events = 0;
        const auto& recent = s_.measures[nd.slot].recent;
        for (auto it = recent.rbegin(); it != recent.rend() && expiry(leaf, it->at) > now; ++it) {
          sum += it->amount;
          ++events;
        }
        return aggregate_holds(leaf, sum, events);
      }
      case k::occurred: {
        const condition& leaf = *nd.source;
        const history_slot& h = s_.history[nd.slot];
        if (h.count == 0) {
          return false;
        }
        const time_point leaves = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
        return leaf.is_older ? leaves <= now : leaves > now;
      }
    }
    return false;
  }

  bool eval_compare(const condition& leaf) const {
    const contact& c = s_.contact;
    auto text = [&](const std::string& s) -> bool {
      if (leaf.op == compare_op::exists) {
        return !s.empty();
      }
      const value v{s};
      return compare_value(s.empty() ? nullptr : &v, leaf.op, leaf.operands);
    };
    switch (leaf.target) {
      case field::detail:
        return compare_value(c.detail(leaf.name), leaf.op, leaf.operands);
      case field::status:
        return text(c.status);
      case field::stage:
        return text(c.stage);
      case field::owner:
        return text(c.owner);
      case field::time_zone:
        return text(c.time_zone);
      case field::score: {
        const value v{c.score};
        return compare_value(&v, leaf.op, leaf.operands);
      }
    }
    return false;
  }

  bool eval_happened(const condition& leaf, const history_slot& h, time_point now,
                     time_point triggered_at) const {
    std::int64_t n = 0;
    if (leaf.window == window_kind::lifetime) {
      n = h.count;
    } else {
      // History holds only events at or before `now` (later ones are not applied yet), so
      // counting the recent times still inside counts the window, capped at what is kept.
      const bool within = leaf.window == window_kind::within;
      for (auto it = h.recent.rbegin();
           it != h.recent.rend() && (within ? expiry(leaf, *it) > now : *it > triggered_at); ++it) {
        ++n;
      }
    }
    return check_count(n, leaf.count, leaf.count_bound);
  }
};

// Out of line: called for the events that carry props, and throws almost never.
[[gnu::noinline]] void check_finite(const name_map<value>& props, const std::string& contact,
                                    std::size_t index) {
  for (const auto& [name, v] : props) {
    if (const double* d = std::get_if<double>(&v); d != nullptr && !std::isfinite(*d)) {
      throw input_error(contact, index, fmt::format("props/{} is not a finite number", name));
    }
  }
  std::string problem;
  if (!detail::location_of(props, &problem) && !problem.empty()) {
    throw input_error(contact, index, problem);
  }
}
// Sizes a state's per-program slots (a fresh state has none yet); refuses one kept for another
// program.
void prepare_slots(const program& p, contact_state& state) {
  if (state.history.size() != p.history_slot_count()) {
    if (!state.history.empty()) {
      throw std::invalid_argument(fmt::format(
          "contact \"{}\": state has {} history slots, the program keeps {} (a state from "
          "another program)",
          state.contact.id, state.history.size(), p.history_slot_count()));
    }
    state.history.resize(p.history_slot_count());
  }
  if (state.measures.size() != p.measure_slot_count()) {
    if (!state.measures.empty()) {
      throw std::invalid_argument(fmt::format(
          "contact \"{}\": state has {} measure slots, the program keeps {} (a state from "
          "another program)",
          state.contact.id, state.measures.size(), p.measure_slot_count()));
    }
    state.measures.resize(p.measure_slot_count());
  }
}

template <class EventRef>
void evaluate_impl(const program& p, contact_state& state, std::span<const EventRef> events,
                   time_point now, round_robin_counters* counters, std::vector<due_action>& actions,
                   const detail::outcome_recorder& outcomes, bool timers_at_now = true) {
  auto deref = [](const EventRef& e) -> const event& {
    if constexpr (std::is_pointer_v<EventRef>) {
      return *e;
    } else {
      return e;
    }
  };
  prepare_slots(p, state);
  if (!state.merged_into.empty() && !events.empty()) {
    throw input_error(state.contact.id, 0,
                      fmt::format("the contact was merged into \"{}\" (an identify event); send "
                                  "its events to that contact",
                                  state.merged_into));
  }
  // Validate everything before applying anything; resolve each event's type once.
  boost::container::small_vector<std::uint32_t, 64> types(events.size());
  time_point previous = state.clock;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const event& e = deref(events[i]);
    const auto& id = state.contact.id;
    if (e.contact != id) {
      throw input_error(e.contact, i, fmt::format("belongs to contact \"{}\"", id));
    }
    if (!in_input_range(e.at)) {
      throw input_error(id, i,
                        fmt::format("time {} is outside the supported range ({})", to_epoch(e.at),
                                    input_range_text));
    }
    if (e.at < previous) {
      throw input_error(
          id, i,
          fmt::format("out of order: {} ({}) is before {} ({}), the contact's last applied "
                      "event or timer",
                      format_time(e.at), to_epoch(e.at), format_time(previous),
                      to_epoch(previous)));
    }
    if (e.at > now) {
      throw input_error(
          id, i, fmt::format("time {} is after now ({})", format_time(e.at), format_time(now)));
    }
    // NaN would compare unequal to itself in every condition, and infinity overflows sums.
    // Most events carry no props: the loop stays out of line.
    if (!e.props.empty()) {
      check_finite(e.props, id, i);
    }
    auto type = p.compiled().types.find(e.type);
    if (type == p.compiled().types.end()) {
      throw input_error(id, i, fmt::format("unknown event type \"{}\"", e.type));
    }
    types[i] = type->second;
    previous = e.at;
  }
  evaluator ev{p, sinks{state, actions, outcomes}, counters};
  ev.start(state.clock != min_time ? state.clock : (events.empty() ? now : deref(events[0]).at));
  for (std::size_t i = 0; i < events.size(); ++i) {
    ev.apply_external(deref(events[i]), types[i]);
  }
  if (timers_at_now) {
    ev.finish(now);
  } else {
    ev.finish_before(now);
  }
}

}  // namespace

evaluation evaluate(const program& program, contact_state state, std::span<const event> events,
                    time_point now, round_robin_counters* counters) {
  evaluation out;
  evaluate_impl<event>(
      program, state, events, now, counters, out.actions,
      detail::outcome_recorder{&out.outcomes, nullptr, &out.workflow_outcomes, nullptr});
  out.state = std::move(state);
  return out;
}

evaluation evaluate(const program& program, contact_state state,
                    std::span<const event* const> events, time_point now,
                    round_robin_counters* counters) {
  evaluation out;
  evaluate_impl<const event*>(
      program, state, events, now, counters, out.actions,
      detail::outcome_recorder{&out.outcomes, nullptr, &out.workflow_outcomes, nullptr});
  out.state = std::move(state);
  return out;
}

namespace detail {
void evaluate_into(const program& program, contact_state& state,
                   std::span<const event* const> events, time_point now,
                   round_robin_counters* counters, std::vector<due_action>& actions,
                   const detail::outcome_recorder& outcomes, bool timers_at_now) {
  evaluate_impl<const event*>(program, state, events, now, counters, actions, outcomes,
                              timers_at_now);
}
void replace_profile_into(const program& program, contact_state& state, contact profile,
                          time_point at, round_robin_counters* counters,
                          std::vector<due_action>& actions,
                          const detail::outcome_recorder& outcomes) {
  const std::string& id = state.contact.id;
  if (profile.id != id) {
    throw input_error(profile.id, 0, fmt::format("belongs to contact \"{}\"", id));
  }
  if (!state.merged_into.empty()) {
    throw input_error(id, 0,
                      fmt::format("the contact was merged into \"{}\" (an identify event); "
                                  "upsert that contact",
                                  state.merged_into));
  }
  if (!in_input_range(at)) {
    throw input_error(
        id, 0,
        fmt::format("time {} is outside the supported range ({})", to_epoch(at), input_range_text));
  }
  if (at < state.clock) {
    throw input_error(
        id, 0,
        fmt::format("out of order: the upsert at {} ({}) is before {} ({}), the contact's last "
                    "applied event or timer",
                    format_time(at), to_epoch(at), format_time(state.clock),
                    to_epoch(state.clock)));
  }
  prepare_slots(program, state);
  evaluator ev{program, sinks{state, actions, outcomes}, counters};
  ev.start(state.clock != min_time ? state.clock : at);
  ev.replace_profile(std::move(profile), at);
  ev.finish(at);
}
}  // namespace detail

}  // namespace nudge
