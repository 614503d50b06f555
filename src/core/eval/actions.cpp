// A triggered rule's check and actions: perform() is the one path that applies or emits.

#include "evaluator.hpp"

namespace nudge::eval {

auto evaluator::trigger(std::uint32_t r, time_point at, std::uint64_t ordinal, std::size_t depth,
                        const std::vector<std::uint32_t>* chain) -> void {
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

auto evaluator::run_check(std::uint32_t r, time_point now, time_point triggered_at,
                          std::uint64_t ordinal, const cascade_ctx* ctx) -> void {
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
auto evaluator::policy_allows(const rule& def, std::uint32_t r, time_point now) const
    -> timeline_reason {
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

auto evaluator::run_action(std::uint32_t r, std::size_t i, time_point now, time_point triggered_at,
                           std::uint64_t ordinal, const cascade_ctx* ctx) -> void {
  const rule& def = p_.rules().rules[r];
  const action& a = def.actions[i];
  const detail::compiled_rule& cr = c_.rules[r];
  if (cr.action_conditions[i] != none && !eval(cr.action_conditions[i], now, triggered_at)) {
    note(timeline_what::action_skipped, r, now, static_cast<std::uint32_t>(i));
    return;
  }
  perform(a, rule_emission(r, i, triggered_at, ordinal), now, ctx);
}

auto evaluator::rule_emission(std::uint32_t r, std::size_t i, time_point triggered_at,
                              std::uint64_t ordinal) const -> emission {
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

// Applies `a` and, for an external action (or notify), emits it. Returns true if emitted.
auto evaluator::perform(const action& a, const emission& src, time_point now,
                        const cascade_ctx* ctx) -> bool {
  std::string_view arg = a.arg;
  std::string_view raised_type;
  std::string raised_key;
  contact& c = s_.contact;
  switch (a.kind) {
    case action_kind::add_tag:
      if (!c.has_tag(a.arg)) {
        changing_profile();
        c.tags.emplace(a.arg, now);
        touch_named(c_.segment_reads.by_tag, a.arg);
        raised_type = event_types::tag_added;
        raised_key = a.arg;
      }
      break;
    case action_kind::remove_tag:
      if (c.has_tag(a.arg)) {
        changing_profile();
        c.tags.erase(a.arg);
        touch_named(c_.segment_reads.by_tag, a.arg);
        raised_type = event_types::tag_removed;
        raised_key = a.arg;
      }
      break;
    case action_kind::set_detail: {
      auto it = c.details.find(a.arg);
      if (it == c.details.end() || !(it->second == a.val)) {
        changing_profile();
        c.details.insert_or_assign(a.arg, a.val);
        touch_named(c_.segment_reads.by_detail, a.arg);
        raised_type = event_types::detail_set;
        raised_key = a.arg;
      }
      break;
    }
    case action_kind::set_status:
      if (c.status != a.arg) {
        changing_profile();
        c.status = a.arg;
        touch_field(field::status);
        raised_type = event_types::status_changed;
        raised_key = a.arg;
      }
      break;
    case action_kind::set_stage:
      if (c.stage != a.arg) {
        changing_profile();
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
        changing_profile();
        c.owner = std::string{arg};
        touch_field(field::owner);
        raised_type = event_types::owner_assigned;
        raised_key = c.owner;
      }
      break;
    }
    case action_kind::add_to_group:
      if (!c.in_group(a.arg)) {
        changing_profile();
        c.groups.insert(a.arg);
        touch_named(c_.segment_reads.by_group, a.arg);
        raised_type = event_types::group_added;
        raised_key = a.arg;
      }
      break;
    case action_kind::remove_from_group:
      if (c.in_group(a.arg)) {
        changing_profile();
        c.groups.erase(a.arg);
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

}  // namespace nudge::eval
