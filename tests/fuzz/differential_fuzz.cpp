// Differential fuzz target: the fuzz input chooses a small valid program (rules built with the
// C++ builder), a few contacts and their events; the same input then runs three ways:
//
//   (a) one batch through nudge::engine on a memory_store: process(all events, end);
//   (b) split into batches at instants where a split is valid (after every event of an instant,
//       docs/design.md "The clock rule"), with advance(now) calls between, ending with
//       advance(end); once with cuts the input picks (continuing after some batches in a fresh
//       engine loaded from a snapshot, which must round-trip exactly) and once with every
//       instant its own batch;
//   (c) nudge::evaluate per contact, from the contact's fresh state, with now = end.
//
// All runs must give identical due actions (contact, rule, action, argument, due time,
// idempotency key), identical final contact states (with their timelines, when the program keeps
// one) and (a, b) identical rule statistics. A rule cycle (internal actions cascading past the
// depth limit) must be reported by every run. Any difference prints both sides and traps.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

namespace {

const nudge::time_point t0 = nudge::from_epoch(1'704'067'200);  // 2024-01-01T00:00:00Z

// Small pools, so that keys, tags and stages written by actions meet the ones rules match, and
// event gaps meet timer delays (ties at one instant are where the ordering rules matter).
const char* const names[] = {"a", "ab", "b"};
const char* const event_types[] = {"signup",    "cart",        "purchase",     "page_view",
                                   "tag_added", "tag_removed", "stage_entered"};
// Rules may also trigger on, and count, events that only internal actions raise.
const char* const match_types[] = {"signup",      "cart",          "purchase",      "page_view",
                                   "tag_added",   "tag_removed",   "stage_entered", "score_changed",
                                   "group_added", "status_changed"};
const nudge::duration delays[] = {nudge::seconds(0), nudge::minutes(1), nudge::hours(1),
                                  nudge::days(1), nudge::days(2)};
const nudge::duration gaps[] = {nudge::seconds(0), nudge::seconds(0), nudge::minutes(1),
                                nudge::hours(1), nudge::days(1)};
const nudge::duration windows[] = {nudge::minutes(1), nudge::hours(1), nudge::days(1),
                                   nudge::days(3)};

template <class T, std::size_t N>
const T& pick(FuzzedDataProvider& in, const T (&pool)[N]) {
  return pool[in.ConsumeIntegralInRange<std::size_t>(0, N - 1)];
}
std::string name(FuzzedDataProvider& in) {
  return pick(in, names);
}

nudge::event_match match(FuzzedDataProvider& in) {
  std::string type = pick(in, match_types);
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
      return nudge::on(std::move(type), name(in));
    case 1:
      return nudge::on_prefix(std::move(type), name(in));
    default:
      return nudge::on(std::move(type));
  }
}

nudge::condition condition(FuzzedDataProvider& in, int depth) {
  const int choice = in.ConsumeIntegralInRange(0, depth > 0 ? 9 : 6);
  switch (choice) {
    case 0:
      return nudge::always();
    case 1:
      return nudge::has_tag(name(in));
    case 2:
      return in.ConsumeBool() ? nudge::stage().eq(name(in)) : nudge::in_group(name(in));
    case 3:
      return nudge::score().ge(static_cast<std::int64_t>(in.ConsumeIntegralInRange(-2, 4)));
    case 4:
    case 5: {
      auto h = in.ConsumeBool() ? nudge::not_happened(match(in)) : nudge::happened(match(in));
      switch (in.ConsumeIntegralInRange(0, 2)) {
        case 0:
          h.within(pick(in, windows));
          break;
        case 1:
          h.since_trigger();
          break;
        default:
          break;
      }
      if (in.ConsumeBool()) {
        const auto bound = static_cast<std::int64_t>(in.ConsumeIntegralInRange(0, 3));
        switch (in.ConsumeIntegralInRange(0, 2)) {
          case 0:
            h.at_least(bound);
            break;
          case 1:
            h.at_most(bound);
            break;
          default:
            h.exactly(bound);
            break;
        }
      }
      return h;
    }
    case 6:
      return nudge::status().eq(in.ConsumeBool() ? "lead" : name(in));
    case 7:
      return !condition(in, depth - 1);
    default: {
      std::vector<nudge::condition> children;
      const int n = in.ConsumeIntegralInRange(0, 3);
      for (int i = 0; i < n; ++i) {
        children.push_back(condition(in, depth - 1));
      }
      return choice == 8 ? nudge::all(std::move(children)) : nudge::any(std::move(children));
    }
  }
}

nudge::action action(FuzzedDataProvider& in) {
  nudge::action a;
  switch (in.ConsumeIntegralInRange(0, 12)) {
    case 0:
      a = nudge::send_email(name(in));
      break;
    case 1:
      a = nudge::send_sms(name(in));
      break;
    case 2:
      a = nudge::webhook("https://example.com/" + name(in));
      break;
    case 3:
      a = nudge::generate_coupon(name(in));
      break;
    case 4:
    case 5:
      a = nudge::add_tag(name(in));
      break;
    case 6:
      a = nudge::remove_tag(name(in));
      break;
    case 7:
      a = nudge::set_stage(name(in));
      break;
    case 8:
      a = nudge::add_score(static_cast<double>(in.ConsumeIntegralInRange(-1, 2)));
      break;
    case 9:
      a = in.ConsumeBool() ? nudge::add_to_group(name(in)) : nudge::remove_from_group(name(in));
      break;
    case 10:
      a = nudge::set_status(name(in));
      break;
    case 11:
      a = nudge::set_detail(name(in), static_cast<std::int64_t>(in.ConsumeIntegralInRange(0, 2)));
      break;
    default:
      // Round robin is left out: its counter is shared across contacts, so it depends on the
      // order contacts are processed in, which batching changes by design.
      a = nudge::assign_owner("reps");
      break;
  }
  if (in.ConsumeBool()) {
    a = std::move(a) | nudge::after{pick(in, delays)};
  }
  if (in.ConsumeIntegralInRange(0, 3) == 0) {
    a = std::move(a) | nudge::only_if{condition(in, 1)};
  }
  if (in.ConsumeIntegralInRange(0, 3) == 0) {
    a = std::move(a) | nudge::notify_host{};
  }
  return a;
}

nudge::rule_set rules(FuzzedDataProvider& in) {
  nudge::rule_set rs;
  rs.owner_groups["reps"] = {"anna", "bartek", "celina"};
  const int n = in.ConsumeIntegralInRange(1, 6);
  for (int i = 0; i < n; ++i) {
    nudge::rule_builder b{fmt::format("r{}", i)};
    b.on(match(in));
    if (in.ConsumeBool()) {
      b.check_after(pick(in, delays));
    }
    if (in.ConsumeBool()) {
      b.only_if(condition(in, 2));
    }
    const int actions = in.ConsumeIntegralInRange(1, 3);
    for (int j = 0; j < actions; ++j) {
      b.then(action(in));
    }
    switch (in.ConsumeIntegralInRange(0, 5)) {
      case 0:
        b.once();
        break;
      case 1:
        b.once_per(pick(in, windows));
        break;
      case 2:
        b.at_most(in.ConsumeIntegralInRange<std::int64_t>(1, 3), pick(in, windows));
        break;
      default:
        break;
    }
    rs.rules.push_back(b.build());
  }
  for (const char* t : event_types) {
    rs.event_types.emplace_back(t);
  }
  // Off, a ring that wraps within a few events, or one that keeps everything here.
  static const std::uint32_t timeline_sizes[] = {0, 0, 3, 200};
  rs.timeline_size = pick(in, timeline_sizes);
  return rs;
}

// Messages and internal actions for workflow steps (steps take no delay).
nudge::action message(FuzzedDataProvider& in) {
  nudge::action a;
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0:
    case 1:
      a = nudge::send_email(name(in));
      break;
    case 2:
      a = nudge::send_sms(name(in));
      break;
    default:
      a = nudge::webhook("https://example.com/" + name(in));
      break;
  }
  if (in.ConsumeIntegralInRange(0, 4) == 0) {
    a = std::move(a) | nudge::transactional{};
  }
  return a;
}
nudge::action internal_action(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 5)) {
    case 0:
      return nudge::add_tag(name(in));
    case 1:
      return nudge::remove_tag(name(in));
    case 2:
      return nudge::set_stage(name(in));
    case 3:
      return nudge::add_score(static_cast<double>(in.ConsumeIntegralInRange(-1, 2)));
    case 4:
      return nudge::add_to_group(name(in));
    default:
      return nudge::set_status(name(in));
  }
}

nudge::delivery_policy policy(FuzzedDataProvider& in) {
  nudge::delivery_policy p;
  p.require_consent = in.ConsumeBool();
  const int caps = in.ConsumeIntegralInRange(0, 2);
  for (int k = 0; k < caps; ++k) {
    p.caps.push_back({in.ConsumeBool() ? nudge::channel::email : nudge::channel::sms,
                      in.ConsumeIntegralInRange<std::int64_t>(1, 2), pick(in, windows)});
  }
  if (in.ConsumeBool()) {
    const int from = in.ConsumeIntegralInRange(0, 23);
    const int to = (from + in.ConsumeIntegralInRange(1, 23)) % 24;
    (in.ConsumeBool() ? p.quiet_hours : p.send_hours) = nudge::local_hours{from * 3600, to * 3600};
  }
  p.on_cap = in.ConsumeBool() ? nudge::on_refusal::defer : nudge::on_refusal::skip;
  p.on_quiet_hours = in.ConsumeBool() ? nudge::on_refusal::defer : nudge::on_refusal::skip;
  p.priority = in.ConsumeIntegralInRange(0, 2);
  return p;
}

// Workflows (linear step lists: every step reachable, no cycle) and a delivery policy over the
// rules' and workflows' messages, with consent on some profiles. Read after the events, so that
// inputs from before workflows were fuzzed keep their meaning (no bytes left: none added).
void workflows_and_policy(FuzzedDataProvider& in, nudge::rule_set& rs,
                          std::vector<nudge::contact>& profiles) {
  const int n = in.ConsumeIntegralInRange(0, 2);
  for (int w = 0; w < n; ++w) {
    nudge::workflow_builder b{fmt::format("w{}", w)};
    b.enter_on(match(in),
               in.ConsumeIntegralInRange(0, 3) == 0 ? condition(in, 1) : nudge::always());
    if (in.ConsumeBool()) {
      b.exit_on(match(in));
    }
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0:
        b.reenter(nudge::workflow_reentry::never);
        break;
      case 1:
        b.reenter(nudge::workflow_reentry::cool_down, pick(in, windows));
        break;
      default:
        break;
    }
    b.max_active_runs(in.ConsumeIntegralInRange<std::uint32_t>(1, 2));
    const int steps = in.ConsumeIntegralInRange(1, 5);
    for (int k = 0; k < steps; ++k) {
      const std::string id = fmt::format("s{}", k);
      const std::string next = k + 1 < steps ? fmt::format("s{}", k + 1) : std::string{};
      switch (in.ConsumeIntegralInRange(0, 6)) {
        case 0:
        case 1:
          b.send(id, message(in));
          break;
        case 2:
          b.act(id, internal_action(in));
          break;
        case 3:
          b.wait(id, pick(in, windows));
          break;
        case 4:
          b.wait_after_message(id, nudge::message_moment::delivered, pick(in, delays));
          break;
        case 5:
          b.wait_for(id, match(in), pick(in, windows), next, next);
          break;
        default:
          b.branch(id, condition(in, 1), next, next);
          break;
      }
    }
    if (in.ConsumeIntegralInRange(0, 3) == 0) {
      b.deliver(policy(in));
    }
    rs.workflows.push_back(b.build());
  }
  if (in.ConsumeBool()) {
    nudge::delivery_settings d;
    d.defaults = policy(in);
    d.use_system_zones = false;  // UTC: the zone code has tests of its own
    rs.delivery = std::move(d);
  }
  for (auto& p : profiles) {
    if (in.ConsumeBool()) {
      p.consent["email"] = true;
      p.consent["sms"] = in.ConsumeBool();
    }
  }
}

// True if some rule can trigger itself again through a chain of internal actions that passes a
// delay (the rule's or an action's). Such a program never settles: its timers re-arm each other
// forever, and one with fan-out doubles its pending timers at every round (docs/fuzzing.md,
// finding 1: the engine has no limit on pending timers yet). Those inputs are skipped so the
// fuzzer is not stopped by a timeout it already knows about. Conditions are ignored: the check
// errs towards skipping.
bool has_delayed_loop(const nudge::rule_set& rs) {
  struct raised {
    std::string type, key;
    bool any_key = false;  // assign_owner: the key is whichever member is picked
  };
  auto raises = [](const nudge::action& a) -> std::optional<raised> {
    using k = nudge::action_kind;
    switch (a.kind) {
      case k::add_tag:
        return raised{"tag_added", a.arg};
      case k::remove_tag:
        return raised{"tag_removed", a.arg};
      case k::set_stage:
        return raised{"stage_entered", a.arg};
      case k::set_status:
        return raised{"status_changed", a.arg};
      case k::add_score:
        return raised{"score_changed", ""};
      case k::add_to_group:
        return raised{"group_added", a.arg};
      case k::remove_from_group:
        return raised{"group_removed", a.arg};
      case k::set_detail:
        return raised{"detail_set", a.arg};
      case k::assign_owner:
        return raised{"owner_assigned", "", true};
      default:
        return std::nullopt;
    }
  };
  auto triggers = [](const nudge::event_match& m, const raised& e) {
    if (m.type != e.type) {
      return false;
    }
    switch (m.match) {
      case nudge::key_match::exact:
        return e.any_key || m.key == e.key;
      case nudge::key_match::prefix:
        return e.any_key || e.key.starts_with(m.key);
      default:
        return true;
    }
  };
  const std::size_t n = rs.rules.size();
  // edge[a][b]: running a can trigger b; delayed[a][b]: through a delay.
  std::vector<std::vector<bool>> edge(n, std::vector<bool>(n)), delayed = edge;
  for (std::size_t a = 0; a < n; ++a) {
    for (const auto& act : rs.rules[a].actions) {
      const auto e = raises(act);
      for (std::size_t b = 0; e && b < n; ++b) {
        if (triggers(rs.rules[b].trigger, *e)) {
          edge[a][b] = true;
          delayed[a][b] = delayed[a][b] || rs.rules[a].delay.count() > 0 || act.delay.count() > 0;
        }
      }
    }
  }
  auto reach = edge;  // transitive closure (Warshall): n <= 6
  for (std::size_t k = 0; k < n; ++k) {
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        if (reach[i][k] && reach[k][j]) {
          reach[i][j] = true;
        }
      }
    }
  }
  for (std::size_t a = 0; a < n; ++a) {
    for (std::size_t b = 0; b < n; ++b) {
      if (delayed[a][b] && (a == b || reach[b][a])) {
        return true;
      }
    }
  }
  return false;
}

struct input {
  std::vector<nudge::contact> profiles;  // upserted before any event
  std::vector<nudge::event> events;      // in time order
  std::vector<std::string> contact_ids;
  nudge::time_point end;
};

input events(FuzzedDataProvider& in) {
  input out;
  const int contacts = in.ConsumeIntegralInRange(1, 4);
  for (int c = 0; c < contacts; ++c) {
    out.contact_ids.push_back(fmt::format("c{}", c));
    if (in.ConsumeBool()) {
      nudge::contact p{.id = out.contact_ids.back()};
      if (in.ConsumeBool()) {
        p.tags.emplace(name(in), t0 - nudge::days(1));
      }
      if (in.ConsumeBool()) {
        p.stage = name(in);
      }
      if (in.ConsumeBool()) {
        p.groups.insert(name(in));
      }
      p.score = static_cast<double>(in.ConsumeIntegralInRange(-1, 3));
      out.profiles.push_back(std::move(p));
    }
  }
  const int n = in.ConsumeIntegralInRange(0, 48);
  auto at = t0;
  for (int i = 0; i < n && in.remaining_bytes() > 0; ++i) {
    at += pick(in, gaps);
    nudge::event e{
        .contact =
            out.contact_ids[in.ConsumeIntegralInRange<std::size_t>(0, out.contact_ids.size() - 1)],
        .type = pick(in, event_types),
        .ts = at};
    if (in.ConsumeIntegralInRange(0, 3) != 0) {
      e.key = name(in);
    }
    out.events.push_back(std::move(e));
  }
  // Long enough after the last event for every delayed check and delayed action to come due.
  out.end = at + nudge::days(5) + nudge::seconds(in.ConsumeIntegralInRange(0, 2));
  return out;
}

// ---- A readable form of the generated input, printed when a run fails (or always with
// NUDGE_FUZZ_PRINT=1 in the environment) so that a crash input can be turned into a test.
std::string describe(const nudge::event_match& m) {
  switch (m.match) {
    case nudge::key_match::exact:
      return fmt::format("{}[{}]", m.type, m.key);
    case nudge::key_match::prefix:
      return fmt::format("{}[{}*]", m.type, m.key);
    default:
      return m.type;
  }
}

std::string describe(const nudge::condition& c) {
  using k = nudge::condition::kind;
  auto list = [&](const char* op) {
    std::string out = op;
    out += '(';
    for (std::size_t i = 0; i < c.children.size(); ++i) {
      out += (i > 0 ? ", " : "") + describe(c.children[i]);
    }
    return out + ')';
  };
  switch (c.node) {
    case k::always:
      return "always";
    case k::all:
      return list("all");
    case k::any:
      return list("any");
    case k::negate:
      return list("not");
    case k::has_tag:
      return fmt::format("has_tag({})", c.name);
    case k::in_group:
      return fmt::format("in_group({})", c.name);
    case k::compare: {
      static const char* const fields[] = {"detail", "status", "stage", "owner", "score", "tz"};
      std::string out = fmt::format("{}{} op{}", fields[static_cast<int>(c.target)], c.name,
                                    static_cast<int>(c.op));
      for (const auto& v : c.operands) {
        out += ' ' + nudge::to_string(v);
      }
      return out;
    }
    case k::happened: {
      static const char* const counts[] = {">=", "<=", "=="};
      std::string window = "ever";
      if (c.window == nudge::window_kind::within) {
        window = "within " + nudge::format_duration(c.window_length);
      } else if (c.window == nudge::window_kind::since_trigger) {
        window = "since trigger";
      }
      return fmt::format("count({}, {}) {} {}", describe(c.events), window,
                         counts[static_cast<int>(c.count)], c.count_bound);
    }
  }
  return "?";
}

std::string describe(const nudge::rule& r) {
  std::string out = fmt::format("{}: on {}", r.id, describe(r.trigger));
  if (r.delay.count() > 0) {
    out += " after " + nudge::format_duration(r.delay);
  }
  if (r.condition.node != nudge::condition::kind::always) {
    out += " if " + describe(r.condition);
  }
  for (const auto& a : r.actions) {
    out += fmt::format(
        " -> {}({}{})", nudge::action_name(a.kind), a.arg,
        a.kind == nudge::action_kind::add_score || a.kind == nudge::action_kind::set_detail
            ? " " + nudge::to_string(a.val)
            : "");
    if (a.delay.count() > 0) {
      out += " after " + nudge::format_duration(a.delay);
    }
    if (a.condition) {
      out += " if " + describe(*a.condition);
    }
    if (a.notify) {
      out += " notify";
    }
  }
  if (r.reentry_policy == nudge::reentry::once) {
    out += " once";
  } else if (r.reentry_policy == nudge::reentry::once_per) {
    out += " once per " + nudge::format_duration(r.reentry_window);
  }
  if (r.cap) {
    out += fmt::format(" at most {} per {}", r.cap->max_runs, nudge::format_duration(r.cap->per));
  }
  return out;
}

void print_input(const nudge::program& p, const input& data) {
  std::fprintf(stderr, "program (timeline size %zu):\n", p.timeline_size());
  for (const auto& r : p.rules().rules) {
    std::fprintf(stderr, "  %s\n", describe(r).c_str());
  }
  for (const auto& w : p.rules().workflows) {
    std::string steps;
    for (const auto& st : w.steps) {
      steps += fmt::format(" {}:{}", st.id, static_cast<int>(st.kind));
      if (st.kind == nudge::step_kind::send || st.kind == nudge::step_kind::act) {
        steps += fmt::format("({} {})", nudge::action_name(st.act.kind), st.act.arg);
      } else if (st.kind == nudge::step_kind::wait || st.kind == nudge::step_kind::wait_for) {
        steps += fmt::format("({}s, {}s)", st.length.count(), st.timeout.count());
      }
    }
    std::fprintf(stderr, "  workflow %s on %s, max runs %u, reentry %d%s:%s\n", w.id.c_str(),
                 describe(w.entry.on).c_str(), w.max_active_runs, static_cast<int>(w.reentry),
                 w.delivery ? ", own policy" : "", steps.c_str());
  }
  if (p.rules().delivery) {
    const auto& d = p.rules().delivery->defaults;
    std::fprintf(
        stderr, "  policy: consent %d, %zu caps, quiet %d, send %d, defer cap %d hours %d\n",
        d.require_consent, d.caps.size(), d.quiet_hours.has_value(), d.send_hours.has_value(),
        d.on_cap == nudge::on_refusal::defer, d.on_quiet_hours == nudge::on_refusal::defer);
  }
  std::fprintf(stderr, "profiles:\n");
  for (const auto& c : data.profiles) {
    std::string tags;
    for (const auto& [tag, _] : c.tags) {
      tags += ' ' + tag;
    }
    std::string groups;
    for (const auto& g : c.groups) {
      groups += ' ' + g;
    }
    std::fprintf(stderr, "  %s: tags%s; stage %s; groups%s; score %g\n", c.id.c_str(), tags.c_str(),
                 c.stage.c_str(), groups.c_str(), c.score);
  }
  std::fprintf(stderr, "events:\n");
  for (const auto& e : data.events) {
    std::fprintf(stderr, "  %s %s %s[%s]\n", nudge::format_time(e.ts).c_str(), e.contact.c_str(),
                 e.type.c_str(), e.key.c_str());
  }
  std::fprintf(stderr, "end: %s\n", nudge::format_time(data.end).c_str());
}

// The input being run, for mismatch() to print.
const nudge::program* current_program = nullptr;
const input* current_input = nullptr;

struct outcome {
  bool cycle = false;  // a rule_cycle_error ended the run
  std::vector<nudge::due_action> actions;
  std::map<std::string, nudge::contact_state> states;
  std::vector<nudge::rule_stats> stats;
  std::vector<nudge::workflow_stats> workflow_stats;
};

std::string describe(const nudge::due_action& a) {
  return fmt::format("{} {} {}/{} {}({}) #{:016x}", nudge::format_time(a.ts), a.contact, a.rule,
                     a.step, a.action(), a.arg, a.idempotency_key);
}

[[noreturn]] void mismatch(const char* what, const char* part, const outcome& x, const outcome& y) {
  std::fprintf(stderr, "differential mismatch: %s: the %s differ\n", what, part);
  if (current_program != nullptr && current_input != nullptr) {
    print_input(*current_program, *current_input);
  }
  for (const auto* o : {&x, &y}) {
    std::fprintf(stderr, "-- %s, %zu actions:\n",
                 o->cycle ? "stopped by a rule cycle" : "completed", o->actions.size());
    for (const auto& a : o->actions) {
      std::fprintf(stderr, "  %s\n", describe(a).c_str());
    }
  }
  __builtin_trap();
}

void compare(const char* what, const outcome& x, const outcome& y, bool with_stats) {
  if (x.cycle != y.cycle) {
    mismatch(what, "rule cycle reports", x, y);
  }
  if (x.cycle) {
    return;  // the batch that met the cycle changed nothing; earlier batches may have landed
  }
  if (x.actions != y.actions) {
    mismatch(what, "actions", x, y);
  }
  if (x.states != y.states) {
    mismatch(what, "final contact states", x, y);
  }
  if (with_stats && x.stats != y.stats) {
    mismatch(what, "rule statistics", x, y);
  }
  if (with_stats && x.workflow_stats != y.workflow_stats) {
    mismatch(what, "workflow statistics", x, y);
  }
}

struct engine_run {
  explicit engine_run(std::shared_ptr<const nudge::program> p, const input& data)
      : program{std::move(p)},
        store{std::make_unique<nudge::memory_store>()},
        engine{std::make_unique<nudge::engine>(program, store.get())} {
    engine->upsert_contacts(data.profiles);
  }
  // Runs one call, keeping its actions; false once a rule cycle stopped the run.
  template <class Call>
  bool step(outcome& out, Call&& call) {
    try {
      auto due = call();
      out.actions.insert(out.actions.end(), due.begin(), due.end());
      return true;
    } catch (const nudge::rule_cycle_error&) {
      out.cycle = true;
      return false;
    }
  }
  // Continues in a fresh engine and store loaded from a snapshot of this one, as a host
  // restarting between batches would: the snapshot must carry everything that matters.
  void restart() {
    const nudge::snapshot before = nudge::take_snapshot(*engine, *store);
    std::ostringstream bytes;
    nudge::write_snapshot(bytes, before);
    nudge::snapshot loaded;
    try {
      loaded = nudge::parse_snapshot(bytes.str(), program.get());
    } catch (const nudge::snapshot_error& e) {
      std::fprintf(stderr, "snapshot refused on reading it back: %s\n", e.what());
      __builtin_trap();
    }
    if (!(loaded == before)) {
      std::fprintf(stderr, "snapshot round trip changed the state\n");
      __builtin_trap();
    }
    auto fresh_store = std::make_unique<nudge::memory_store>();
    auto fresh = std::make_unique<nudge::engine>(program, fresh_store.get());
    fresh_store->save(loaded.states);
    fresh->restore(std::move(loaded.stats), std::move(loaded.counters),
                   std::move(loaded.workflows));
    engine = std::move(fresh);
    store = std::move(fresh_store);
  }
  void finish(outcome& out) {
    store->for_each([&](const nudge::contact_state& s) { out.states.emplace(s.contact.id, s); });
    out.stats = engine->stats();
    out.workflow_stats = engine->workflow_stats();
  }
  std::shared_ptr<const nudge::program> program;
  std::unique_ptr<nudge::memory_store> store;
  std::unique_ptr<nudge::engine> engine;  // uses *store
};

outcome run_whole(const std::shared_ptr<const nudge::program>& p, const input& data) {
  engine_run run{p, data};
  outcome out;
  if (run.step(out, [&] { return run.engine->process(data.events, data.end); })) {
    run.finish(out);
  }
  return out;
}

// Batches end only where the next event has a later time. Each batch is processed with a `now`
// in [its last event, the next event - 1s], optionally followed by advance() to a later such
// instant: timers due before the next event fire before it, as they do in one batch.
// `cut` says whether to end a batch before event i (a valid cut point).
// `restart` says whether to continue from a snapshot in a fresh engine after a batch.
template <class Cut, class Now, class Restart>
outcome run_split(const std::shared_ptr<const nudge::program>& p, const input& data, Cut&& cut,
                  Now&& choose_now, Restart&& restart) {
  engine_run run{p, data};
  outcome out;
  const auto& ev = data.events;
  std::size_t begin = 0;
  for (std::size_t i = 1; i <= ev.size(); ++i) {
    const bool last = i == ev.size();
    if (!last && (ev[i].ts == ev[i - 1].ts || !cut(i))) {
      continue;
    }
    const std::span<const nudge::event> batch{ev.data() + begin, i - begin};
    const auto limit = last ? data.end : ev[i].ts - nudge::seconds(1);
    const auto now = choose_now(batch.back().ts, limit);
    if (!run.step(out, [&] { return run.engine->process(batch, now); })) {
      return out;
    }
    const auto later = choose_now(now, limit);
    if (later != now && !run.step(out, [&] { return run.engine->advance(later); })) {
      return out;
    }
    if (restart()) {
      run.restart();
    }
    begin = i;
  }
  if (!run.step(out, [&] { return run.engine->advance(data.end); })) {
    return out;
  }
  run.finish(out);
  return out;
}

// The pure function per contact; the actions are merged in the engine's order: by due time,
// then contact id, each contact's in emission order.
outcome run_evaluate(const nudge::program& p, const input& data) {
  outcome out;
  std::vector<std::pair<std::size_t, nudge::due_action>> all;
  for (const auto& id : data.contact_ids) {
    std::vector<nudge::event> mine;
    for (const auto& e : data.events) {
      if (e.contact == id) {
        mine.push_back(e);
      }
    }
    nudge::contact profile{.id = id};
    const auto given = std::find_if(data.profiles.begin(), data.profiles.end(),
                                    [&](const nudge::contact& c) { return c.id == id; });
    if (given == data.profiles.end() && mine.empty()) {
      continue;  // the engine never creates this contact
    }
    if (given != data.profiles.end()) {
      profile = *given;
    }
    try {
      auto result = nudge::evaluate(p, p.new_state(std::move(profile)), mine, data.end);
      for (auto& a : result.actions) {
        all.emplace_back(all.size(), std::move(a));
      }
      out.states.emplace(id, std::move(result.state));
    } catch (const nudge::rule_cycle_error&) {
      out.cycle = true;
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& x, const auto& y) {
    if (x.second.ts != y.second.ts) {
      return x.second.ts < y.second.ts;
    }
    return x.second.contact < y.second.contact;
  });
  for (auto& [_, a] : all) {
    out.actions.push_back(std::move(a));
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
  FuzzedDataProvider in{bytes, size};
  std::shared_ptr<const nudge::program> program;
  nudge::rule_set generated = rules(in);
  input data = events(in);
  workflows_and_policy(in, generated, data.profiles);
  if (has_delayed_loop(generated)) {
    return -1;  // not added to the corpus
  }
  try {
    program = nudge::program::compile(std::move(generated));
  } catch (const nudge::rule_error& e) {
    // A cycle compilation can see (src/core/compile/cycle_check.cpp) is refused by design; it would
    // only reach the run-time limit.
    if (std::all_of(e.diagnostics().begin(), e.diagnostics().end(),
                    [](const nudge::diagnostic& d) { return d.code == "rule_cycle"; })) {
      return -1;
    }
    // The generator only builds valid programs: a refusal is a bug here or in the validator.
    std::fprintf(stderr, "generated program refused: %s\n", e.what());
    __builtin_trap();
  }
  current_program = program.get();
  current_input = &data;
  static const bool print = std::getenv("NUDGE_FUZZ_PRINT") != nullptr;
  if (print) {
    print_input(*program, data);
  }

  const outcome whole = run_whole(program, data);

  // Cut choices and `now` offsets come from the rest of the input, then from a fixed pattern.
  const auto cut_bytes = in.ConsumeBytes<std::uint8_t>(64);
  std::size_t next_byte = 0;
  auto byte = [&]() -> std::uint8_t {
    const std::uint8_t b = cut_bytes.empty() ? std::uint8_t{0x5a} : cut_bytes[next_byte];
    next_byte = cut_bytes.empty() ? 0 : (next_byte + 1) % cut_bytes.size();
    return b;
  };
  auto somewhere = [&](nudge::time_point from, nudge::time_point to) {
    switch (byte() % 4) {
      case 0:
        return from;
      case 1:
        return to;
      default: {
        const auto span = (to - from).count();
        return from + nudge::seconds(span <= 0 ? 0 : static_cast<std::int64_t>(byte()) % span);
      }
    }
  };
  const outcome chosen = run_split(
      program, data, [&](std::size_t) { return byte() % 2 == 0; }, somewhere,
      [&] { return byte() % 4 == 0; });
  compare("one batch vs batches cut where the input says (some restarted from a snapshot)", whole,
          chosen, true);

  const outcome every = run_split(
      program, data, [](std::size_t) { return true; },
      [](nudge::time_point, nudge::time_point to) { return to; }, [] { return false; });
  compare("one batch vs every instant its own batch", whole, every, true);

  const outcome pure = run_evaluate(*program, data);
  compare("engine vs evaluate per contact", whole, pure, false);
  return 0;
}
