// nudge/condition.hpp: conditions over a contact's profile and event history, as data.
//
// A condition is a tree: all / any / not over leaves that compare a profile field, test a tag or
// group, or count events in a window. Rules built in C++ and rules loaded from JSON produce the
// same trees; the program compiler flattens them and derives the history each leaf needs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nudge/geo.hpp>
#include <nudge/time.hpp>
#include <nudge/value.hpp>

namespace nudge {

/// How an event's key is matched.
enum class key_match : std::uint8_t {
  any,     ///< every key
  exact,   ///< key == pattern
  prefix,  ///< key starts with pattern
};

/// An event type and a key pattern: "page_view with key prefix /cart".
struct event_match {
  std::string type;
  key_match match = key_match::any;
  std::string key;  ///< the pattern for exact and prefix

  friend bool operator==(const event_match&, const event_match&) = default;
};

/// Any event of `type`.
inline event_match on(std::string type) {
  return {std::move(type), key_match::any, {}};
}
/// Events of `type` whose key equals `key`.
inline event_match on(std::string type, std::string key) {
  return {std::move(type), key_match::exact, std::move(key)};
}
/// Events of `type` whose key starts with `prefix`.
inline event_match on_prefix(std::string type, std::string prefix) {
  return {std::move(type), key_match::prefix, std::move(prefix)};
}

/// Comparison operators for profile fields.
enum class compare_op : std::uint8_t { eq, ne, lt, le, gt, ge, in, contains, prefix, exists };

/// Which part of the profile a comparison reads.
enum class field : std::uint8_t { detail, status, stage, owner, score, time_zone };

/// Which events a `happened` leaf counts.
enum class window_kind : std::uint8_t {
  lifetime,       ///< every event ever applied
  within,         ///< events in (t - length, t], t = evaluation time
  since_trigger,  ///< events in (trigger time, t]: "opened since the rule was triggered"
};

/// How the count of a `happened` leaf is bounded.
enum class count_op : std::uint8_t { at_least, at_most, exactly };

/// What an `aggregate` leaf computes over a numeric event property in a window.
enum class aggregate_fn : std::uint8_t {
  sum,      ///< the sum of the property over the window's events (0 when there are none)
  average,  ///< their mean; a window without events has no average, and the leaf is false
};

/// Which occurrence an `occurred` leaf reads.
enum class occurrence : std::uint8_t { first, last };

/// One node of a condition tree. Which members matter depends on `kind`; the helper functions
/// below build well-formed nodes, so hosts rarely set members by hand.
struct condition {
  enum class kind : std::uint8_t {
    always,
    all,
    any,
    negate,
    compare,
    has_tag,
    in_group,
    happened,
    in_segment,  ///< member of the segment `name` (see segment.hpp)
    aggregate,   ///< sum / average of event property `property` within a window, compared
    occurred,    ///< the first / last matching event lies within the window, or before it
    /// The contact has an active run of workflow `name` (at step `step`, when not empty).
    in_workflow,
    completed_workflow,  ///< a run of workflow `name` walked to its end, ever
    exited_workflow,     ///< a goal (exit event or exit condition) ended a run of `name`, ever
    near,                ///< the contact's location is at most `radius_km` from `point` (geo.hpp)
    moved,  ///< the contact's location is more than `radius_km` from its previous location
  };

  kind node = kind::always;
  std::vector<condition> children;  ///< all, any, negate (exactly one child)
  // compare
  field target = field::detail;
  std::string name;  ///< detail name; tag or group for has_tag / in_group
  compare_op op = compare_op::eq;
  std::vector<value> operands;  ///< one, or the candidates of `in`; none for `exists`
  // happened
  event_match events;
  window_kind window = window_kind::lifetime;
  duration window_length{0};
  /// Not 0: the window is this many calendar months instead of window_length (which is then 0).
  /// An event is inside at `t` while `t` is before the event's time plus that many months on
  /// the contact's calendar (time.hpp's months): "within 1mo" holds an event of 31 January
  /// 10:00 until 29 February 10:00 (28 February in other years); "older_than 1mo" holds from
  /// then on. For fixed lengths the same reading gives (t - window_length, t].
  std::int32_t window_months = 0;
  count_op count = count_op::at_least;
  std::int64_t count_bound = 1;
  // aggregate (also reads events, window_length, op and operands[0], a number)
  aggregate_fn aggregate = aggregate_fn::sum;
  std::string property;  ///< the event property (a number) summed or averaged
  // occurred (also reads events and window_length)
  occurrence which = occurrence::last;
  /// false: the occurrence lies in (t - window_length, t]; true: it exists and lies at or
  /// before t - window_length ("the last purchase was more than 60 days ago").
  bool is_older = false;
  /// in_workflow: the step id the run must be at; empty: any step.
  std::string step;
  // near (point and radius_km), moved (radius_km)
  geo_point point;
  double radius_km = 0;

  friend bool operator==(const condition&, const condition&) = default;
};

// ---- Builders: conditions read close to how a marketer says them ---------------------------

/// Always true: a rule without a condition.
inline condition always() {
  return {};
}
inline condition all(std::vector<condition> c) {
  condition n;
  n.node = condition::kind::all;
  n.children = std::move(c);
  return n;
}
inline condition any(std::vector<condition> c) {
  condition n;
  n.node = condition::kind::any;
  n.children = std::move(c);
  return n;
}
inline condition negate(condition c) {
  condition n;
  n.node = condition::kind::negate;
  n.children.push_back(std::move(c));
  return n;
}
inline condition operator!(condition c) {
  return negate(std::move(c));
}

/// `field op operand`, e.g. compare(field::score, compare_op::ge, 50.0).
inline condition compare(field f, std::string name, compare_op op, std::vector<value> operands) {
  condition n;
  n.node = condition::kind::compare;
  n.target = f;
  n.name = std::move(name);
  n.op = op;
  n.operands = std::move(operands);
  return n;
}

/// Fluent comparisons on one profile field: contact_detail("language").eq("pl"),
/// status().eq("customer").
struct field_ref {
  field target;
  std::string name;
  condition eq(value v) const { return compare(target, name, compare_op::eq, {std::move(v)}); }
  condition ne(value v) const { return compare(target, name, compare_op::ne, {std::move(v)}); }
  condition lt(value v) const { return compare(target, name, compare_op::lt, {std::move(v)}); }
  condition le(value v) const { return compare(target, name, compare_op::le, {std::move(v)}); }
  condition gt(value v) const { return compare(target, name, compare_op::gt, {std::move(v)}); }
  condition ge(value v) const { return compare(target, name, compare_op::ge, {std::move(v)}); }
  condition in(std::vector<value> vs) const {
    return compare(target, name, compare_op::in, std::move(vs));
  }
  condition contains(std::string s) const {
    return compare(target, name, compare_op::contains, {value{std::move(s)}});
  }
  condition starts_with(std::string s) const {
    return compare(target, name, compare_op::prefix, {value{std::move(s)}});
  }
  /// Present and, for text, non-empty.
  condition exists() const { return compare(target, name, compare_op::exists, {}); }
};
inline field_ref contact_detail(std::string name) {
  return {field::detail, std::move(name)};
}
inline field_ref status() {
  return {field::status, {}};
}
inline field_ref stage() {
  return {field::stage, {}};
}
inline field_ref owner() {
  return {field::owner, {}};
}
inline field_ref score() {
  return {field::score, {}};
}
inline field_ref time_zone() {
  return {field::time_zone, {}};
}

inline condition has_tag(std::string tag) {
  condition n;
  n.node = condition::kind::has_tag;
  n.name = std::move(tag);
  return n;
}
inline condition in_group(std::string group) {
  condition n;
  n.node = condition::kind::in_group;
  n.name = std::move(group);
  return n;
}

/// "happened": events matching `m` counted in a window, compared with a bound. Defaults to
/// "at least once, ever"; chain .within(), .since_trigger(), .at_least() ... to narrow it.
struct happened_builder {
  condition node;
  happened_builder& within(duration d) {
    node.window = window_kind::within;
    node.window_length = d;
    node.window_months = 0;
    return *this;
  }
  happened_builder& within(months m) {
    node.window = window_kind::within;
    node.window_length = duration{0};
    node.window_months = m.count;
    return *this;
  }
  happened_builder& since_trigger() {
    node.window = window_kind::since_trigger;
    return *this;
  }
  happened_builder& lifetime() {
    node.window = window_kind::lifetime;
    return *this;
  }
  happened_builder& at_least(std::int64_t n) { return bound(count_op::at_least, n); }
  happened_builder& at_most(std::int64_t n) { return bound(count_op::at_most, n); }
  happened_builder& exactly(std::int64_t n) { return bound(count_op::exactly, n); }
  operator condition() const { return node; }  // NOLINT: builder converts implicitly by design

 private:
  happened_builder& bound(count_op op, std::int64_t n) {
    node.count = op;
    node.count_bound = n;
    return *this;
  }
};
inline happened_builder happened(event_match m) {
  happened_builder b;
  b.node.node = condition::kind::happened;
  b.node.events = std::move(m);
  return b;
}
/// "did NOT happen": the same leaf with at most 0 events.
inline happened_builder not_happened(event_match m) {
  auto b = happened(std::move(m));
  b.at_most(0);
  return b;
}

/// Member of segment `name` (a segment defined in the same rule set; a segment's condition may
/// name only segments defined before it).
inline condition in_segment(std::string name) {
  condition n;
  n.node = condition::kind::in_segment;
  n.name = std::move(name);
  return n;
}

/// "sum / average of a numeric event property within a window", compared with a number:
/// sum_of(on("app_session"), "minutes").within(days(7)).ge(30). Windows are (t - length, t],
/// like `happened`. Events without the property, or with a non-numeric one, count as 0 in a
/// sum and are left out of an average.
struct aggregate_builder {
  condition node;
  aggregate_builder& within(duration d) {
    node.window_length = d;
    node.window_months = 0;
    return *this;
  }
  aggregate_builder& within(months m) {
    node.window_length = duration{0};
    node.window_months = m.count;
    return *this;
  }
  condition eq(double v) const { return with(compare_op::eq, v); }
  condition ne(double v) const { return with(compare_op::ne, v); }
  condition lt(double v) const { return with(compare_op::lt, v); }
  condition le(double v) const { return with(compare_op::le, v); }
  condition gt(double v) const { return with(compare_op::gt, v); }
  condition ge(double v) const { return with(compare_op::ge, v); }

 private:
  condition with(compare_op op, double v) const {
    condition c = node;
    c.op = op;
    c.operands = {value{v}};
    return c;
  }
};
inline aggregate_builder aggregate_of(aggregate_fn fn, event_match m, std::string property) {
  aggregate_builder b;
  b.node.node = condition::kind::aggregate;
  b.node.window = window_kind::within;
  b.node.aggregate = fn;
  b.node.events = std::move(m);
  b.node.property = std::move(property);
  return b;
}
inline aggregate_builder sum_of(event_match m, std::string property) {
  return aggregate_of(aggregate_fn::sum, std::move(m), std::move(property));
}
inline aggregate_builder average_of(event_match m, std::string property) {
  return aggregate_of(aggregate_fn::average, std::move(m), std::move(property));
}

/// "the first / last matching event was within `d`" (in (t - d, t]) or "... was more than `d`
/// ago" (at or before t - d; false when there was none): first_seen(on("page_view")).within(
/// days(7)) is a new visitor, last_seen(on("purchase")).older_than(days(60)) a lapsed buyer.
struct occurred_builder {
  condition node;
  condition within(duration d) const { return with(d, 0, false); }
  condition older_than(duration d) const { return with(d, 0, true); }
  condition within(months m) const { return with(duration{0}, m.count, false); }
  condition older_than(months m) const { return with(duration{0}, m.count, true); }

 private:
  condition with(duration d, std::int32_t m, bool older) const {
    condition c = node;
    c.window = window_kind::within;
    c.window_length = d;
    c.window_months = m;
    c.is_older = older;
    return c;
  }
};
inline occurred_builder first_seen(event_match m) {
  occurred_builder b;
  b.node.node = condition::kind::occurred;
  b.node.which = occurrence::first;
  b.node.events = std::move(m);
  return b;
}
inline occurred_builder last_seen(event_match m) {
  occurred_builder b;
  b.node.node = condition::kind::occurred;
  b.node.which = occurrence::last;
  b.node.events = std::move(m);
  return b;
}

/// "the contact is within `km` of `center`" (great-circle distance, geo.hpp); false without a
/// location: near({52.2297, 21.0122}, 20).
inline condition near(geo_point center, double km) {
  condition n;
  n.node = condition::kind::near;
  n.point = center;
  n.radius_km = km;
  return n;
}
/// "the contact's location moved more than `km` from its previous one" (the location before it
/// last changed; false while there is no previous location): moved_more_than(100).
inline condition moved_more_than(double km) {
  condition n;
  n.node = condition::kind::moved;
  n.radius_km = km;
  return n;
}

/// "the contact is in workflow `workflow`" (an active run, any step), or "... at step `step`"
/// (the step's id; a run on a kept older version counts at the step with the same id). The
/// workflow and step must exist in the same rule set.
inline condition in_workflow(std::string workflow, std::string step = {}) {
  condition n;
  n.node = condition::kind::in_workflow;
  n.name = std::move(workflow);
  n.step = std::move(step);
  return n;
}
/// "the contact has completed workflow `workflow`": some run walked to its end (an end step or
/// the last step), at any time before; remembered after the run is gone.
inline condition completed_workflow(std::string workflow) {
  condition n;
  n.node = condition::kind::completed_workflow;
  n.name = std::move(workflow);
  return n;
}
/// "the contact has exited workflow `workflow`": a goal (an exit event or the exit condition)
/// ended some run of it before its end. A run a program change ended counts as neither.
inline condition exited_workflow(std::string workflow) {
  condition n;
  n.node = condition::kind::exited_workflow;
  n.name = std::move(workflow);
  return n;
}

}  // namespace nudge
