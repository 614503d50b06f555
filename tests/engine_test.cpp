// The engine: batches over the host's store and sink, determinism, split invariance, atomic
// failure, the due-time index, statistics.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::t0;

std::string line(const nudge::due_action& a) {
  return fmt::format("{} {} {} {}({}) #{:016x}", nudge::format_time(a.ts), a.contact, a.rule,
                     a.action(), a.arg, a.idempotency_key);
}
std::vector<std::string> lines(const std::vector<nudge::due_action>& actions) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    out.push_back(line(a));
  }
  return out;
}

// A memory store whose calls can be made to fail, and which counts loads.
class test_store final : public nudge::store {
 public:
  std::optional<nudge::contact_state> load(std::string_view contact) override {
    ++loads;
    if (contact == fail_load_for) {
      throw std::runtime_error("load refused");
    }
    return inner.load(contact);
  }
  void save(std::span<nudge::contact_state> states) override {
    if (fail_save) {
      throw std::runtime_error("disk full");
    }
    inner.save(states);
  }
  std::vector<std::string> due(nudge::time_point t) override {
    if (fail_due) {
      throw std::runtime_error("index lost");
    }
    return inner.due(t);
  }

  std::map<std::string, nudge::contact_state> snapshot() const {
    std::map<std::string, nudge::contact_state> out;
    inner.for_each([&](const nudge::contact_state& s) { out.emplace(s.contact.id, s); });
    return out;
  }

  nudge::memory_store inner;
  std::string fail_load_for;
  bool fail_save = false;
  bool fail_due = false;
  int loads = 0;
};

class test_sink final : public nudge::sink {
 public:
  void deliver(std::span<const nudge::due_action> actions) override {
    ++calls;
    if (fail) {
      throw std::runtime_error("boom");
    }
    for (const auto& a : actions) {
      delivered.push_back(line(a));
    }
  }
  bool fail = false;
  int calls = 0;
  std::vector<std::string> delivered;
};

// A small shop: welcome drip, abandoned cart, win-back, VIP tag and coupon, owner by hash.
nudge::rule_set shop_rules() {
  nudge::rule_set rs;
  rs.owner_groups["reps"] = {"anna", "bartek", "celina"};
  rs.rules.push_back(
      nudge::rule_builder("welcome")
          .on(nudge::on("signup"))
          .then(nudge::send_email("welcome"))
          .then(nudge::send_email("follow_up") | nudge::after{nudge::days(2)} |
                nudge::only_if{nudge::not_happened(nudge::on("purchase")).since_trigger()}));
  rs.rules.push_back(nudge::rule_builder("cart")
                         .on(nudge::on("cart"))
                         .check_after(nudge::hours(1))
                         .only_if(nudge::not_happened(nudge::on("purchase")).since_trigger())
                         .then(nudge::send_email("cart_reminder"))
                         .once_per(nudge::days(1)));
  rs.rules.push_back(nudge::rule_builder("winback")
                         .on(nudge::on("purchase"))
                         .check_after(nudge::days(7))
                         .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::days(7)))
                         .then(nudge::send_email("winback")));
  rs.rules.push_back(
      nudge::rule_builder("vip")
          .on(nudge::on("purchase"))
          .only_if(nudge::happened(nudge::on("purchase")).within(nudge::days(10)).at_least(3))
          .then(nudge::add_tag("vip") | nudge::notify_host{}));
  rs.rules.push_back(nudge::rule_builder("vip_coupon")
                         .on(nudge::on("tag_added", "vip"))
                         .then(nudge::generate_coupon("vip"))
                         .at_most(1, nudge::days(30)));
  rs.rules.push_back(nudge::rule_builder("owner")
                         .on(nudge::on("page_view", "/pricing"))
                         .then(nudge::assign_owner("reps") | nudge::notify_host{})
                         .once());
  return rs;
}

// Events for a few contacts over about three weeks, in time order, many sharing a timestamp.
std::vector<nudge::event> random_events(std::uint64_t seed, int count) {
  std::mt19937_64 rng{seed};
  const char* types[] = {"signup", "cart", "purchase", "page_view", "page_view", "email_open"};
  const char* urls[] = {"/", "/pricing", "/blog"};
  std::vector<nudge::event> out;
  auto at = t0;
  for (int i = 0; i < count; ++i) {
    if (rng() % 3 != 0) {  // a third of the events share the previous timestamp
      at += nudge::minutes(static_cast<std::int64_t>(rng() % 360));
    }
    auto e = ev(fmt::format("c{}", rng() % 6), types[rng() % std::size(types)], at);
    if (e.type == "page_view") {
      e.key = urls[rng() % std::size(urls)];
    }
    out.push_back(std::move(e));
  }
  return out;
}

struct run_result {
  std::vector<std::string> actions;
  std::map<std::string, nudge::contact_state> states;
  std::vector<nudge::rule_stats> stats;
};

run_result run_at_once(const std::shared_ptr<const nudge::program>& p,
                       const std::vector<nudge::event>& events, nudge::time_point end) {
  test_store store;
  nudge::engine engine{p, &store};
  run_result r;
  r.actions = lines(engine.process(events, events.back().ts));
  for (const auto& l : lines(engine.advance(end))) {
    r.actions.push_back(l);
  }
  r.states = store.snapshot();
  r.stats = engine.stats();
  return r;
}

// Splits only between distinct timestamps: a batch processed with now = T must hold every
// event stamped T, else a later event at T would come after the timers due at T.
run_result run_in_batches(const std::shared_ptr<const nudge::program>& p,
                          const std::vector<nudge::event>& events, nudge::time_point end,
                          const std::set<std::size_t>& cuts) {
  test_store store;
  nudge::engine engine{p, &store};
  run_result r;
  auto take = [&](const std::vector<nudge::due_action>& due) {
    for (const auto& l : lines(due)) {
      r.actions.push_back(l);
    }
  };
  std::size_t begin = 0;
  for (std::size_t i = 1; i <= events.size(); ++i) {
    const bool last = i == events.size();
    if (!last && !(cuts.count(i) > 0 && events[i].ts != events[i - 1].ts)) {
      continue;
    }
    std::span<const nudge::event> batch{events.data() + begin, i - begin};
    take(engine.process(batch, batch.back().ts));
    if (!last) {
      take(engine.advance(events[i].ts - nudge::seconds(1)));
    }
    begin = i;
  }
  take(engine.advance(end));
  r.states = store.snapshot();
  r.stats = engine.stats();
  return r;
}

}  // namespace

TEST_CASE("engine: the same input twice gives identical actions, keys and states",
          "[engine][determinism]") {
  auto p = nudge::program::compile(shop_rules());
  const auto events = random_events(7, 300);
  const auto end = events.back().ts + nudge::days(30);
  const auto a = run_at_once(p, events, end);
  const auto b = run_at_once(p, events, end);
  REQUIRE(a.actions.size() > 20);
  CHECK(a.actions == b.actions);
  CHECK(a.states == b.states);
  CHECK(a.stats == b.stats);
  // A program compiled again from the same rules behaves the same.
  const auto c = run_at_once(nudge::program::compile(shop_rules()), events, end);
  CHECK(a.actions == c.actions);
  CHECK(a.states == c.states);
}

TEST_CASE("engine: one batch and many batches with advance between give the same actions",
          "[engine][split]") {
  auto p = nudge::program::compile(shop_rules());
  const std::uint64_t seed = GENERATE(1, 2, 3, 42, 2024);
  const auto events = random_events(seed, 250);
  const auto end = events.back().ts + nudge::days(30);
  const auto whole = run_at_once(p, events, end);
  INFO("seed " << seed << ", " << whole.actions.size() << " actions");
  REQUIRE(whole.actions.size() > 10);

  SECTION("every distinct timestamp its own batch") {
    std::set<std::size_t> cuts;
    for (std::size_t i = 1; i < events.size(); ++i) {
      cuts.insert(i);
    }
    const auto split = run_in_batches(p, events, end, cuts);
    CHECK(split.actions == whole.actions);
    CHECK(split.states == whole.states);
    CHECK(split.stats == whole.stats);
  }
  SECTION("random cuts") {
    std::mt19937_64 rng{seed * 7919};
    std::set<std::size_t> cuts;
    for (int i = 0; i < 12; ++i) {
      cuts.insert(1 + rng() % (events.size() - 1));
    }
    const auto split = run_in_batches(p, events, end, cuts);
    CHECK(split.actions == whole.actions);
    CHECK(split.states == whole.states);
    CHECK(split.stats == whole.stats);
  }
}

TEST_CASE("engine: a batch's actions are sorted by due time, then contact", "[engine]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("hello").on(nudge::on("signup")).then(nudge::send_email("hello")));
  rs.rules.push_back(nudge::rule_builder("later")
                         .on(nudge::on("signup"))
                         .check_after(nudge::hours(1))
                         .then(nudge::send_sms("later")));
  nudge::engine engine{nudge::program::compile(rs)};
  auto due = engine.process(
      std::vector{ev("zoe", "signup", t0), ev("amy", "signup", t0 + nudge::minutes(30)),
                  ev("bob", "signup", t0)},
      t0 + nudge::hours(2));
  std::vector<std::string> got;
  for (const auto& a : due) {
    got.push_back(fmt::format("{} {} {}", nudge::format_time(a.ts), a.contact, a.arg));
  }
  CHECK(got == std::vector<std::string>{
                   "2024-01-01T00:00:00Z bob hello",
                   "2024-01-01T00:00:00Z zoe hello",
                   "2024-01-01T00:30:00Z amy hello",
                   "2024-01-01T01:00:00Z bob later",
                   "2024-01-01T01:00:00Z zoe later",
                   "2024-01-01T01:30:00Z amy later",
               });
  CHECK(std::is_sorted(due.begin(), due.end(), nudge::due_order));
}

TEST_CASE("engine: due_order sorts by due time then contact id and stably keeps emission order",
          "[engine]") {
  nudge::due_action a;
  a.contact = "bob";
  a.ts = t0;
  nudge::due_action b = a;
  b.contact = "amy";
  nudge::due_action later = a;
  later.contact = "al";
  later.ts = t0 + nudge::seconds(1);
  CHECK(nudge::due_order(b, a));  // same second: by contact id
  CHECK_FALSE(nudge::due_order(a, b));
  CHECK(nudge::due_order(a, later));  // the earlier second first, whatever the id
  CHECK_FALSE(nudge::due_order(later, b));
  nudge::due_action again = a;  // the same contact and second: neither before the other
  again.arg = "second";
  CHECK_FALSE(nudge::due_order(a, again));
  CHECK_FALSE(nudge::due_order(again, a));

  std::vector<nudge::due_action> actions{later, again, a, b};
  std::stable_sort(actions.begin(), actions.end(), nudge::due_order);
  std::vector<std::string> got;
  for (const auto& x : actions) {
    got.push_back(fmt::format("{} {}", x.contact, x.arg));
  }
  CHECK(got == std::vector<std::string>{"amy ", "bob second", "bob ", "al "});
}

TEST_CASE("engine: a throwing sink leaves store, statistics and counters as they were",
          "[engine][atomic]") {
  nudge::rule_set rs = shop_rules();
  rs.rules.push_back(nudge::rule_builder("rr")
                         .on(nudge::on("signup"))
                         .then(nudge::assign_owner("reps", nudge::owner_pick::round_robin) |
                               nudge::notify_host{}));
  auto p = nudge::program::compile(rs);
  test_store store;
  test_sink sink;
  nudge::engine engine{p, &store, &sink};
  engine.process(std::vector{ev("ann", "cart", t0), ev("bob", "purchase", t0)}, t0);
  const auto states_before = store.snapshot();
  const auto stats_before = engine.stats();
  REQUIRE(states_before.size() == 2);

  const std::vector<nudge::event> batch{ev("ann", "signup", t0 + nudge::hours(2)),
                                        ev("cid", "signup", t0 + nudge::hours(3))};
  sink.fail = true;
  try {
    engine.process(batch, t0 + nudge::days(8));
    FAIL("no error");
  } catch (const nudge::callback_error& e) {
    CHECK(e.callback() == "sink.deliver");
    CHECK(e.contact().empty());
    CHECK(std::string{e.what()} == "sink.deliver failed: boom");
    try {
      std::rethrow_if_nested(e);
      FAIL("nothing nested");
    } catch (const std::runtime_error& original) {
      CHECK(std::string{original.what()} == "boom");
    }
  }
  CHECK(store.snapshot() == states_before);
  CHECK(engine.stats() == stats_before);
  CHECK(sink.delivered.empty());

  // Delivered later, the batch gives what an engine that never failed gives, keys included.
  sink.fail = false;
  auto retried = lines(engine.process(batch, t0 + nudge::days(8)));
  nudge::engine reference{p};
  reference.process(std::vector{ev("ann", "cart", t0), ev("bob", "purchase", t0)}, t0);
  CHECK(retried == lines(reference.process(batch, t0 + nudge::days(8))));
  CHECK(sink.delivered == retried);
  // The round-robin counter did not move in the failed batch: ann still gets the first rep.
  CHECK(engine.find_contact("ann")->owner == "anna");
  CHECK(engine.find_contact("cid")->owner == "bartek");
}

TEST_CASE("engine: a failing store leaves everything as it was", "[engine][atomic]") {
  auto p = nudge::program::compile(shop_rules());
  test_store store;
  test_sink sink;
  nudge::engine engine{p, &store, &sink};
  engine.process(std::vector{ev("ann", "cart", t0), ev("bob", "purchase", t0)}, t0);
  const auto states_before = store.snapshot();
  const auto stats_before = engine.stats();
  const auto delivered_before = sink.delivered;
  const std::vector<nudge::event> batch{ev("ann", "signup", t0 + nudge::hours(2)),
                                        ev("bob", "signup", t0 + nudge::hours(3))};

  const auto check_unchanged = [&] {
    CHECK(store.snapshot() == states_before);
    CHECK(engine.stats() == stats_before);
  };
  SECTION("load") {
    store.fail_load_for = "bob";
    try {
      engine.process(batch, t0 + nudge::days(8));
      FAIL("no error");
    } catch (const nudge::callback_error& e) {
      CHECK(e.callback() == "store.load");
      CHECK(e.contact() == "bob");
      CHECK(std::string{e.what()} == "store.load failed for contact \"bob\": load refused");
    }
    check_unchanged();
    CHECK(sink.delivered == delivered_before);
  }
  SECTION("due") {
    store.fail_due = true;
    CHECK_THROWS_WITH(engine.advance(t0 + nudge::days(8)), "store.due failed: index lost");
    check_unchanged();
    CHECK(sink.delivered == delivered_before);
  }
  SECTION("save, after the sink accepted the actions") {
    store.fail_save = true;
    try {
      engine.process(batch, t0 + nudge::days(8));
      FAIL("no error");
    } catch (const nudge::callback_error& e) {
      CHECK(e.callback() == "store.save");
      CHECK(std::string{e.what()} ==
            fmt::format("store.save failed: disk full (the batch's {} actions were delivered; no "
                        "state was saved: process the batch again and drop duplicates by "
                        "idempotency key)",
                        sink.delivered.size() - delivered_before.size()));
    }
    check_unchanged();
    REQUIRE(sink.delivered.size() > delivered_before.size());
    // Processing the batch again repeats exactly the delivered actions, keys included.
    const std::vector<std::string> first_try(
        sink.delivered.begin() + static_cast<std::ptrdiff_t>(delivered_before.size()),
        sink.delivered.end());
    store.fail_save = false;
    CHECK(lines(engine.process(batch, t0 + nudge::days(8))) == first_try);
  }
  SECTION("save, without a sink: nothing was delivered, and the message says only the cause") {
    nudge::engine quiet{p, &store, nullptr};
    store.fail_save = true;
    CHECK_THROWS_WITH(quiet.process(batch, t0 + nudge::days(8)), "store.save failed: disk full");
    CHECK(store.snapshot() == states_before);
  }
}

TEST_CASE("engine: a bad event in the middle of a batch applies nothing", "[engine][atomic]") {
  auto p = nudge::program::compile(shop_rules());
  test_store store;
  test_sink sink;
  nudge::engine engine{p, &store, &sink};
  const auto check_nothing_applied = [&] {
    CHECK(store.snapshot().empty());
    CHECK(sink.calls == 0);
    for (const auto& s : engine.stats()) {
      CHECK(s == nudge::rule_stats{.rule = s.rule});
    }
  };
  SECTION("out of order for its contact, after other contacts' good events") {
    try {
      engine.process(std::vector{ev("ann", "signup", t0 + nudge::hours(1)),
                                 ev("bob", "signup", t0 + nudge::hours(2)),
                                 ev("cid", "signup", t0 + nudge::hours(3)),
                                 ev("bob", "cart", t0 + nudge::hours(1))},
                     t0 + nudge::days(1));
      FAIL("no error");
    } catch (const nudge::input_error& e) {
      CHECK(e.event_index() == 3);
      CHECK(e.contact() == "bob");
      CHECK(std::string{e.what()} ==
            "event 3 (contact \"bob\"): out of order: 2024-01-01T01:00:00Z (1704070800) is before "
            "2024-01-01T02:00:00Z (1704074400), the contact's last applied event or timer");
    }
    check_nothing_applied();
  }
  SECTION("an unknown type") {
    CHECK_THROWS_WITH(engine.process(std::vector{ev("ann", "signup", t0), ev("bob", "signup", t0),
                                                 ev("ann", "REFUND", t0)},
                                     t0),
                      "event 2 (contact \"ann\"): unknown event type \"REFUND\"");
    check_nothing_applied();
  }
  SECTION("an empty contact id") {
    CHECK_THROWS_WITH(
        engine.process(std::vector{ev("ann", "signup", t0), ev("", "signup", t0)}, t0),
        "event 1 (contact \"\"): the contact id is empty");
    check_nothing_applied();
  }
  SECTION("an event after now") {
    CHECK_THROWS_WITH(
        engine.process(
            std::vector{ev("ann", "signup", t0), ev("bob", "signup", t0 + nudge::seconds(1))}, t0),
        "event 1 (contact \"bob\"): time 2024-01-01T00:00:01Z is after now "
        "(2024-01-01T00:00:00Z)");
    check_nothing_applied();
  }
  SECTION("a non-finite decimal prop") {
    auto bad = ev("bob", "purchase", t0, "o1");
    bad.props["amount"] = std::numeric_limits<double>::quiet_NaN();
    CHECK_THROWS_WITH(engine.process(std::vector{ev("ann", "signup", t0), bad}, t0),
                      "event 1 (contact \"bob\"): props/amount is not a finite number");
    bad.props["amount"] = -std::numeric_limits<double>::infinity();
    CHECK_THROWS_WITH(engine.process(std::vector{ev("ann", "signup", t0), bad}, t0),
                      "event 1 (contact \"bob\"): props/amount is not a finite number");
    check_nothing_applied();
  }
  SECTION("a time outside the supported range") {
    CHECK_THROWS_WITH(
        engine.process(std::vector{ev("ann", "signup", t0),
                                   ev("bob", "signup", nudge::min_time - nudge::seconds(1))},
                       t0),
        "event 1 (contact \"bob\"): time -2208988801 is outside the supported range "
        "(1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z)");
    check_nothing_applied();
    // Past the input range (issue 13: a year-9999 event set a timer no store could read back).
    CHECK_THROWS_WITH(
        engine.process(std::vector{ev("ann", "signup", t0),
                                   ev("bob", "signup", nudge::max_input_time + nudge::seconds(1))},
                       nudge::max_input_time),
        "event 1 (contact \"bob\"): time 247090953600 is outside the supported range "
        "(1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z)");
    check_nothing_applied();
  }
  SECTION("a rule cycle") {
    nudge::rule_set rs;
    rs.rules.push_back(nudge::rule_builder("ping")
                           .on(nudge::on("stage_entered", "a"))
                           .then(nudge::set_stage("b")));
    // The condition always holds here, but compilation cannot know: the run-time limit stops it
    // (an unconditional cycle is refused by program::compile).
    rs.rules.push_back(nudge::rule_builder("pong")
                           .on(nudge::on("stage_entered", "b"))
                           .only_if(nudge::stage().eq("b"))
                           .then(nudge::set_stage("a")));
    nudge::engine cyclic{nudge::program::compile(rs), &store, &sink};
    CHECK_THROWS_AS(
        cyclic.process(std::vector{ev("ann", "signup", t0), ev("bob", "stage_entered", t0, "a")},
                       t0),
        nudge::rule_cycle_error);
    check_nothing_applied();
  }
}

TEST_CASE("engine: more events for one contact than max_events_per_contact apply nothing",
          "[engine][atomic][limits]") {
  auto p = nudge::program::compile(shop_rules());
  test_store store;
  test_sink sink;
  nudge::engine engine{p, &store, &sink, {.max_events_per_contact = 3}};
  std::vector<nudge::event> batch;
  for (int i = 0; i < 4; ++i) {
    batch.push_back(ev("ann", "page_view", t0 + nudge::minutes(i)));
    batch.push_back(ev("bob", "page_view", t0 + nudge::minutes(i)));
  }
  batch.back().type = "signup";
  try {
    engine.process(batch, t0 + nudge::days(1));
    FAIL("no error");
  } catch (const nudge::input_error& e) {
    CHECK(e.event_index() == 6);  // ann's fourth event
    CHECK(std::string{e.what()} ==
          "event 6 (contact \"ann\"): more than 3 events for one contact in one batch "
          "(engine_options::max_events_per_contact); split the batch");
  }
  CHECK(store.snapshot().empty());
  CHECK(store.loads == 0);  // refused before any contact was loaded
  CHECK(sink.calls == 0);

  // Split in two, the same events go through, with the actions of an unlimited engine.
  nudge::engine unlimited{p, nullptr, nullptr, {.max_events_per_contact = 0}};
  const auto expected = lines(unlimited.process(batch, t0 + nudge::days(3)));
  CHECK_FALSE(expected.empty());
  auto got = lines(engine.process(std::span{batch}.first(4), t0 + nudge::minutes(1)));
  const auto rest = lines(engine.process(std::span{batch}.subspan(4), t0 + nudge::days(3)));
  got.insert(got.end(), rest.begin(), rest.end());
  CHECK(got == expected);
}

TEST_CASE("engine: unknown contacts are created, or refused when the host says so",
          "[engine][contacts]") {
  auto p = nudge::program::compile(shop_rules());
  nudge::memory_store store;
  SECTION("created by default") {
    nudge::engine engine{p, &store};
    engine.process(std::vector{ev("new", "signup", t0)}, t0);
    CHECK(store.size() == 1);
    CHECK(engine.find_contact("new")->status == "lead");
  }
  SECTION("refused") {
    nudge::engine engine{p, &store, nullptr, {.create_unknown_contacts = false}};
    engine.upsert_contact({.id = "known"});
    CHECK_THROWS_WITH(
        engine.process(std::vector{ev("known", "signup", t0), ev("zed", "signup", t0)}, t0),
        "event 1 (contact \"zed\"): unknown contact");
    CHECK(store.find("known")->events_applied == 0);
  }
}

TEST_CASE("engine: upserting a profile keeps the contact's history and timers",
          "[engine][contacts]") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("nudge_leads")
                         .on(nudge::on("signup"))
                         .check_after(nudge::days(1))
                         .only_if(nudge::status().eq("lead"))
                         .then(nudge::send_email("convert")));
  nudge::memory_store store;
  nudge::engine engine{nudge::program::compile(rs), &store};
  engine.process(std::vector{ev("ann", "signup", t0), ev("bob", "signup", t0)}, t0);
  engine.upsert_contact({.id = "bob", .status = "customer"});
  CHECK(store.find("bob")->timers.size() == 1);
  CHECK(store.find("bob")->events_applied == 1);
  auto due = engine.advance(t0 + nudge::days(1));
  REQUIRE(due.size() == 1);
  CHECK(due[0].contact == "ann");
  CHECK(engine.find_contact("bob")->status == "customer");
  CHECK_FALSE(engine.find_contact("nobody").has_value());
}

TEST_CASE("engine: advance loads only the contacts with a timer due", "[engine][due]") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("later")
                         .on(nudge::on("cart"))
                         .check_after(nudge::days(1))
                         .then(nudge::send_email("cart_reminder")));
  test_store store;
  nudge::engine engine{nudge::program::compile(rs), &store};
  std::vector<nudge::event> events;
  for (int i = 0; i < 100; ++i) {
    events.push_back(ev(fmt::format("c{:03}", i), "signup", t0));
  }
  events.push_back(ev("c007", "cart", t0 + nudge::hours(1)));
  events.push_back(ev("c042", "cart", t0 + nudge::hours(2)));
  engine.process(events, t0 + nudge::hours(2));
  CHECK(store.inner.due(t0 + nudge::days(2)) == std::vector<std::string>{"c007", "c042"});

  store.loads = 0;
  CHECK(engine.advance(t0 + nudge::days(1)).empty());  // nothing due yet
  CHECK(store.loads == 0);
  auto due = engine.advance(t0 + nudge::days(1) + nudge::hours(1));
  CHECK(store.loads == 1);
  REQUIRE(due.size() == 1);
  CHECK(due[0].contact == "c007");
  due = engine.advance(t0 + nudge::days(3));
  CHECK(store.loads == 2);
  REQUIRE(due.size() == 1);
  CHECK(due[0].contact == "c042");
  CHECK(store.inner.due(t0 + nudge::days(100)).empty());
}

TEST_CASE("engine: statistics count triggers, checks and emissions with first and last time",
          "[engine][stats]") {
  auto p = nudge::program::compile(shop_rules());
  nudge::engine engine{p};
  engine.process(std::vector{ev("ann", "purchase", t0), ev("ann", "purchase", t0 + nudge::days(1)),
                             ev("ann", "purchase", t0 + nudge::days(2)),
                             ev("bob", "cart", t0 + nudge::days(2)),
                             ev("bob", "cart", t0 + nudge::days(2) + nudge::minutes(5))},
                 t0 + nudge::days(2) + nudge::minutes(5));
  engine.advance(t0 + nudge::days(30));
  const auto& stats = engine.stats();
  REQUIRE(stats.size() == p->rule_count());
  const auto& vip = stats[*p->find_rule("vip")];
  CHECK(vip == nudge::rule_stats{.rule = "vip",
                                 .triggered = 3,
                                 .passed = 1,
                                 .failed = 2,
                                 .suppressed = 0,
                                 .emitted = 1,
                                 .first = t0,
                                 .last = t0 + nudge::days(2)});
  const auto& coupon = stats[*p->find_rule("vip_coupon")];
  CHECK(coupon == nudge::rule_stats{.rule = "vip_coupon",
                                    .triggered = 1,
                                    .passed = 1,
                                    .emitted = 1,
                                    .first = t0 + nudge::days(2),
                                    .last = t0 + nudge::days(2)});
  const auto& winback = stats[*p->find_rule("winback")];
  CHECK(winback == nudge::rule_stats{.rule = "winback",
                                     .triggered = 3,
                                     .passed = 1,
                                     .failed = 2,
                                     .emitted = 1,
                                     .first = t0,
                                     .last = t0 + nudge::days(9)});
  const auto& cart = stats[*p->find_rule("cart")];
  CHECK(cart ==
        nudge::rule_stats{.rule = "cart",
                          .triggered = 2,
                          .passed = 1,
                          .suppressed = 1,
                          .emitted = 1,
                          .first = t0 + nudge::days(2),
                          .last = t0 + nudge::days(2) + nudge::hours(1) + nudge::minutes(5)});
}

TEST_CASE("engine: a null program is refused", "[engine]") {
  CHECK_THROWS_WITH(nudge::engine{nullptr}, "nudge::engine: program is null");
}
