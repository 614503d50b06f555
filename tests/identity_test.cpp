// Identity: an identify event merges an anonymous visitor into a known contact with a
// deterministic precedence (merge_states); later events for the visitor's id reach the merged
// contact; atomic, split-invariant, and persistent through snapshots and the SQLite store.
#include <algorithm>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::ev;
using test_support::lines;
using test_support::strings;
using test_support::t0;

using nudge::days;
using nudge::hours;

// Scores page views, a segment of two /shoes views, a delayed cart check, a rule on identify,
// a one-run cart workflow, a timeline.
std::shared_ptr<const nudge::program> shop() {
  return nudge::load_rules(R"({
  "timeline": {"size": 8},
  "segments": [{"name": "shoe_fan",
                "if": {"happened": {"event": "page_view", "key": "/shoes", "at_least": 2}}}],
  "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 10}],
              "thresholds": [{"name": "warm", "at": 20}]},
  "rules": [
    {"id": "returning_buyer", "on": {"event": "purchase"},
     "if": {"happened": {"event": "page_view", "key": "/shoes"}},
     "then": [{"do": "send_email", "arg": "thanks_shoes"}]},
    {"id": "cart_reminder", "on": {"event": "cart"}, "delay": "1d",
     "if": {"not_happened": {"event": "purchase", "since_trigger": true}},
     "then": [{"do": "send_email", "arg": "cart_reminder"}]},
    {"id": "welcome", "on": {"event": "identify"}, "reentry": "once",
     "then": [{"do": "send_email", "arg": "welcome"}]},
    {"id": "fan", "on": {"segment_entered": "shoe_fan"}, "then": [{"do": "add_tag", "arg": "fan"}]},
    {"id": "warm", "on": {"score_crossed": "warm"}, "then": [{"do": "notify_owner", "arg": "warm"}]}
  ],
  "workflows": [{"id": "checkout", "entry": {"on": {"event": "cart"}}, "exit_on": [{"event": "purchase"}],
                 "steps": [{"id": "wait", "wait": "2d"},
                           {"id": "nudge", "send": {"do": "send_sms", "arg": "checkout"}}]}]
})");
}

struct collecting_sink final : nudge::sink {
  std::vector<nudge::due_action> actions;
  void deliver(std::span<const nudge::due_action> batch) override {
    actions.insert(actions.end(), batch.begin(), batch.end());
  }
};

const std::vector<nudge::event> story{
    ev("v1", "page_view", t0, "/shoes"),
    ev("c1", "page_view", t0 + hours(1), "/shoes"),
    ev("v1", "cart", t0 + hours(1)),
    ev("v1", "identify", t0 + hours(2), "c1"),
    ev("v1", "purchase", t0 + hours(3), "order-1"),  // v1 is c1 now
};

}  // namespace

TEST_CASE("identity: the visitor's history, score and timers join the known contact",
          "[identity]") {
  nudge::memory_store store;
  nudge::engine e{shop(), &store};
  e.upsert_contact(nudge::contact{.id = "c1", .owner = "anna"});
  SECTION("one batch: the purchase after the identify ends v1's cart check and journey") {
    // At the identify (02:00) the merged contact has 10 + 10 points (crosses "warm") and two
    // /shoes views (enters shoe_fan, tagged "fan" by an internal action); "welcome" runs on
    // the identify event itself. The purchase at 03:00 sees v1's /shoes view.
    CHECK(lines(e.process(story, t0 + days(3))) ==
          strings{at(t0 + hours(2)) + " c1 welcome send_email(welcome)",
                  at(t0 + hours(2)) + " c1 warm notify_owner(warm)",
                  at(t0 + hours(3)) + " c1 returning_buyer send_email(thanks_shoes)"});
    const auto c1 = *store.find("c1");
    CHECK(c1.contact.owner == "anna");
    CHECK(c1.contact.score == 20);
    CHECK(c1.contact.tags == nudge::name_map<nudge::time_point>{{"fan", t0 + hours(2)}});
    CHECK(c1.segments == nudge::name_map<nudge::time_point>{{"shoe_fan", t0 + hours(2)}});
    CHECK(c1.runs.empty());    // the purchase ended the journey v1 entered
    CHECK(c1.timers.empty());  // v1's cart check ran at 01:00 + 1d and failed
    CHECK(e.stats()[1].failed == 1);
    CHECK(e.workflow_stats()[0].entered == 1);
    CHECK(e.workflow_stats()[0].exited == 1);
    CHECK(e.workflow_stats()[0].active == 0);
  }
  SECTION("no purchase: v1's reminder and journey come due for c1") {
    CHECK(lines(e.process(std::span{story.data(), 4}, t0 + days(3))) ==
          strings{at(t0 + hours(2)) + " c1 welcome send_email(welcome)",
                  at(t0 + hours(2)) + " c1 warm notify_owner(warm)",
                  at(t0 + hours(1) + days(1)) + " c1 cart_reminder send_email(cart_reminder)",
                  at(t0 + hours(1) + days(2)) + " c1 checkout/nudge send_sms(checkout)"});
  }
  const auto alias = *store.find("v1");
  CHECK(alias.merged_into == "c1");
  CHECK(alias.timers.empty());
  CHECK(alias.segments.empty());
  CHECK(alias.contact.score == 0);
  CHECK(e.segment_members("shoe_fan") == strings{"c1"});
  CHECK(store.due(t0 + days(365)).empty());
}

TEST_CASE("identity: merge_states precedence", "[identity][merge]") {
  auto p = shop();
  auto known = p->new_state(nudge::contact{.id = "c1"});
  known.contact.details["language"] = std::string{"pl"};
  known.contact.tags.emplace("vip", t0 + hours(5));
  known.contact.score = 10;
  known.contact.status = "customer";
  known.events_applied = 7;
  known.runs_started = 2;
  known.clock = t0 + hours(6);
  auto anon = p->new_state(nudge::contact{.id = "v1"});
  anon.contact.details["language"] = std::string{"en"};
  anon.contact.details["utm"] = std::string{"ads"};
  anon.contact.tags.emplace("vip", t0);
  anon.contact.tags.emplace("shoes", t0);
  anon.contact.score = 5;
  anon.contact.stage = "anonymous";
  anon.contact.owner = "bart";
  anon.contact.status = "lead";
  anon.events_applied = 3;
  anon.clock = t0 + hours(7);
  anon.segments.emplace("shoe_fan", t0 + hours(1));
  anon.rule_runs[2] = nudge::rule_memory{1, t0, {}};  // "welcome" (once) ran for v1
  nudge::timer t;
  t.due_at = t0 + days(1);
  t.rule = 1;
  t.trigger_ordinal = 2;
  anon.timers.push_back(t);
  anon.timers_scheduled = 1;
  nudge::workflow_run run;
  run.id = 0;
  run.entered_at = run.step_at = t0;
  anon.runs.push_back(run);
  anon.runs_started = 1;
  nudge::timer wait;
  wait.kind = nudge::timer_kind::workflow_step;
  wait.due_at = t0 + days(2);
  wait.trigger_ordinal = 0;
  anon.timers.insert(anon.timers.end(), wait);
  const auto merged = nudge::merge_states(*p, known, anon, t0 + hours(8));
  CHECK(merged.contact.id == "c1");
  CHECK(merged.contact.status == "customer");
  CHECK(merged.contact.stage == "anonymous");  // the known contact had none
  CHECK(merged.contact.owner == "bart");
  CHECK(merged.contact.score == 15);
  CHECK(*merged.contact.detail("language") == nudge::value{std::string{"pl"}});
  CHECK(*merged.contact.detail("utm") == nudge::value{std::string{"ads"}});
  CHECK(merged.contact.tags.at("vip") == t0);
  CHECK(merged.contact.tags.at("shoes") == t0);
  CHECK(merged.segments.at("shoe_fan") == t0 + hours(1));
  CHECK(merged.rule_runs.at(2).runs == 1);
  REQUIRE(merged.timers.size() == 2);
  CHECK(merged.timers[0].trigger_ordinal == 9);  // shifted past c1's 7 events
  CHECK(merged.timers[1].trigger_ordinal == 2);  // the run's id, shifted past c1's 2 runs
  REQUIRE(merged.runs.size() == 1);
  CHECK(merged.runs[0].id == 2);
  CHECK(merged.events_applied == 10);
  CHECK(merged.runs_started == 3);
  CHECK(merged.clock == t0 + hours(7));
  // Two runs of a one-run workflow: the later-entered one ends as an exit.
  auto known_in_flow = known;
  nudge::workflow_run mine = run;
  mine.entered_at = mine.step_at = t0 + hours(4);
  known_in_flow.runs.push_back(mine);
  std::vector<nudge::workflow_outcome> dropped;
  const auto one = nudge::merge_states(*p, known_in_flow, anon, t0 + hours(8), &dropped);
  REQUIRE(one.runs.size() == 1);
  CHECK(one.runs[0].id == 2);  // v1's, entered first
  CHECK(one.timers.size() == 2);
  CHECK(dropped == std::vector<nudge::workflow_outcome>{
                       {0, 0, nudge::workflow_outcome_kind::wait_ended, t0 + hours(8)},
                       {0, 0, nudge::workflow_outcome_kind::exited, t0 + hours(8)}});
  CHECK(one.timeline.size() == 1);
  CHECK(one.timeline[0].what == nudge::timeline_what::workflow_exited);
  auto aliased = anon;
  aliased.merged_into = "c9";
  CHECK_THROWS_WITH(nudge::merge_states(*p, merged, aliased, t0),
                    "nudge::merge_states: the anonymous contact \"v1\" is an alias of \"c9\"");
  CHECK_THROWS_WITH(nudge::merge_states(*p, known, known, t0),
                    "nudge::merge_states: both states are contact \"c1\"");
}

TEST_CASE("identity: later batches, a snapshot and the SQLite store keep the alias",
          "[identity][snapshot]") {
  auto p = shop();
  const std::vector expected{at(t0 + hours(3)) + " c1 returning_buyer send_email(thanks_shoes)"};
  SECTION("snapshot") {
    nudge::memory_store store;
    nudge::engine e{p, &store};
    e.process(std::span{story.data(), 4}, t0 + hours(2));
    std::ostringstream out;
    nudge::write_snapshot(out, nudge::take_snapshot(e, store));
    nudge::engine restored{p};
    nudge::load_snapshot(nudge::parse_snapshot(out.str(), p.get()), restored);
    CHECK(restored.store().load("v1")->merged_into == "c1");
    CHECK(lines(restored.process(std::span{story.data() + 4, 1}, t0 + hours(3))) == expected);
    CHECK(restored.workflow_stats()[0].exited == 1);
  }
  SECTION("sqlite store, reopened") {
    const auto dir = std::filesystem::current_path() / fmt::format("identity_test_{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::string path = (dir / "state.db").string();
    {
      nudge::sqlite_store db{path, *p};
      collecting_sink first;
      nudge::durable_engine e{p, db, &first};
      e.process(std::span{story.data(), 4}, t0 + hours(2));
    }
    {
      // durable_engine runs each batch in a transaction, where the store lends its states:
      // the alias is found among lent states, and a failing batch is rolled back.
      nudge::sqlite_store db{path, *p};
      CHECK(db.load("v1")->merged_into == "c1");
      const auto c1 = *db.load("c1");
      collecting_sink sink;
      nudge::durable_engine e{p, db, &sink};
      CHECK_THROWS_WITH(
          e.process(std::vector{story[4], ev("v1", "nonsense", t0 + hours(3))}, t0 + hours(3)),
          "event 1 (contact \"v1\"): unknown event type \"nonsense\"");
      CHECK(*db.load("c1") == c1);
      CHECK(e.process(std::span{story.data() + 4, 1}, t0 + hours(3)) == 1);
      CHECK(lines(sink.actions) == expected);
    }
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("identity: bad identify events are refused and change nothing", "[identity][error]") {
  nudge::memory_store store;
  nudge::engine e{shop(), &store};
  e.process(std::vector{ev("v1", "page_view", t0, "/shoes"), ev("v2", "page_view", t0)}, t0);
  e.process(std::vector{ev("v1", "identify", t0 + hours(1), "c1")}, t0 + hours(1));
  const auto v1 = *store.find("v1");
  const auto v2 = *store.find("v2");
  const auto c1 = *store.find("c1");
  const auto size = store.size();
  auto refused = [&](std::vector<nudge::event> batch, const std::string& message) {
    CHECK_THROWS_WITH(e.process(batch, t0 + hours(5)), message);
    CHECK(*store.find("v1") == v1);
    CHECK(*store.find("v2") == v2);
    CHECK(*store.find("c1") == c1);
    CHECK(store.size() == size);
  };
  refused({ev("v2", "identify", t0 + hours(2))},
          "event 0 (contact \"v2\"): an identify event needs the known contact's id as its key");
  refused({ev("v2", "page_view", t0 + hours(2)), ev("v2", "identify", t0 + hours(2), "v2")},
          "event 1 (contact \"v2\"): an identify event's key names its own contact; the key is "
          "the id of the known contact the event's contact is");
  refused({ev("v1", "identify", t0 + hours(2), "c2")},
          "event 0 (contact \"v1\"): identify: \"v1\" was already identified as \"c1\"; "
          "identifying it as \"c2\" would merge two known contacts (identify \"c1\" itself to "
          "merge them)");
  // The merge is atomic with its batch: a bad event after it undoes it.
  refused({ev("v2", "identify", t0 + hours(2), "c1"), ev("c1", "nonsense", t0 + hours(3))},
          "event 1 (contact \"c1\"): unknown event type \"nonsense\"");
  refused({ev("v2", "identify", t0 + hours(2), "c1"), ev("v2", "page_view", t0 + hours(1))},
          "event 1 (contact \"v2\"): out of order: 2024-01-01T01:00:00Z (1704070800) is before "
          "2024-01-01T02:00:00Z (1704074400), the id's previous event in the batch");
  refused({ev("v2", "identify", t0 + hours(6), "c1")},
          "event 0 (contact \"v2\"): time 2024-01-01T06:00:00Z is after now "
          "(2024-01-01T05:00:00Z)");

  SECTION("identifying ids that are already one contact merges nothing") {
    // v1 -> c1 again, and the reverse: ordinary identify events for c1 ("welcome" runs once).
    CHECK(lines(e.process(std::vector{ev("v1", "identify", t0 + hours(2), "c1"),
                                      ev("c1", "identify", t0 + hours(3), "v1")},
                          t0 + hours(3)))
              .empty());
    CHECK(*store.find("v1") == v1);
    CHECK(store.find("c1")->events_applied == c1.events_applied + 2);
  }
  SECTION("an unknown key: created, or refused without create_unknown_contacts") {
    nudge::memory_store strict_store;
    nudge::engine strict{shop(), &strict_store, nullptr, {.create_unknown_contacts = false}};
    strict.upsert_contact(nudge::contact{.id = "v3"});
    CHECK_THROWS_WITH(strict.process(std::vector{ev("v3", "identify", t0, "c9")}, t0),
                      "event 0 (contact \"v3\"): identify: unknown contact \"c9\" (the key)");
    CHECK(strict_store.size() == 1);
    CHECK(lines(e.process(std::vector{ev("v2", "identify", t0 + hours(2), "c9")}, t0 + hours(2))) ==
          strings{at(t0 + hours(2)) + " c9 welcome send_email(welcome)"});
    CHECK(store.find("c9")->contact.score == 10);  // v2's view
    CHECK(store.find("v2")->merged_into == "c9");
  }
  SECTION("chains: v1 -> c1, then c1 -> c2; v1's events reach c2") {
    e.process(std::vector{ev("c1", "identify", t0 + hours(2), "c2")}, t0 + hours(2));
    CHECK(store.find("c1")->merged_into == "c2");
    CHECK(store.find("v1")->merged_into == "c1");
    CHECK(lines(e.process(std::vector{ev("v1", "purchase", t0 + hours(3))}, t0 + hours(3))) ==
          strings{at(t0 + hours(3)) + " c2 returning_buyer send_email(thanks_shoes)"});
    CHECK(store.find("c1")->events_applied == 0);
  }
}

TEST_CASE("identity: the same events in one batch or split give the same result",
          "[identity][split]") {
  auto p = shop();
  std::vector<nudge::event> events;
  for (int i = 0; i < 14; ++i) {
    const auto t = t0 + hours(5 * i);
    const std::string anon = fmt::format("v{}", i % 4);
    events.push_back(ev(anon, "page_view", t, i % 2 == 0 ? "/shoes" : "/home"));
    if (i % 3 == 0) {
      events.push_back(ev(anon, "cart", t));
    }
    if (i == 2) {
      events.push_back(ev("v2", "identify", t, "c0"));
    } else if (i == 5) {
      events.push_back(ev("v1", "identify", t, "c1"));
    } else if (i == 7) {
      events.push_back(ev("v3", "identify", t, "c0"));
    } else if (i == 9) {
      events.push_back(ev("c1", "identify", t, "c0"));  // a chain: v1 -> c1 -> c0
    } else if (i == 10) {
      events.push_back(ev("v2", "identify", t, "c0"));  // already one contact
    }
    if (i % 5 == 4) {
      events.push_back(ev(anon, "purchase", t));
    }
  }
  const auto end = t0 + days(6);
  nudge::memory_store whole_store;
  nudge::engine whole{p, &whole_store};
  auto expected = lines(whole.process(events, end));
  REQUIRE(expected.size() >= 8);
  const std::size_t step = GENERATE(1, 2, 3, 7);
  nudge::memory_store split_store;
  nudge::engine split{p, &split_store};
  strings got;
  for (std::size_t i = 0; i < events.size();) {
    std::size_t j = std::min(i + step, events.size());
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
  std::sort(expected.begin(), expected.end());
  CHECK(got == expected);
  CHECK(split.stats() == whole.stats());
  CHECK(split.workflow_stats() == whole.workflow_stats());
  for (const auto* id : {"v0", "v1", "v2", "v3", "c0", "c1"}) {
    INFO(id);
    REQUIRE(split_store.find(id) != nullptr);
    CHECK(*split_store.find(id) == *whole_store.find(id));
  }
  CHECK(whole_store.find("c1")->merged_into == "c0");
  CHECK(whole_store.find("v1")->merged_into == "c1");
}

TEST_CASE("identity: the visitor's recent messages count against the merged contact's caps",
          "[identity][merge][delivery]") {
  // One marketing e-mail per 24 h, skipped past the cap. The visitor got one at T; after being
  // identified as c1, c1's own trigger at T + 2h must find the cap taken.
  const auto p = nudge::load_rules(R"({
  "delivery": {"caps": [{"channel": "email", "max": 1, "per": "24h"}], "on_cap": "skip"},
  "rules": [{"id": "promo", "on": {"event": "page_view"},
             "then": [{"do": "send_email", "arg": "promo"}]}]
})");
  nudge::memory_store store;
  collecting_sink sink;
  nudge::engine engine{p, &store, &sink};
  nudge::contact c1{.id = "c1"}, v1{.id = "v1"};
  c1.consent["email"] = true;
  v1.consent["email"] = true;
  engine.upsert_contacts(std::vector{c1, v1});
  engine.process(std::vector{ev("v1", "page_view", t0, "/a")}, t0);
  engine.process(std::vector{ev("v1", "identify", t0 + hours(1), "c1")}, t0 + hours(1));
  engine.process(std::vector{ev("c1", "page_view", t0 + hours(2), "/b")}, t0 + hours(2));
  // Past the 24 h window the cap frees again.
  engine.process(std::vector{ev("c1", "page_view", t0 + hours(25), "/c")}, t0 + hours(25));
  CHECK(lines(sink.actions) == strings{"2024-01-01T00:00:00Z v1 promo send_email(promo)",
                                       "2024-01-02T01:00:00Z c1 promo send_email(promo)"});
  const auto* merged = store.find("c1");
  REQUIRE(merged != nullptr);
  CHECK(merged->channel_sends.at(0) == std::vector{t0 + hours(25)});
}

TEST_CASE("identity: a contact evaluated before and after a merge keeps its emission order",
          "[identity][order]") {
  // "k" is evaluated twice at the same second: up to the identify event, then after it. Its two
  // runs of actions tie on (due_at, contact) and must stay in the order they were emitted, among
  // the other contacts' actions in contact order. Enough actions that the sort is not an
  // insertion sort (which would keep ties in place by chance).
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("a").on(nudge::on("a")).then(nudge::send_sms("first")));
  rs.rules.push_back(nudge::rule_builder("b").on(nudge::on("b")).then(nudge::send_sms("second")));
  nudge::engine engine{nudge::program::compile(rs)};
  const auto t = t0 + hours(1);
  std::vector<nudge::event> batch;
  strings expected;
  for (int i = 0; i < 20; ++i) {
    batch.push_back(ev(fmt::format("m{:02}", i), "a", t));
    batch.push_back(ev("k", "a", t, fmt::format("{:02}", i)));
  }
  batch.push_back(ev("v", "identify", t, "k"));
  for (int i = 0; i < 20; ++i) {
    batch.push_back(ev("v", "b", t, fmt::format("{:02}", i)));  // to "k", after its "a"s
    batch.push_back(ev(fmt::format("c{:02}", i), "a", t));
  }
  for (int i = 0; i < 20; ++i) {
    expected.push_back(fmt::format("2024-01-01T01:00:00Z c{:02} a send_sms(first)", i));
  }
  for (int i = 0; i < 20; ++i) {
    expected.push_back("2024-01-01T01:00:00Z k a send_sms(first)");
  }
  for (int i = 0; i < 20; ++i) {
    expected.push_back("2024-01-01T01:00:00Z k b send_sms(second)");
  }
  for (int i = 0; i < 20; ++i) {
    expected.push_back(fmt::format("2024-01-01T01:00:00Z m{:02} a send_sms(first)", i));
  }
  const auto due = engine.process(batch, t);
  CHECK(lines(due) == expected);
  CHECK(std::is_sorted(due.begin(), due.end(), nudge::due_order));
}
