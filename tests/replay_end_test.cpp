// Backtests as the seeds write them (issue 14): anonymous visitors that are not in the contacts
// file, and the default end of a replay covering messages deferred by quiet hours and caps.
// Every expected action below is computed by hand in the comments.
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/engine.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/replay.hpp>

#include "support.hpp"

namespace {

using test_support::csv;
using test_support::temp_dir;

std::shared_ptr<const nudge::program> rules(const std::string& json) {
  return nudge::program::compile(nudge::parse_rules(json, {.file_name = "rules.json"}));
}

// Seed 004's first stage: a visitor browses anonymously, then signs in as a known contact.
const std::string visitor_rules = R"({
  "rules": [
    {"id": "hello_visitor", "on": {"event": "page_view"}, "reentry": "once",
     "then": [{"do": "show_popup", "arg": "newsletter"}]},
    {"id": "shoe_lover", "on": {"event": "identify"},
     "if": {"happened": {"event": "page_view", "key": "/shoes", "within": "7d", "at_least": 2}},
     "then": [{"do": "send_email", "arg": "shoes"}]}
  ]
})";

// t0 = 1704067200 = 2024-01-01T00:00:00Z. anon-1 and anon-2 are not in the contacts file.
const std::string visitor_events =
    "ts,contact,type,key,value\n"
    "1704067200,anon-1,page_view,/shoes,\n"  // popup for anon-1 at t0
    "1704067800,anon-1,page_view,/shoes,\n"  // once: no second popup
    "1704068400,anon-2,page_view,/hats,\n"   // popup for anon-2 at t0+20m
    "1704070800,anon-1,identify,c42,\n";     // merged into c42: 2 shoe views -> e-mail at t0+1h

}  // namespace

TEST_CASE(
    "replay: visitors missing from the contacts file are created, and their history counts "
    "once identified",
    "[replay][identity][seeds]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", "contact,status\nc42,customer\n");
  const auto events = dir.write("events.csv", visitor_events);
  const std::size_t batch = GENERATE(0, 1, 2);
  nudge::memory_store store;
  nudge::engine engine{rules(visitor_rules), &store};
  auto result = nudge::replay(engine, events, {.contacts_path = contacts, .batch_events = batch});
  CHECK(csv(result) ==
        "ts,contact,rule,action,arg\n"
        "1704067200,anon-1,hello_visitor,show_popup,newsletter\n"
        "1704068400,anon-2,hello_visitor,show_popup,newsletter\n"
        "1704070800,c42,shoe_lover,send_email,shoes\n");
  CHECK(result.events_read == 4);
  CHECK(result.rejected == 0);
  // The known contact keeps its profile; the visitor's id is an alias of it.
  REQUIRE(store.find("c42") != nullptr);
  CHECK(store.find("c42")->contact.status == "customer");
  REQUIRE(store.find("anon-1") != nullptr);
  CHECK(store.find("anon-1")->merged_into == "c42");
  CHECK(store.find("anon-2") != nullptr);

  // A fresh engine (nudge::replay with a program) and skip give the same: nothing is refused.
  auto fresh = nudge::replay(rules(visitor_rules), events,
                             {.contacts_path = contacts, .on_error = nudge::error_policy::skip});
  CHECK(csv(fresh) == csv(result));
  CHECK(fresh.rejected == 0);
}

namespace {

// Quiet hours 21:00-08:00 UTC and no delay anywhere: the longest delay is 0, so the old default
// end (the last event) lost every message deferred past the last event.
const std::string quiet_rules = R"({
  "event_types": ["newsletter"],
  "delivery": {"quiet_hours": {"from": "21:00", "to": "08:00"}, "on_quiet_hours": "defer"},
  "rules": [{"id": "promo", "on": {"event": "newsletter"},
             "then": [{"do": "send_email", "arg": "promo"}]}]
})";

// One e-mail per 24 hours, the others deferred.
const std::string cap_rules = R"({
  "event_types": ["newsletter"],
  "delivery": {"caps": [{"channel": "email", "max": 1, "per": "24h"}], "on_cap": "defer"},
  "rules": [{"id": "promo", "on": {"event": "newsletter"},
             "then": [{"do": "send_email", "arg": "promo"}]}]
})";

const std::string consenting = "contact,consent\nc1,email\nc2,email\n";

}  // namespace

TEST_CASE("replay: the default end covers messages deferred by quiet hours", "[replay][seeds]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", consenting);
  // 2024-01-01T20:00Z (allowed) and 22:00Z (quiet: deferred to 2024-01-02T08:00Z = 1704182400).
  const auto events = dir.write("events.csv",
                                "ts,contact,type,key,value\n"
                                "1704139200,c2,newsletter,,\n"
                                "1704146400,c1,newsletter,,\n");
  auto result = nudge::replay(rules(quiet_rules), events, {.contacts_path = contacts});
  CHECK(csv(result) ==
        "ts,contact,rule,action,arg\n"
        "1704139200,c2,promo,send_email,promo\n"
        "1704182400,c1,promo,send_email,promo\n");
  CHECK(result.until == nudge::from_epoch(1704182400));
  CHECK(result.pending.timers == 0);
  CHECK(result.stats[0].delivery.deferred_hours == 1);

  // With --until before 08:00 the deferred message is reported as pending, not lost silently.
  auto bounded = nudge::replay(rules(quiet_rules), events,
                               {.contacts_path = contacts, .until = nudge::from_epoch(1704150000)});
  CHECK(csv(bounded) == "ts,contact,rule,action,arg\n1704139200,c2,promo,send_email,promo\n");
  CHECK(bounded.pending.timers == 1);
  CHECK(bounded.pending.last == nudge::from_epoch(1704182400));
}

TEST_CASE("replay: the default end covers a chain of cap deferrals", "[replay][seeds]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", consenting);
  // Newsletters at 2024-01-01T10:00Z, 11:00Z and 12:00Z. The first goes out; at 11:00 and 12:00
  // the cap (1 in (t-24h, t]) holds until 10:00 the next day (1704189600): both are deferred
  // there, one goes out, the other is deferred again to 2024-01-03T10:00Z (1704276000).
  const auto events = dir.write("events.csv",
                                "ts,contact,type,key,value\n"
                                "1704103200,c1,newsletter,,\n"
                                "1704106800,c1,newsletter,,\n"
                                "1704110400,c1,newsletter,,\n");
  auto result = nudge::replay(rules(cap_rules), events, {.contacts_path = contacts});
  CHECK(csv(result) ==
        "ts,contact,rule,action,arg\n"
        "1704103200,c1,promo,send_email,promo\n"
        "1704189600,c1,promo,send_email,promo\n"
        "1704276000,c1,promo,send_email,promo\n");
  CHECK(result.until == nudge::from_epoch(1704276000));
  CHECK(result.pending.timers == 0);
  CHECK(result.stats[0].delivery.deferred_cap == 3);  // 11:00 and 12:00, then one again at 10:00

  // The bound on extensions: after one, the second deferral is still pending and reported.
  auto once =
      nudge::replay(rules(cap_rules), events, {.contacts_path = contacts, .max_extensions = 1});
  CHECK(once.actions.size() == 2);
  CHECK(once.until == nudge::from_epoch(1704189600));
  CHECK(once.pending.timers == 1);
  CHECK(once.pending.last == nudge::from_epoch(1704276000));
}

TEST_CASE("replay: recurring timers do not extend the default end and are counted apart",
          "[replay][seeds]") {
  temp_dir dir;
  const auto program = rules(R"({
    "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 10}],
                "decay": {"every": "7d", "factor": 0.5}},
    "rules": [{"id": "r", "on": {"event": "page_view"}, "then": [{"do": "add_tag", "arg": "x"}]}]
  })");
  const auto events =
      dir.write("events.csv", "ts,contact,type,key,value\n1704067200,c1,page_view,/,\n");
  auto result = nudge::replay(program, events);
  CHECK(result.until == nudge::from_epoch(1704067200));
  CHECK(result.pending.timers == 0);
  CHECK(result.pending.recurring == 1);  // the score's decay, for ever while it is not 0
}

TEST_CASE("replay: messages the contacts load causes are decided before the same second's events",
          "[replay][delivery][docs]") {
  temp_dir dir;
  // One e-mail a day. Loading c1 (status vip) enters it into "vips" at t0, whose rule e-mails
  // it; the newsletter at t0 has priority 10 but is decided after the load's message, so the cap
  // defers it to t0 + 1d (1704153600), where the default end reaches it.
  const auto program = rules(R"({
    "event_types": ["newsletter"],
    "delivery": {"caps": [{"channel": "email", "max": 1, "per": "24h"}]},
    "segments": [{"name": "vips", "if": {"field": "status", "eq": "vip"}}],
    "rules": [
      {"id": "welcome_vip", "on": {"segment_entered": "vips"},
       "then": [{"do": "send_email", "arg": "vip"}]},
      {"id": "promo", "on": {"event": "newsletter"}, "then": [{"do": "send_email", "arg": "promo"}],
       "delivery": {"priority": 10}}]})");
  const auto contacts = dir.write("contacts.csv", "contact,status,consent\nc1,vip,email\n");
  const auto events =
      dir.write("events.csv", "ts,contact,type,key,value\n1704067200,c1,newsletter,,\n");
  auto result = nudge::replay(program, events, {.contacts_path = contacts});
  CHECK(csv(result) ==
        "ts,contact,rule,action,arg\n"
        "1704067200,c1,welcome_vip,send_email,vip\n"
        "1704153600,c1,promo,send_email,promo\n");
}

TEST_CASE("replay: on_actions hands out the same actions, in order, batch by batch",
          "[replay][stream]") {
  temp_dir dir;
  // Loading b1 and c1 (vips) at t0 e-mails both; a1's and z1's events at t0 emit there too, so
  // the first batch's actions must be merged with the load's (by contact id: a1, b1, c1, z1).
  const auto program = rules(R"({
    "event_types": ["newsletter"],
    "segments": [{"name": "vips", "if": {"field": "status", "eq": "vip"}}],
    "rules": [
      {"id": "welcome_vip", "on": {"segment_entered": "vips"},
       "then": [{"do": "send_email", "arg": "vip"}]},
      {"id": "promo", "on": {"event": "newsletter"}, "delay": "1h",
       "then": [{"do": "send_email", "arg": "promo"}]},
      {"id": "news", "on": {"event": "newsletter"}, "then": [{"do": "web_push", "arg": "news"}]}]})");
  const auto contacts = dir.write("contacts.csv", "contact,status\nb1,vip\nc1,vip\nz1,lead\n");
  const auto events = dir.write("events.csv",
                                "ts,contact,type,key,value\n"
                                "1704067200,z1,newsletter,,\n"
                                "1704067200,a1,newsletter,,\n"
                                "1704069000,c1,newsletter,,\n"
                                "1704070800,b1,newsletter,,\n"
                                "1704074400,a1,newsletter,,\n");
  const auto whole = nudge::replay(program, events, {.contacts_path = contacts, .batch_events = 0});
  REQUIRE(whole.action_count == whole.actions.size());
  const std::size_t size = GENERATE(0, 1, 2, 3, 100);
  std::vector<std::size_t> calls;
  std::ostringstream out;
  nudge::replay_options options{.contacts_path = contacts, .batch_events = size};
  nudge::actions_csv_writer writer{out, nudge::time_format::epoch};
  options.on_actions = [&](std::span<const nudge::due_action> actions) {
    calls.push_back(actions.size());
    writer.write(actions);
  };
  const auto streamed = nudge::replay(program, events, options);
  CHECK(streamed.actions.empty());
  CHECK(streamed.action_count == whole.actions.size());
  CHECK(out.str() == csv(whole));
  CHECK(out.str() ==
        "ts,contact,rule,action,arg\n"
        "1704067200,a1,news,web_push,news\n"
        "1704067200,b1,welcome_vip,send_email,vip\n"
        "1704067200,c1,welcome_vip,send_email,vip\n"
        "1704067200,z1,news,web_push,news\n"
        "1704069000,c1,news,web_push,news\n"
        "1704070800,a1,promo,send_email,promo\n"
        "1704070800,b1,news,web_push,news\n"
        "1704070800,z1,promo,send_email,promo\n"
        "1704072600,c1,promo,send_email,promo\n"
        "1704074400,a1,news,web_push,news\n"
        "1704074400,b1,promo,send_email,promo\n"
        "1704078000,a1,promo,send_email,promo\n");
  if (size == 1) {
    CHECK(calls.size() > 3);  // handed out as the batches came, not once at the end
  }
}
