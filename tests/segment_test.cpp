// Dynamic segments: membership kept exact to the second by flip timers, segment events that
// rules trigger on, windowed aggregates (count, sum, average, first / last occurrence), the
// in_segment leaf, queries, split invariance, atomicity and snapshots.
#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::compile;
using test_support::ev;
using test_support::lines;
using test_support::strings;
using test_support::t0;
using test_support::with;

using nudge::days;
using nudge::hours;
using nudge::seconds;

}  // namespace

TEST_CASE("segment: membership flips at the second the window edge passes", "[segment]") {
  // "visited in the last 7 days": a visit at t0 counts in (t - 7d, t] until t0 + 7d exactly.
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(7))}});
  nudge::engine e{p};
  CHECK(lines(e.process(std::vector{ev("ann", "page_view", t0)}, t0)) ==
        strings{at(t0) + " ann enter_visited send_email(in_visited)"});
  CHECK(e.segment_members("visited") == strings{"ann"});
  CHECK(e.segment_size("visited") == 1);
  // The flip timer is at t0 + 7d: the contact is due then, and not a second earlier.
  CHECK(e.store().due(t0 + days(7) - seconds(1)).empty());
  CHECK(e.store().due(t0 + days(7)) == strings{"ann"});
  CHECK(e.advance(t0 + days(7) - seconds(1)).empty());
  CHECK(e.segment_size("visited") == 1);
  CHECK(lines(e.advance(t0 + days(7))) ==
        strings{at(t0 + days(7)) + " ann exit_visited send_email(out_visited)"});
  CHECK(e.segment_members("visited").empty());
  CHECK(e.segment_size("visited") == 0);
  // Nothing is left pending: no periodic recompute.
  CHECK(e.store().due(nudge::max_time).empty());
}

TEST_CASE("segment: at least 3 visits in 7 days enters on the third and leaves when one expires",
          "[segment]") {
  auto p =
      compile({{"active", nudge::happened(nudge::on("page_view")).within(days(7)).at_least(3)}});
  nudge::engine e{p};
  const std::vector events{ev("ann", "page_view", t0), ev("ann", "page_view", t0 + days(1)),
                           ev("ann", "page_view", t0 + days(2)),
                           ev("ann", "page_view", t0 + days(3))};
  SECTION("four visits: still 3 in the window at t0 + 7d, 2 at t0 + 8d") {
    CHECK(lines(e.process(events, t0 + days(30))) ==
          strings{at(t0 + days(2)) + " ann enter_active send_email(in_active)",
                  at(t0 + days(8)) + " ann exit_active send_email(out_active)"});
  }
  SECTION("three visits: leaves when the first expires") {
    CHECK(lines(e.process(std::span{events.data(), 3}, t0 + days(30))) ==
          strings{at(t0 + days(2)) + " ann enter_active send_email(in_active)",
                  at(t0 + days(7)) + " ann exit_active send_email(out_active)"});
  }
  SECTION("visits of one second leave the window together") {
    const std::vector same{ev("ann", "page_view", t0), ev("ann", "page_view", t0),
                           ev("ann", "page_view", t0), ev("ann", "page_view", t0 + days(1))};
    CHECK(lines(e.process(same, t0 + days(30))) ==
          strings{at(t0) + " ann enter_active send_email(in_active)",
                  at(t0 + days(7)) + " ann exit_active send_email(out_active)"});
  }
}

TEST_CASE("segment: an event at the flip instant is applied first (no exit and re-entry)",
          "[segment][order]") {
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(7))}});
  SECTION("one batch: the visit at t0 + 7d keeps the contact in") {
    nudge::engine e{p};
    CHECK(lines(e.process(
              std::vector{ev("ann", "page_view", t0), ev("ann", "page_view", t0 + days(7))},
              t0 + days(20))) ==
          strings{at(t0) + " ann enter_visited send_email(in_visited)",
                  at(t0 + days(14)) + " ann exit_visited send_email(out_visited)"});
  }
  SECTION("the timer already fired at t0 + 7d: the later batch's visit re-enters") {
    nudge::engine e{p};
    e.process(std::vector{ev("ann", "page_view", t0)}, t0);
    CHECK(lines(e.advance(t0 + days(7))) ==
          strings{at(t0 + days(7)) + " ann exit_visited send_email(out_visited)"});
    CHECK(lines(e.process(std::vector{ev("ann", "page_view", t0 + days(7))}, t0 + days(7))) ==
          strings{at(t0 + days(7)) + " ann enter_visited send_email(in_visited)"});
  }
}

TEST_CASE("segment: sum and average of an event property within a window", "[segment][aggregate]") {
  // ">= 30 minutes in the app per week" and "average order over 100 in 30 days".
  auto p = compile(
      {{"engaged", nudge::sum_of(nudge::on("app_session"), "minutes").within(days(7)).ge(30)},
       {"big_spender",
        nudge::average_of(nudge::on("purchase"), "amount").within(days(30)).gt(100)}});
  nudge::engine e{p};
  const std::vector events{
      with(ev("ann", "app_session", t0), "minutes", 10),
      with(ev("ann", "app_session", t0 + days(2)), "minutes", 25),  // 35 in the week
      ev("ann", "app_session", t0 + days(3)),                       // no property: adds 0
      with(ev("ann", "app_session", t0 + days(8)), "minutes", 5),   // 25 + 5 = 30 again
      with(ev("bob", "purchase", t0), "amount", 150),
      with(ev("bob", "purchase", t0 + days(10)), "amount", 60),  // average 105
      with(ev("bob", "purchase", t0 + days(20)), "amount", 40),  // average 83.3: out
  };
  CHECK(lines(e.process(events, t0 + days(60))) ==
        strings{at(t0) + " bob enter_big_spender send_email(in_big_spender)",
                at(t0 + days(2)) + " ann enter_engaged send_email(in_engaged)",
                at(t0 + days(7)) + " ann exit_engaged send_email(out_engaged)",
                at(t0 + days(8)) + " ann enter_engaged send_email(in_engaged)",
                at(t0 + days(9)) + " ann exit_engaged send_email(out_engaged)",
                at(t0 + days(20)) + " bob exit_big_spender send_email(out_big_spender)"});
  // bob at t0+30d: the 150 leaves; (60 + 40) / 2 = 50; at t0+40d only 40; at t0+50d none.
  CHECK(e.segment_members("big_spender").empty());
}

TEST_CASE("segment: first and last occurrence, and no purchase for 60 days", "[segment]") {
  auto p =
      compile({{"new_visitor", nudge::first_seen(nudge::on("page_view")).within(days(7))},
               {"lapsed", nudge::last_seen(nudge::on("purchase")).older_than(days(60))},
               {"no_purchase_60d", nudge::not_happened(nudge::on("purchase")).within(days(60))}});
  nudge::engine e{p};
  const std::vector events{ev("ann", "page_view", t0), ev("ann", "page_view", t0 + days(5)),
                           ev("ann", "purchase", t0 + days(6))};
  // ann is in no_purchase_60d from her first event until the purchase; a purchase at t0+6d
  // makes her lapsed at exactly t0+66d, and no_purchase_60d again at the same second.
  CHECK(lines(e.process(events, t0 + days(100))) ==
        strings{at(t0) + " ann enter_new_visitor send_email(in_new_visitor)",
                at(t0) + " ann enter_no_purchase_60d send_email(in_no_purchase_60d)",
                at(t0 + days(6)) + " ann exit_no_purchase_60d send_email(out_no_purchase_60d)",
                at(t0 + days(7)) + " ann exit_new_visitor send_email(out_new_visitor)",
                at(t0 + days(66)) + " ann enter_lapsed send_email(in_lapsed)",
                at(t0 + days(66)) + " ann enter_no_purchase_60d send_email(in_no_purchase_60d)"});
}

TEST_CASE("segment: rules read in_segment, segments build on earlier segments", "[segment]") {
  nudge::rule probe = nudge::rule_builder("vip_probe")
                          .on(nudge::on("probe"))
                          .only_if(nudge::in_segment("vip"))
                          .then(nudge::send_sms("vip"));
  auto p = compile(
      {{"buyer", nudge::happened(nudge::on("purchase")).within(days(30))},
       {"vip", nudge::all({nudge::in_segment("buyer"), nudge::has_tag("gold")})}},
      {probe, nudge::rule_builder("gild").on(nudge::on("signup")).then(nudge::add_tag("gold"))});
  nudge::engine e{p};
  const std::vector events{ev("ann", "probe", t0), ev("ann", "purchase", t0 + hours(1)),
                           ev("ann", "signup", t0 + hours(2)), ev("ann", "probe", t0 + hours(3)),
                           ev("ann", "probe", t0 + days(31))};
  CHECK(lines(e.process(events, t0 + days(31))) ==
        strings{at(t0 + hours(1)) + " ann enter_buyer send_email(in_buyer)",
                at(t0 + hours(2)) + " ann enter_vip send_email(in_vip)",
                at(t0 + hours(3)) + " ann vip_probe send_sms(vip)",
                at(t0 + hours(1) + days(30)) + " ann exit_buyer send_email(out_buyer)",
                at(t0 + hours(1) + days(30)) + " ann exit_vip send_email(out_vip)"});
}

TEST_CASE("segment: compile rejects bad segments with pointers", "[segment][errors]") {
  nudge::rule_set rs;
  rs.segments = {{"a", nudge::in_segment("b")},
                 {"b", nudge::happened(nudge::on("purchase")).since_trigger()},
                 {"b", nudge::in_segment("nope")},
                 {"", nudge::always()}};
  try {
    nudge::program::compile(rs);
    FAIL("no error");
  } catch (const nudge::rule_error& err) {
    strings got;
    for (const auto& d : err.diagnostics()) {
      got.push_back(d.json_pointer + ": " + d.message);
    }
    CHECK(got == strings{"/segments/0/if/in_segment: segment \"b\" is defined after this one "
                         "(/segments/1); a segment may only name segments defined before it",
                         "/segments/1/if/happened/since_trigger: a segment has no trigger: use "
                         "\"within\" or the lifetime",
                         "/segments/2/name: duplicate segment name \"b\" (first used by "
                         "/segments/1)",
                         "/segments/2/if/in_segment: no segment \"nope\" is defined",
                         "/segments/3/name: a segment needs a name"});
  }
}

TEST_CASE("segment: a segment event loop is a rule cycle, and the batch changes nothing",
          "[segment][cascade]") {
  // Entering "plain" tags the contact, which makes it leave, which untags it, ...
  auto p = compile(
      {{"plain", nudge::negate(nudge::has_tag("x"))}},
      {nudge::rule_builder("tag").on(nudge::on_segment_entered("plain")).then(nudge::add_tag("x")),
       nudge::rule_builder("untag")
           .on(nudge::on_segment_exited("plain"))
           .then(nudge::remove_tag("x"))});
  nudge::engine e{p};
  CHECK_THROWS_AS(e.process(std::vector{ev("ann", "signup", t0)}, t0), nudge::rule_cycle_error);
  CHECK_FALSE(e.find_contact("ann"));
  CHECK(e.segment_size("plain") == 0);
}

TEST_CASE("segment: the same events in one batch or split give the same actions and states",
          "[segment][split]") {
  auto p = compile(
      {{"active", nudge::happened(nudge::on("page_view")).within(days(7)).at_least(2)},
       {"engaged", nudge::sum_of(nudge::on("app_session"), "minutes").within(days(7)).ge(30)},
       {"lapsed", nudge::last_seen(nudge::on("purchase")).older_than(days(10))}});
  std::vector<nudge::event> events;
  for (int i = 0; i < 40; ++i) {
    const auto t = t0 + hours(13 * i);
    const std::string who = i % 3 == 0 ? "ann" : (i % 3 == 1 ? "bob" : "cid");
    events.push_back(ev(who, "page_view", t));
    if (i % 4 == 0) {
      events.push_back(with(ev(who, "app_session", t), "minutes", 5.0 * (i % 7)));
    }
    if (i % 9 == 0) {
      events.push_back(ev(who, "purchase", t));
    }
  }
  const auto end = t0 + days(60);
  nudge::memory_store whole_store;
  nudge::engine whole{p, &whole_store};
  const auto expected = lines(whole.process(events, end));
  REQUIRE(expected.size() > 10);
  const std::size_t step = GENERATE(1, 2, 5, 17);
  nudge::memory_store split_store;
  nudge::engine split{p, &split_store};
  strings got;
  for (std::size_t i = 0; i < events.size();) {
    std::size_t j = std::min(i + step, events.size());
    // Batch boundaries after all events of an instant (the documented condition).
    while (j < events.size() && events[j].ts == events[j - 1].ts) {
      ++j;
    }
    auto out = lines(split.process(std::span{events.data() + i, j - i}, events[j - 1].ts));
    got.insert(got.end(), out.begin(), out.end());
    i = j;
  }
  auto rest = lines(split.advance(end));
  got.insert(got.end(), rest.begin(), rest.end());
  std::sort(got.begin(), got.end());
  auto sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  CHECK(got == sorted);
  for (const auto* id : {"ann", "bob", "cid"}) {
    CHECK(*split_store.find(id) == *whole_store.find(id));
  }
  CHECK(split.segment_members("active") == whole.segment_members("active"));
}

TEST_CASE("segment: a failed batch leaves memberships and the index as they were",
          "[segment][atomic]") {
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(7))}});
  nudge::engine e{p};
  e.process(std::vector{ev("ann", "page_view", t0)}, t0);
  const auto before = *e.store().load("ann");
  // bob's second event is out of order: nothing of the batch is kept, ann's exit included.
  CHECK_THROWS_AS(e.process(std::vector{ev("bob", "page_view", t0 + days(8)),
                                        ev("bob", "page_view", t0 + days(7))},
                            t0 + days(8)),
                  nudge::input_error);
  CHECK(*e.store().load("ann") == before);
  CHECK(e.segment_members("visited") == strings{"ann"});
  CHECK_FALSE(e.store().load("bob"));
}

TEST_CASE("segment: states with memberships, measures and flip timers survive a snapshot",
          "[segment][snapshot]") {
  auto p = compile(
      {{"engaged", nudge::sum_of(nudge::on("app_session"), "minutes").within(days(7)).ge(30)}});
  nudge::memory_store store;
  nudge::engine e{p, &store};
  e.process(std::vector{with(ev("ann", "app_session", t0), "minutes", 40)}, t0);
  std::ostringstream out;
  nudge::write_snapshot(out, nudge::take_snapshot(e, store));
  nudge::engine restored{p};
  nudge::load_snapshot(nudge::parse_snapshot(out.str(), p.get()), restored);
  CHECK(*restored.store().load("ann") == *store.load("ann"));
  CHECK(restored.segment_members("engaged") == strings{"ann"});
  CHECK(lines(restored.advance(t0 + days(8))) ==
        strings{at(t0 + days(7)) + " ann exit_engaged send_email(out_engaged)"});
}

TEST_CASE("segment: the store's member and due indexes follow every kind of save",
          "[segment][store]") {
  // memory_store::save leaves an index alone when a save does not change it (the common case in
  // a replay in batches); each combination of changed / unchanged must still read back exactly.
  nudge::memory_store store;
  const auto state = [](std::vector<std::string> segments, std::vector<nudge::time_point> due) {
    nudge::contact_state s;
    s.contact.id = "ann";
    for (const auto& name : segments) {
      s.segments.emplace(name, t0);
    }
    for (auto d : due) {
      nudge::timer t;
      t.due_at = d;
      s.timers.push_back(t);
    }
    return s;
  };
  const auto save = [&](nudge::contact_state s) {
    std::vector<nudge::contact_state> one{std::move(s)};
    store.save(one);
  };
  const auto check = [&](const strings& in_a, const strings& in_b, nudge::time_point due) {
    CHECK(store.segment_members("a") == in_a);
    CHECK(store.segment_members("b") == in_b);
    CHECK(store.segment_size("a") == in_a.size());
    CHECK(store.due(due - seconds(1)).empty());
    CHECK(store.due(due) == strings{"ann"});
  };
  save(state({"a"}, {t0 + days(1)}));
  check({"ann"}, {}, t0 + days(1));
  save(state({"a"}, {t0 + days(1), t0 + days(3)}));  // same first due, same members
  check({"ann"}, {}, t0 + days(1));
  save(state({"b"}, {t0 + days(1)}));  // same due, other members
  check({}, {"ann"}, t0 + days(1));
  save(state({"b"}, {t0 + days(2)}));  // other due, same members
  check({}, {"ann"}, t0 + days(2));
  save(state({"a", "b"}, {t0 + hours(1)}));  // both change
  check({"ann"}, {"ann"}, t0 + hours(1));
  save(state({"a", "b"}, {}));  // no timers left: not due at any time
  CHECK(store.due(nudge::max_time).empty());
  CHECK(store.segment_members("a") == strings{"ann"});
  save(state({}, {t0}));
  check({}, {}, t0);
  CHECK(store.segment_size("b") == 0);
}

TEST_CASE("segment: unknown segment names are refused by the queries", "[segment]") {
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(7))}});
  nudge::engine e{p};
  CHECK_THROWS_WITH(e.segment_members("visitors"),
                    "nudge::engine::segment_members: no segment \"visitors\" in the program");
}

TEST_CASE("segment: a rule file's segments and scoring are the C++ ones", "[segment][json]") {
  const auto parsed = nudge::parse_rules(R"({
    "event_types": ["app_session"],
    "segments": [
      {"name": "active", "description": "3 visits a week",
       "if": {"happened": {"event": "page_view", "within": "7d", "at_least": 3}}},
      {"name": "engaged",
       "if": {"sum": {"event": "app_session", "property": "minutes", "within": "7d", "ge": 30}}},
      {"name": "big", "if": {"average": {"event": "purchase", "property": "amount",
                                         "within": "30d", "gt": 100}}},
      {"name": "new", "if": {"first_seen": {"event": "page_view", "within": "7d"}}},
      {"name": "lapsed", "if": {"last_seen": {"event": "purchase", "older_than": "60d"}}},
      {"name": "vip", "if": {"all": [{"in_segment": "active"}, {"has_tag": "gold"}]}}
    ],
    "scoring": {
      "rules": [{"id": "views", "on": {"event": "page_view"}, "points": 1,
                 "cap": {"max": 50, "per": "1d"}},
                {"id": "unsubscribed", "on": {"tag_added": "unsubscribed"}, "points": -30}],
      "decay": {"every": "30d", "factor": 0.5},
      "thresholds": [{"name": "hot", "at": 100}]
    },
    "rules": [
      {"id": "welcome_active", "on": {"segment_entered": "active"},
       "then": [{"do": "send_email", "arg": "active"}]},
      {"id": "hot_lead", "on": {"score_crossed": "hot"}, "if": {"in_segment": "vip"},
       "then": [{"do": "notify_owner", "arg": "hot"}]}
    ]
  })");
  nudge::rule_set expected;
  expected.event_types = {"app_session"};
  expected.segments = {
      {"active", nudge::happened(nudge::on("page_view")).within(days(7)).at_least(3)},
      {"engaged", nudge::sum_of(nudge::on("app_session"), "minutes").within(days(7)).ge(30)},
      {"big", nudge::average_of(nudge::on("purchase"), "amount").within(days(30)).gt(100)},
      {"new", nudge::first_seen(nudge::on("page_view")).within(days(7))},
      {"lapsed", nudge::last_seen(nudge::on("purchase")).older_than(days(60))},
      {"vip", nudge::all({nudge::in_segment("active"), nudge::has_tag("gold")})}};
  expected.scoring.rules = {
      {"views", nudge::on("page_view"), 1, nudge::score_cap{50, days(1)}},
      {"unsubscribed", nudge::on("tag_added", "unsubscribed"), -30, std::nullopt}};
  expected.scoring.decay = nudge::score_decay{days(30), 0.5, 0};
  expected.scoring.thresholds = {{"hot", 100}};
  expected.rules = {nudge::rule_builder("welcome_active")
                        .on(nudge::on_segment_entered("active"))
                        .then(nudge::send_email("active")),
                    nudge::rule_builder("hot_lead")
                        .on(nudge::on("score_crossed", "hot"))
                        .only_if(nudge::in_segment("vip"))
                        .then(nudge::notify_owner("hot"))};
  CHECK(parsed.segments == expected.segments);
  CHECK(parsed.scoring == expected.scoring);
  CHECK(parsed.rules == expected.rules);
  CHECK(parsed == expected);
}
