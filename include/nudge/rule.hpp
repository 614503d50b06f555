// nudge/rule.hpp: an automation rule as data, a rule set, and a builder that reads like a
// marketer's sentence.
//
//     auto r = nudge::rule_builder("winback")
//                  .on(nudge::on("purchase"))
//                  .check_after(nudge::days(60))
//                  .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::days(60)))
//                  .then(nudge::send_email("winback"))
//                  .build();
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nudge/action.hpp>
#include <nudge/condition.hpp>
#include <nudge/contact.hpp>
#include <nudge/delivery.hpp>
#include <nudge/geo.hpp>
#include <nudge/scoring.hpp>
#include <nudge/segment.hpp>
#include <nudge/time.hpp>
#include <nudge/workflow.hpp>

namespace nudge {

/// When a contact may run a rule again.
enum class reentry : std::uint8_t {
  always,    ///< every trigger may run it
  once,      ///< at most one passing run per contact, ever
  once_per,  ///< at most one passing run per contact within `reentry_window`
};

/// What a live engine (engine::change_program, nudge run on a changed rule file) does with the
/// pending timers of a rule whose delay, condition or actions changed (lifecycle.hpp).
enum class rule_change : std::uint8_t {
  refuse,      ///< the change is refused (the default: the rule file must choose)
  reevaluate,  ///< pending timers fire under the new definition, their due times recomputed
  drop,        ///< pending timers are dropped at the change; new triggers use the new definition
};

/// At most `max_runs` passing runs per contact in any window (t - per, t].
struct frequency_cap {
  std::int64_t max_runs = 1;
  duration per{0};
  friend bool operator==(const frequency_cap&, const frequency_cap&) = default;
};

/// A rule: when `trigger` happens, wait `delay`, then if `condition` holds (and the re-entry
/// policy and cap allow) run `actions` in order. The condition is evaluated at check time
/// (trigger time + delay), never earlier, so a purchase during the delay can cancel a win-back.
struct rule {
  std::string id;  ///< unique in the set; names the rule in output and stats
  event_match trigger;
  duration delay{0};
  /// Not 0: the check waits this many calendar months on the contact's calendar instead of
  /// `delay` (which is then 0): check_after(months(2)), "2mo" in rule files (time.hpp).
  std::int32_t delay_months = 0;
  nudge::condition condition = always();
  std::vector<action> actions;
  reentry reentry_policy = reentry::always;
  duration reentry_window{0};
  std::optional<frequency_cap> cap;
  /// This rule's delivery policy for its messages, replacing the rule set's default policy
  /// (rule files merge a rule's "delivery" fields over the file's defaults).
  std::optional<delivery_policy> delivery;
  /// Pending timers when this rule changes in a running engine ("on_change" in rule files).
  /// Not part of the program fingerprint: it changes no action of an unchanged rule.
  rule_change on_change = rule_change::refuse;

  friend bool operator==(const rule&, const rule&) = default;
};

/// Everything a program is compiled from. Rules react to an event in the order listed.
struct rule_set {
  std::vector<rule> rules;
  /// Owner groups for assign_owner: name -> members, in order.
  name_map<std::vector<std::string>> owner_groups;
  /// Custom event types hosts may send besides the built-in ones and those rules mention.
  std::vector<std::string> event_types;
  /// Entries each contact's timeline keeps (timeline.hpp); 0 records nothing. Off by default:
  /// a replay or live run that nobody will ask "why?" pays nothing for it (`nudge explain`
  /// turns it on). Not part of the program fingerprint: it changes no action.
  std::uint32_t timeline_size = 0;
  /// Dynamic segments, evaluated in this order (segment.hpp).
  std::vector<segment> segments;
  /// Score rules, decay and thresholds (scoring.hpp).
  nudge::scoring scoring;
  /// Multi-step journeys (nudge/workflow.hpp), evaluated after the rules an event triggers.
  std::vector<workflow> workflows;
  /// The delivery policy (consent, caps, hours) and time zones. Without it, messages of rules
  /// without their own `rule::delivery` go out ungoverned, as before the policy existed.
  std::optional<delivery_settings> delivery;
  /// Named circles: a contact's location moving into / out of one raises `area_entered` /
  /// `area_exited` with the area's name as key (geo.hpp, docs/rules.md "Location").
  std::vector<area> areas;

  friend bool operator==(const rule_set&, const rule_set&) = default;
};

// ---- Action builders --------------------------------------------------------------------------
inline action make_action(action_kind k, std::string arg) {
  action a;
  a.kind = k;
  a.arg = std::move(arg);
  return a;
}
inline action send_email(std::string tmpl) {
  return make_action(action_kind::send_email, tmpl);
}
inline action send_sms(std::string tmpl) {
  return make_action(action_kind::send_sms, tmpl);
}
inline action web_push(std::string tmpl) {
  return make_action(action_kind::web_push, tmpl);
}
inline action show_popup(std::string tmpl) {
  return make_action(action_kind::show_popup, std::move(tmpl));
}
inline action send_chat(std::string tmpl) {
  return make_action(action_kind::send_chat, std::move(tmpl));
}
inline action notify_owner(std::string tmpl) {
  return make_action(action_kind::notify_owner, std::move(tmpl));
}
inline action generate_coupon(std::string kind) {
  return make_action(action_kind::generate_coupon, std::move(kind));
}
inline action webhook(std::string url) {
  return make_action(action_kind::webhook, url);
}
inline action add_tag(std::string tag) {
  return make_action(action_kind::add_tag, tag);
}
inline action remove_tag(std::string tag) {
  return make_action(action_kind::remove_tag, tag);
}
inline action set_status(std::string s) {
  return make_action(action_kind::set_status, s);
}
inline action set_stage(std::string s) {
  return make_action(action_kind::set_stage, s);
}
inline action add_to_group(std::string g) {
  return make_action(action_kind::add_to_group, g);
}
inline action remove_from_group(std::string g) {
  return make_action(action_kind::remove_from_group, std::move(g));
}
inline action set_detail(std::string name, value v) {
  auto a = make_action(action_kind::set_detail, std::move(name));
  a.val = std::move(v);
  return a;
}
inline action add_score(double points) {
  auto a = make_action(action_kind::add_score, {});
  a.val = points;
  return a;
}
/// Owner from `group`, picked by hash of the contact id (or round robin).
inline action assign_owner(std::string group, owner_pick pick = owner_pick::hash) {
  auto a = make_action(action_kind::assign_owner, std::move(group));
  a.pick = pick;
  return a;
}

/// Fluent modifiers for an action: send_email("welcome_2") | after(days(2)).
struct after {
  duration delay;
};
inline action operator|(action a, after d) {
  a.delay = d.delay;
  return a;
}
/// send_email("reminder") | after(days(1)) | only_if{...}: checked when the delayed action
/// comes due (action::condition).
struct only_if {
  condition c;
};
inline action operator|(action a, only_if w) {
  a.condition = std::move(w.c);
  return a;
}
struct with_param {
  std::string name, text;
};
inline action operator|(action a, with_param p) {
  a.params[std::move(p.name)] = std::move(p.text);
  return a;
}
/// send_email("receipt") | transactional{}: exempt from the delivery policy.
struct transactional {};
inline action operator|(action a, transactional) {
  a.transactional = true;
  return a;
}
struct notify_host {};
inline action operator|(action a, notify_host) {
  a.notify = true;
  return a;
}

/// Builds a rule step by step; build() returns the plain data.
class rule_builder {
 public:
  explicit rule_builder(std::string id) { rule_.id = std::move(id); }
  /// The trigger (JSON "on").
  rule_builder& on(event_match m) {
    rule_.trigger = std::move(m);
    return *this;
  }
  /// "check the conditions in 2 months"
  rule_builder& check_after(duration d) {
    rule_.delay = d;
    rule_.delay_months = 0;
    return *this;
  }
  /// "check the conditions again in 2 calendar months" (same local time, day clamped).
  rule_builder& check_after(months m) {
    rule_.delay = duration{0};
    rule_.delay_months = m.count;
    return *this;
  }
  /// The condition (JSON "if"), checked at trigger time plus the delay.
  rule_builder& only_if(nudge::condition c) {
    rule_.condition = std::move(c);
    return *this;
  }
  /// One more action (JSON "then"), run in order.
  rule_builder& then(action a) {
    rule_.actions.push_back(std::move(a));
    return *this;
  }
  rule_builder& once() {
    rule_.reentry_policy = reentry::once;
    return *this;
  }
  rule_builder& once_per(duration window) {
    rule_.reentry_policy = reentry::once_per;
    rule_.reentry_window = window;
    return *this;
  }
  rule_builder& at_most(std::int64_t runs, duration per) {
    rule_.cap = frequency_cap{runs, per};
    return *this;
  }
  /// This rule's delivery policy (replaces the rule set's default).
  rule_builder& deliver(delivery_policy p) {
    rule_.delivery = std::move(p);
    return *this;
  }
  /// What a running engine does with this rule's pending timers when the rule changes
  /// (rule_change; "on_change" in rule files).
  rule_builder& on_change(rule_change c) {
    rule_.on_change = c;
    return *this;
  }
  rule build() const { return rule_; }
  operator rule() const { return rule_; }  // NOLINT: so a builder can go straight into a set

 private:
  rule rule_;
};

}  // namespace nudge
