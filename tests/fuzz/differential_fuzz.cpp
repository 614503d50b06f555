// Differential fuzz target: the fuzz input chooses a small valid program (rules built with the
// C++ builder), a few contacts and their events; the same input then runs three ways:
//
//   (a) one batch through nudge::engine on a memory_store: process(all events, end);
//   (b) split into batches at instants where a split is valid (after every event of an instant,
//       docs/design.md "The clock rule"), with advance(now) calls between, ending with
//       advance(end); once with cuts the input picks and once with every instant its own batch;
//   (c) nudge::evaluate per contact, from the contact's fresh state, with now = end.
//
// All runs must give identical due actions (contact, rule, action, argument, due time,
// idempotency key), identical final contact states and (a, b) identical rule statistics. A
// rule cycle (internal actions cascading past the depth limit) must be reported by every run.
// Any difference prints both sides and traps.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fuzzer/FuzzedDataProvider.h>

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
    a = std::move(a) | nudge::only_when{condition(in, 1)};
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
    b.when(match(in));
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
  return rs;
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
        .at = at};
    if (in.ConsumeIntegralInRange(0, 3) != 0) {
      e.key = name(in);
    }
    out.events.push_back(std::move(e));
  }
  // Long enough after the last event for every delayed check and delayed action to come due.
  out.end = at + nudge::days(5) + nudge::seconds(in.ConsumeIntegralInRange(0, 2));
  return out;
}

struct outcome {
  bool cycle = false;  // a rule_cycle_error ended the run
  std::vector<nudge::due_action> actions;
  std::map<std::string, nudge::contact_state> states;
  std::vector<nudge::rule_stats> stats;
};

std::string describe(const nudge::due_action& a) {
  return fmt::format("{} {} {} {}({}) #{:016x}", nudge::format_time(a.due_at), a.contact, a.rule,
                     a.verb(), a.arg, a.idempotency_key);
}

[[noreturn]] void mismatch(const char* what, const outcome& x, const outcome& y) {
  std::fprintf(stderr, "differential mismatch: %s\n", what);
  for (const auto* o : {&x, &y}) {
    std::fprintf(stderr, "-- %s, %zu actions:\n", o->cycle ? "cycle" : "completed",
                 o->actions.size());
    for (const auto& a : o->actions) {
      std::fprintf(stderr, "  %s\n", describe(a).c_str());
    }
  }
  __builtin_trap();
}

void compare(const char* what, const outcome& x, const outcome& y, bool with_stats) {
  if (x.cycle != y.cycle) {
    mismatch(what, x, y);
  }
  if (x.cycle) {
    return;  // the batch that met the cycle changed nothing; earlier batches may have landed
  }
  if (x.actions != y.actions) {
    mismatch(what, x, y);
  }
  if (x.states != y.states) {
    mismatch(what, x, y);  // (the actions printed are equal; the states differ)
  }
  if (with_stats && x.stats != y.stats) {
    mismatch(what, x, y);
  }
}

struct engine_run {
  explicit engine_run(const std::shared_ptr<const nudge::program>& p, const input& data)
      : engine{p, &store} {
    engine.upsert_contacts(data.profiles);
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
  void finish(outcome& out) {
    store.for_each([&](const nudge::contact_state& s) { out.states.emplace(s.contact.id, s); });
    out.stats = engine.stats();
  }
  nudge::memory_store store;
  nudge::engine engine;
};

outcome run_whole(const std::shared_ptr<const nudge::program>& p, const input& data) {
  engine_run run{p, data};
  outcome out;
  if (run.step(out, [&] { return run.engine.process(data.events, data.end); })) {
    run.finish(out);
  }
  return out;
}

// Batches end only where the next event has a later time. Each batch is processed with a `now`
// in [its last event, the next event - 1s], optionally followed by advance() to a later such
// instant: timers due before the next event fire before it, as they do in one batch.
// `cut` says whether to end a batch before event i (a valid cut point).
template <class Cut, class Now>
outcome run_split(const std::shared_ptr<const nudge::program>& p, const input& data, Cut&& cut,
                  Now&& choose_now) {
  engine_run run{p, data};
  outcome out;
  const auto& ev = data.events;
  std::size_t begin = 0;
  for (std::size_t i = 1; i <= ev.size(); ++i) {
    const bool last = i == ev.size();
    if (!last && (ev[i].at == ev[i - 1].at || !cut(i))) {
      continue;
    }
    const std::span<const nudge::event> batch{ev.data() + begin, i - begin};
    const auto limit = last ? data.end : ev[i].at - nudge::seconds(1);
    const auto now = choose_now(batch.back().at, limit);
    if (!run.step(out, [&] { return run.engine.process(batch, now); })) {
      return out;
    }
    const auto later = choose_now(now, limit);
    if (later != now && !run.step(out, [&] { return run.engine.advance(later); })) {
      return out;
    }
    begin = i;
  }
  if (!run.step(out, [&] { return run.engine.advance(data.end); })) {
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
    if (x.second.due_at != y.second.due_at) {
      return x.second.due_at < y.second.due_at;
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
  try {
    program = nudge::program::compile(rules(in));
  } catch (const nudge::rule_error& e) {
    // The generator only builds valid programs: a refusal is a bug here or in the validator.
    std::fprintf(stderr, "generated program refused: %s\n", e.what());
    __builtin_trap();
  }
  const input data = events(in);

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
      program, data, [&](std::size_t) { return byte() % 2 == 0; }, somewhere);
  compare("one batch vs batches cut where the input says", whole, chosen, true);

  const outcome every = run_split(
      program, data, [](std::size_t) { return true; },
      [](nudge::time_point, nudge::time_point to) { return to; });
  compare("one batch vs every instant its own batch", whole, every, true);

  const outcome pure = run_evaluate(*program, data);
  compare("engine vs evaluate per contact", whole, pure, false);
  return 0;
}
