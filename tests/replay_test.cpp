#include <cstdint>
#include <cstdio>
#include <iterator>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/engine.hpp>
#include <nudge/io/csv.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/rule.hpp>

#include "support.hpp"

namespace {

using test_support::csv;
using test_support::temp_dir;

using nudge::days;
using nudge::hours;

// replay takes the events file and the options, the contacts file among them
// (replay_options::contacts_path), as Python's Engine.replay(events, contacts=None) does: a call
// written for the old (contacts, events) order must not compile, rather than swap two strings.
template <class Target, class... Args>
constexpr bool can_replay = requires(Target t, Args... a) {
  nudge::replay(t, a...);
};
using program_ptr = std::shared_ptr<const nudge::program>;
static_assert(can_replay<program_ptr, std::string>);
static_assert(can_replay<program_ptr, std::string, nudge::replay_options>);
static_assert(can_replay<nudge::engine&, std::string, nudge::replay_options>);
static_assert(!can_replay<program_ptr, std::string, std::string>);
static_assert(!can_replay<program_ptr, std::string, std::string, nudge::replay_options>);
static_assert(!can_replay<nudge::engine&, std::string, std::string>);
static_assert(!can_replay<nudge::engine&, std::string, std::string, nudge::replay_options>);

// A small shop: status on purchase, a win-back 60 days after the last purchase, a capped
// abandoned-cart reminder, and a once-only interest push.
std::shared_ptr<const nudge::program> shop_program() {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("become_customer")
                         .on(nudge::on("purchase"))
                         .then(nudge::set_status("customer")));
  rs.rules.push_back(nudge::rule_builder("winback")
                         .on(nudge::on("purchase"))
                         .check_after(days(60))
                         .only_if(nudge::not_happened(nudge::on("purchase")).within(days(60)))
                         .then(nudge::send_email("winback")));
  rs.rules.push_back(nudge::rule_builder("abandoned_cart")
                         .on(nudge::on("cart"))
                         .check_after(hours(1))
                         .only_if(nudge::not_happened(nudge::on("purchase")).within(hours(1)))
                         .at_most(1, hours(24))
                         .then(nudge::send_email("cart_reminder")));
  rs.rules.push_back(nudge::rule_builder("interest_1")
                         .on(nudge::on("page_view", "/p/1"))
                         .once()
                         .then(nudge::web_push("p1")));
  return nudge::program::compile(rs);
}

const std::string contacts_csv =
    "contact,status,company\n"
    "c1,lead,Ekomed\n"
    "c2,customer,\n";

// t0 = 1704067200 = 2024-01-01T00:00:00Z
const std::string events_csv =
    "ts,contact,type,key,value\n"
    "1704067200,c2,cart,sku1,\n"         // reminder due t0+1h
    "1704067200,c1,page_view,/p/1,\n"    // push at once
    "1704069000,c1,cart,sku2,\n"         // t0+30m; purchase at t0+1h30m cancels it
    "1704070800,c2,cart,sku3,\n"         // t0+1h: reminder at t0+2h is capped
    "1704072600,c1,purchase,o1,20.00\n"  // t0+1h30m; win-back due t0+60d+1h30m
    "1704072600,c1,page_view,/p/1,\n";   // once: no second push

const std::string expected_csv =
    "ts,contact,rule,action,arg\n"
    "1704067200,c1,interest_1,web_push,p1\n"
    "1704070800,c2,abandoned_cart,send_email,cart_reminder\n"
    "1709256600,c1,winback,send_email,winback\n";

}  // namespace

TEST_CASE("replay: a log through a program gives the due actions sorted by time and contact",
          "[replay]") {
  temp_dir dir;
  auto result = nudge::replay(shop_program(), dir.write("events.csv", events_csv),
                              {.contacts_path = dir.write("contacts.csv", contacts_csv)});
  CHECK(csv(result) == expected_csv);
  CHECK(result.contacts_read == 2);
  CHECK(result.events_read == 6);
  CHECK(result.rejected == 0);
  // Default end: the last event plus the longest delay (60 days).
  CHECK(result.until == nudge::from_epoch(1704072600) + days(60));

  REQUIRE(result.stats.size() == 4);
  const auto& cart = result.stats[2];
  CHECK(cart.rule == "abandoned_cart");
  CHECK(cart.triggered == 3);
  CHECK(cart.passed == 1);
  CHECK(cart.failed == 1);
  CHECK(cart.suppressed == 1);
  CHECK(cart.emitted == 1);
  CHECK(cart.first == nudge::from_epoch(1704067200));
  CHECK(cart.last == nudge::from_epoch(1704074400));
  CHECK(result.stats[3].suppressed == 1);
}

TEST_CASE("replay: any batch size gives the same actions and statistics", "[replay][batch]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", contacts_csv);
  const auto events = dir.write("events.csv", events_csv);
  auto program = shop_program();
  const auto whole = nudge::replay(program, events, {.contacts_path = contacts, .batch_events = 0});
  const std::size_t size = GENERATE(1, 2, 3, 5, 100, nudge::replay_options::default_batch_events);
  const auto batched =
      nudge::replay(program, events, {.contacts_path = contacts, .batch_events = size});
  CHECK(csv(batched) == csv(whole));
  CHECK(batched.stats == whole.stats);
}

TEST_CASE("replay: timers due at an event's instant fire after that event", "[replay][clock]") {
  // The cart check at t0+1h sees the purchase stamped exactly t0+1h, whatever the batching.
  temp_dir dir;
  const auto events = dir.write("events.csv",
                                "ts,contact,type,key,value\n"
                                "1704067200,c1,cart,sku1,\n"
                                "1704070800,c1,purchase,o1,5.00\n");
  const std::size_t size = GENERATE(0, 1);
  auto result = nudge::replay(shop_program(), events,
                              {.until = nudge::from_epoch(1704070800), .batch_events = size});
  CHECK(csv(result) == "ts,contact,rule,action,arg\n");
  CHECK(result.stats[2].failed == 1);
}

TEST_CASE("replay: --until bounds timers and refuses later events", "[replay][clock]") {
  temp_dir dir;
  const auto events = dir.write("events.csv", events_csv);
  auto result =
      nudge::replay(shop_program(), events, {.until = nudge::from_epoch(1704072600) + days(30)});
  CHECK(csv(result) ==
        "ts,contact,rule,action,arg\n"
        "1704067200,c1,interest_1,web_push,p1\n"
        "1704070800,c2,abandoned_cart,send_email,cart_reminder\n");
  CHECK_THROWS_WITH(nudge::replay(shop_program(), events, {.until = nudge::from_epoch(1704070000)}),
                    events + ":5: ts 1704070800 is after the end of the replay (1704070000)");
}

TEST_CASE("replay: with stop the first bad line ends the replay with file:line",
          "[replay][errors]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", contacts_csv);
  const auto events = dir.write("events.csv", events_csv + "1704072600,c9,sigup,,\n");
  CHECK_THROWS_WITH(nudge::replay(shop_program(), events, {.contacts_path = contacts}),
                    events + ":8: unknown event type \"sigup\"");
}

TEST_CASE("replay: with skip bad lines go to the rejects file and are counted",
          "[replay][errors]") {
  temp_dir dir;
  const auto contacts = dir.write("contacts.csv", contacts_csv + "c1,lead,Dup\n");
  const auto events = dir.write("events.csv", events_csv +
                                                  "1704072600,c9,signup,,\n"  // a visitor
                                                  "1704072000,c1,signup,,\n"
                                                  "1704072600,c1,sigup,,\n");
  std::vector<nudge::input_problem> heard;
  auto result =
      nudge::replay(shop_program(), events,
                    {.contacts_path = contacts,
                     .on_error = nudge::error_policy::skip,
                     .rejects_path = (dir.path / "rejects.txt").string(),
                     .on_reject = [&](const nudge::input_problem& p) { heard.push_back(p); }});
  CHECK(csv(result) == expected_csv);
  CHECK(result.rejected == 3);
  CHECK(result.events_read == 7);
  CHECK(heard.size() == 3);
  CHECK(dir.read("rejects.txt") ==
        contacts + ":4: duplicate contact \"c1\" (first on line 2)\tc1,lead,Dup\n" + events +
            ":9: ts 1704072000 is before the previous event's ts 1704072600 (events must be sorted "
            "by ts)\t1704072000,c1,signup,,\n" +
            events + ":10: unknown event type \"sigup\"\t1704072600,c1,sigup,,\n");
}

TEST_CASE("replay: without a contacts file events create their contacts", "[replay]") {
  temp_dir dir;
  auto result = nudge::replay(
      shop_program(),
      dir.write("events.jsonl",
                R"({"ts": 1704067200, "contact": "v1", "type": "page_view", "key": "/p/1"})"
                "\n"));
  CHECK(csv(result, nudge::time_format::iso) ==
        "ts,contact,rule,action,arg\n"
        "2024-01-01T00:00:00Z,v1,interest_1,web_push,p1\n");
  CHECK(result.until == nudge::from_epoch(1704067200) + days(60));
}

TEST_CASE("events_before_last_instant: the events a piece hands on before its last instant",
          "[replay][clock]") {
  auto at = [](std::int64_t t) {
    nudge::event e;
    e.contact = "c1";
    e.type = "page_view";
    e.ts = nudge::from_epoch(t);
    return e;
  };
  const std::vector<nudge::event> none;
  CHECK(nudge::events_before_last_instant(none) == 0);
  const std::vector<nudge::event> one_instant{at(100), at(100)};
  CHECK(nudge::events_before_last_instant(one_instant) == 0);
  const std::vector<nudge::event> log{at(100), at(200), at(300), at(300)};
  CHECK(nudge::events_before_last_instant(log) == 2);
  CHECK(nudge::events_before_last_instant(std::span{log}.first(3)) == 2);
  CHECK(nudge::events_before_last_instant(std::span{log}.first(2)) == 1);
}

TEST_CASE("write_actions_csv: header even without actions", "[replay][output]") {
  std::ostringstream out;
  nudge::write_actions_csv(out, {}, nudge::time_format::iso);
  CHECK(out.str() == "ts,contact,rule,action,arg\n");
}

TEST_CASE("write_actions_csv: fields with commas, quotes and line breaks are quoted (RFC 4180)",
          "[replay][output]") {
  const std::string arg = "hi, there";
  const std::string quoted = "say \"hi\"";
  std::vector<nudge::due_action> actions(3);
  actions[0].contact = "Smith, John";
  actions[0].ts = nudge::from_epoch(1704103200);
  actions[0].rule = "hello";
  actions[0].arg = arg;
  actions[1].contact = "two\nlines";
  actions[1].ts = nudge::from_epoch(1704103200);
  actions[1].rule = "wf,1";
  actions[1].step = "s1";
  actions[1].kind = nudge::action_kind::send_sms;
  actions[1].arg = quoted;
  actions[2].contact = "plain";
  actions[2].ts = nudge::from_epoch(1704103201);
  actions[2].rule = "hello";
  actions[2].arg = "x";
  std::ostringstream out;
  nudge::write_actions_csv(out, actions, nudge::time_format::epoch);
  CHECK(out.str() ==
        "ts,contact,rule,action,arg\n"
        "1704103200,\"Smith, John\",hello,send_email,\"hi, there\"\n"
        "1704103200,\"two\nlines\",\"wf,1/s1\",send_sms,\"say \"\"hi\"\"\"\n"
        "1704103201,plain,hello,send_email,x\n");
}

// The writer formats lines into one buffer of a MiB: lines of every field length (eight-byte
// words and their tails, quoted or not), times in both formats and both ranges of put_epoch,
// and one line longer than the buffer, come out as write_csv_field and format_time make them.
TEST_CASE("write_actions_csv: every field length, both time formats, a line past the buffer",
          "[replay][output]") {
  std::vector<std::string> texts;
  for (std::size_t n = 0; n < 40; ++n) {
    texts.push_back(std::string(n, 'a'));
    texts.push_back(std::string(n, 'b') + (n % 3 == 0 ? "," : n % 3 == 1 ? "\"" : " "));
  }
  texts.push_back(std::string(std::size_t{3} << 20, '"'));  // 6 MiB once quoted
  std::vector<std::string> rules;                           // the actions' views point here
  for (std::size_t i = 0; i < texts.size(); ++i) {
    rules.push_back(texts[(i + 1) % texts.size()].substr(0, 50));
  }
  std::vector<nudge::due_action> actions;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    nudge::due_action a;
    a.contact = texts[i];
    a.ts = nudge::from_epoch(i % 2 == 0 ? 1704103200 + static_cast<std::int64_t>(i) * 86399
                                        : -86400 * static_cast<std::int64_t>(i));
    a.rule = rules[i];
    a.step = i % 4 == 0 ? std::string_view{texts[i % 10]} : std::string_view{};
    a.arg = texts[(i + 7) % texts.size()];
    actions.push_back(a);
  }
  for (const auto format : {nudge::time_format::epoch, nudge::time_format::iso}) {
    std::string expected = "ts,contact,rule,action,arg\n";
    for (const auto& a : actions) {
      expected += format == nudge::time_format::epoch ? std::to_string(nudge::to_epoch(a.ts))
                                                      : nudge::format_time(a.ts);
      expected += ',';
      nudge::write_csv_field(std::back_inserter(expected), a.contact);
      expected += ',';
      nudge::write_csv_field(std::back_inserter(expected),
                             a.from_workflow() ? std::string{a.rule} + "/" + std::string{a.step}
                                               : std::string{a.rule});
      expected += ',';
      nudge::write_csv_field(std::back_inserter(expected), a.action());
      expected += ',';
      nudge::write_csv_field(std::back_inserter(expected), a.arg);
      expected += '\n';
    }
    std::ostringstream out;
    nudge::write_actions_csv(out, actions, format);
    CHECK(out.str() == expected);
  }
}
