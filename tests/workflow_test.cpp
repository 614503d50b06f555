// Workflows: entries, steps, waits to the second, goals, re-entry, splits, yearly dates,
// statistics, validation, split invariance and the snapshot round trip with runs inside.
#include <algorithm>
#include <memory>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/explain.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::strings;
using test_support::t0;

using nudge::days;
using nudge::hours;
using nudge::minutes;

// An email_open / email_click attributed to a workflow step.
nudge::event opened(std::string contact, nudge::time_point at, std::string workflow,
                    std::string step, std::string type = "email_open") {
  auto e = ev(std::move(contact), std::move(type), at);
  e.props["workflow"] = std::move(workflow);
  e.props["step"] = std::move(step);
  return e;
}

std::shared_ptr<const nudge::program> compile(std::vector<nudge::workflow> workflows,
                                              std::vector<nudge::rule> rules = {}) {
  nudge::rule_set rs;
  rs.rules = std::move(rules);
  rs.workflows = std::move(workflows);
  return nudge::program::compile(std::move(rs));
}

// "time contact workflow/step verb(arg)" per due action.
strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}/{} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.step, a.action(), a.arg));
  }
  return out;
}

std::vector<nudge::due_action> run_all(const std::shared_ptr<const nudge::program>& p,
                                       const std::vector<nudge::event>& events,
                                       nudge::time_point until, nudge::engine* keep = nullptr) {
  nudge::engine local{p};
  nudge::engine& e = keep != nullptr ? *keep : local;
  return e.process(events, until);
}

nudge::workflow welcome_series() {
  return nudge::workflow_builder("welcome")
      .enter_on(nudge::on("signup"))
      .send("s1", nudge::send_email("welcome_1"))
      .wait_after_message("w1", nudge::message_moment::opened, days(1), days(3), "resend")
      .send("s2", nudge::send_email("welcome_2"))
      .wait_after_message("w2", nudge::message_moment::opened, days(1), days(3), "stop")
      .send("s3", nudge::send_email("welcome_3"), "stop")
      .send("resend",
            nudge::send_email("welcome_1") | nudge::with_param{"subject", "Did you miss this?"},
            "stop")
      .end("stop");
}

nudge::workflow abandoned_cart() {
  return nudge::workflow_builder("cart")
      .enter_on(nudge::on("cart"))
      .exit_on(nudge::on("purchase"))
      .wait("w1", hours(1))
      .send("r1", nudge::send_email("cart_1"))
      .wait("w2", days(1))
      .send("r2", nudge::send_email("cart_2"))
      .wait("w3", days(2))
      .send("r3", nudge::send_email("cart_3"));
}

}  // namespace

TEST_CASE("workflow: welcome series sends the next message only after an open",
          "[workflow][seed]") {
  auto p = compile({welcome_series()});
  nudge::engine engine{p};
  const std::vector<nudge::event> events{
      ev("a", "signup", t0),
      ev("b", "signup", t0),
      ev("c", "signup", t0),
      opened("c", t0 + hours(1), "newsletter", "s1"),  // another campaign: not this message
      opened("a", t0 + hours(2), "welcome", "s1"),
      opened("a", t0 + hours(30), "welcome", "s2"),
  };
  auto due = engine.process(events, t0 + days(10));
  CHECK(lines(due) == strings{
                          "2024-01-01T00:00:00Z a welcome/s1 send_email(welcome_1)",
                          "2024-01-01T00:00:00Z b welcome/s1 send_email(welcome_1)",
                          "2024-01-01T00:00:00Z c welcome/s1 send_email(welcome_1)",
                          "2024-01-02T02:00:00Z a welcome/s2 send_email(welcome_2)",
                          "2024-01-03T06:00:00Z a welcome/s3 send_email(welcome_3)",
                          "2024-01-04T00:00:00Z b welcome/resend send_email(welcome_1)",
                          "2024-01-04T00:00:00Z c welcome/resend send_email(welcome_1)",
                      });
  CHECK(due[5].definition->params.at("subject") == "Did you miss this?");
  const auto& st = engine.workflow_stats().at(0);
  CHECK(st.workflow == "welcome");
  CHECK(st.entered == 3);
  CHECK(st.completed == 3);
  CHECK(st.exited == 0);
  CHECK(st.active == 0);
  CHECK(st.sent == 7);
  CHECK(st.opened == 2);
  CHECK(st.steps[0].sent == 3);
  CHECK(st.steps[0].opened == 1);
  CHECK(st.steps[1].reached == 3);
  CHECK(st.steps[1].waiting == 0);
  CHECK(st.steps[2].opened == 1);
  CHECK(st.steps[5].sent == 2);
  CHECK(*st.first == t0);
  CHECK(*st.last == t0 + days(3));
  // Rule statistics are untouched by workflow actions.
  CHECK(engine.stats().empty());
}

TEST_CASE("workflow: waiting now counts runs stuck at a step across batches", "[workflow][stats]") {
  auto p = compile({welcome_series()});
  nudge::engine engine{p};
  engine.process(std::vector{ev("a", "signup", t0), ev("b", "signup", t0)}, t0);
  CHECK(engine.workflow_stats()[0].steps[1].waiting == 2);
  CHECK(engine.workflow_stats()[0].active == 2);
  engine.process(std::vector{opened("a", t0 + hours(2), "welcome", "s1")}, t0 + hours(2));
  CHECK(engine.workflow_stats()[0].steps[1].waiting == 2);  // a counts one day after the open
  engine.advance(t0 + hours(26));
  CHECK(engine.workflow_stats()[0].steps[1].waiting == 1);
  CHECK(engine.workflow_stats()[0].steps[3].waiting == 1);
}

TEST_CASE("workflow: abandoned cart sends three reminders and a purchase ends it",
          "[workflow][seed]") {
  auto p = compile({abandoned_cart()});
  nudge::engine engine{p};
  const std::vector<nudge::event> events{
      ev("a", "cart", t0),
      ev("a", "cart", t0 + minutes(10)),  // already inside: no second run
      ev("b", "cart", t0),
      ev("b", "purchase", t0 + hours(2)),
      ev("c", "cart", t0),
      ev("c", "purchase", t0 + hours(1)),  // the same second as the first reminder: goal first
  };
  auto due = engine.process(events, t0 + days(10));
  CHECK(lines(due) == strings{
                          "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                          "2024-01-01T01:00:00Z b cart/r1 send_email(cart_1)",
                          "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)",
                          "2024-01-04T01:00:00Z a cart/r3 send_email(cart_3)",
                      });
  const auto& st = engine.workflow_stats()[0];
  CHECK(st.entered == 3);
  CHECK(st.completed == 1);
  CHECK(st.exited == 2);
  CHECK(st.active == 0);
  for (const auto& s : st.steps) {
    CHECK(s.waiting == 0);
  }
}

TEST_CASE("workflow: a purchase that also enters restarts the run (reactivation)",
          "[workflow][seed]") {
  auto p = compile({nudge::workflow_builder("reactivation")
                        .enter_on(nudge::on("purchase"))
                        .exit_on(nudge::on("purchase"))
                        .wait("quiet", days(90))
                        .send("m1", nudge::send_email("we_miss_you"))
                        .wait("w2", days(14))
                        .send("m2", nudge::send_email("last_call"))
                        .wait("w3", days(14))
                        .act("dormant", nudge::set_stage("dormant"))});
  nudge::engine engine{p};
  auto due = engine.process(std::vector{ev("a", "purchase", t0), ev("b", "purchase", t0),
                                        ev("b", "purchase", t0 + days(60))},
                            t0 + days(200));
  CHECK(lines(due) == strings{
                          "2024-03-31T00:00:00Z a reactivation/m1 send_email(we_miss_you)",
                          "2024-04-14T00:00:00Z a reactivation/m2 send_email(last_call)",
                          "2024-05-30T00:00:00Z b reactivation/m1 send_email(we_miss_you)",
                          "2024-06-13T00:00:00Z b reactivation/m2 send_email(last_call)",
                      });
  CHECK(engine.find_contact("a")->stage == "dormant");
  CHECK(engine.find_contact("b")->stage == "dormant");
  CHECK(engine.workflow_stats()[0].entered == 3);
  CHECK(engine.workflow_stats()[0].exited == 1);
  CHECK(engine.workflow_stats()[0].completed == 2);
}

TEST_CASE("workflow: re-entry never, always and after a cool-down", "[workflow][reentry]") {
  auto make = [](nudge::workflow_reentry r) {
    return compile({nudge::workflow_builder("hello")
                        .enter_on(nudge::on("signup"))
                        .reenter(r, days(7))
                        .send("s", nudge::send_email("hello"))});
  };
  const std::vector<nudge::event> events{ev("a", "signup", t0), ev("a", "signup", t0 + days(3)),
                                         ev("a", "signup", t0 + days(8))};
  CHECK(lines(run_all(make(nudge::workflow_reentry::never), events, t0 + days(9))) ==
        strings{"2024-01-01T00:00:00Z a hello/s send_email(hello)"});
  CHECK(lines(run_all(make(nudge::workflow_reentry::always), events, t0 + days(9))) ==
        strings{"2024-01-01T00:00:00Z a hello/s send_email(hello)",
                "2024-01-04T00:00:00Z a hello/s send_email(hello)",
                "2024-01-09T00:00:00Z a hello/s send_email(hello)"});
  CHECK(lines(run_all(make(nudge::workflow_reentry::cool_down), events, t0 + days(9))) ==
        strings{"2024-01-01T00:00:00Z a hello/s send_email(hello)",
                "2024-01-09T00:00:00Z a hello/s send_email(hello)"});
}

TEST_CASE("workflow: at most one active run unless configured otherwise", "[workflow][reentry]") {
  auto make = [](std::uint32_t runs) {
    return compile({nudge::workflow_builder("drip")
                        .enter_on(nudge::on("cart"))
                        .max_active_runs(runs)
                        .wait("w", days(1))
                        .send("s", nudge::send_email("drip"))});
  };
  const std::vector<nudge::event> events{ev("a", "cart", t0), ev("a", "cart", t0 + hours(1))};
  CHECK(lines(run_all(make(1), events, t0 + days(3))) ==
        strings{"2024-01-02T00:00:00Z a drip/s send_email(drip)"});
  CHECK(lines(run_all(make(2), events, t0 + days(3))) ==
        strings{"2024-01-02T00:00:00Z a drip/s send_email(drip)",
                "2024-01-02T01:00:00Z a drip/s send_email(drip)"});
}

TEST_CASE("workflow: wait for an event with a timeout, and a condition branch",
          "[workflow][wait_for]") {
  auto p = compile(
      {nudge::workflow_builder("upsell")
           .enter_on(nudge::on("purchase", "cameras"))
           .wait_for("clicked", nudge::on("page_view", "/lenses"), days(2), "offer", "check")
           .branch("check", nudge::has_tag("vip"), "vip_offer", "stop")
           .send("vip_offer", nudge::send_email("vip_lenses"), "stop")
           .send("offer", nudge::send_email("lenses_offer"))
           .end("stop")});
  auto tagged = ev("c", "tag_added", t0, "vip");
  auto due =
      run_all(p,
              {ev("a", "purchase", t0, "cameras"), ev("a", "page_view", t0, "/home"),
               ev("a", "page_view", t0 + hours(5), "/lenses"), ev("b", "purchase", t0, "tv"),
               ev("c", "purchase", t0, "cameras"), tagged, ev("d", "purchase", t0, "cameras")},
              t0 + days(5));
  CHECK(lines(due) == strings{"2024-01-01T05:00:00Z a upsell/offer send_email(lenses_offer)",
                              "2024-01-03T00:00:00Z c upsell/vip_offer send_email(vip_lenses)"});
}

TEST_CASE("workflow: a split is deterministic by contact and workflow id", "[workflow][split]") {
  auto p = compile({nudge::workflow_builder("ab")
                        .enter_on(nudge::on("signup"))
                        .split("x", {{30, "a"}, {70, "b"}})
                        .send("a", nudge::send_email("variant_a"), "stop")
                        .send("b", nudge::send_email("variant_b"))
                        .end("stop")});
  std::vector<nudge::event> events;
  strings expected;
  for (int i = 0; i < 40; ++i) {
    const std::string id = fmt::format("c{:02}", i);
    events.push_back(ev(id, "signup", t0));
    const auto bucket = nudge::fnv1a64("ab", nudge::fnv1a64(id)) % 100;
    expected.push_back(fmt::format("2024-01-01T00:00:00Z {} ab/{} send_email(variant_{})", id,
                                   bucket < 30 ? "a" : "b", bucket < 30 ? "a" : "b"));
  }
  const auto got = lines(run_all(p, events, t0));
  CHECK(got == expected);
  CHECK(std::count_if(got.begin(), got.end(),
                      [](const std::string& l) { return l.ends_with("(variant_a)"); }) > 0);
  CHECK(std::count_if(got.begin(), got.end(),
                      [](const std::string& l) { return l.ends_with("(variant_b)"); }) > 0);
}

TEST_CASE("workflow: birthday yearly at 09:00, and 29 February on 28 February in other years",
          "[workflow][seed][date]") {
  auto p = compile({nudge::workflow_builder("birthday")
                        .enter_yearly_on("birthday", 9 * 3600)
                        .send("wish", nudge::send_email("happy_birthday"))});
  nudge::engine engine{p};
  engine.upsert_contacts(std::vector<nudge::contact>{
      {.id = "leap", .details = {{"birthday", std::string{"1992-02-29"}}}},
      {.id = "june", .details = {{"birthday", std::string{"1985-06-15"}}}},
      {.id = "none"},
  });
  const auto y2023 = nudge::from_epoch(1'673'308'800);  // 2023-01-10T00:00:00Z
  auto due = engine.process(std::vector{ev("leap", "signup", y2023), ev("none", "signup", y2023),
                                        ev("june", "signup", nudge::from_epoch(1'686'823'200))},
                            nudge::from_epoch(1'719'792'000));  // 2024-07-01T00:00:00Z
  // june signed up on 2023-06-15 at 10:00, after that day's 09:00: its first is in 2024.
  CHECK(lines(due) == strings{
                          "2023-02-28T09:00:00Z leap birthday/wish send_email(happy_birthday)",
                          "2024-02-29T09:00:00Z leap birthday/wish send_email(happy_birthday)",
                          "2024-06-15T09:00:00Z june birthday/wish send_email(happy_birthday)",
                      });
  CHECK(engine.workflow_stats()[0].entered == 3);
}

TEST_CASE("workflow: wait until a time of day on allowed weekdays", "[workflow][wait]") {
  // Mondays to Fridays at 10:00 (UTC for now).
  auto p = compile({nudge::workflow_builder("office")
                        .enter_on(nudge::on("signup"))
                        .wait_until_time("office_hours", 10 * 3600, 0b0011111)
                        .send("hello", nudge::send_email("hello"))});
  const auto saturday = t0 + days(5) + hours(12);  // 2024-01-06T12:00Z
  auto due = run_all(p,
                     {ev("a", "signup", t0 + hours(9)), ev("b", "signup", t0 + hours(10)),
                      ev("c", "signup", t0 + hours(11)), ev("d", "signup", saturday)},
                     t0 + days(10));
  CHECK(lines(due) == strings{"2024-01-01T10:00:00Z a office/hello send_email(hello)",
                              "2024-01-01T10:00:00Z b office/hello send_email(hello)",
                              "2024-01-02T10:00:00Z c office/hello send_email(hello)",
                              "2024-01-08T10:00:00Z d office/hello send_email(hello)"});
}

TEST_CASE("workflow: wait until a date detail minus an offset", "[workflow][wait][date]") {
  auto p = compile({nudge::workflow_builder("renewal")
                        .enter_on(nudge::on("signup"))
                        .wait_until_date("before", "renewal", -days(3))
                        .send("remind", nudge::send_email("renew_soon"))});
  nudge::engine engine{p};
  engine.upsert_contacts(std::vector<nudge::contact>{
      {.id = "a", .details = {{"renewal", nudge::from_epoch(1'706'745'600)}}},  // 2024-02-01
      {.id = "b"}});
  auto due =
      engine.process(std::vector{ev("a", "signup", t0), ev("b", "signup", t0)}, t0 + days(40));
  CHECK(lines(due) == strings{"2024-01-01T00:00:00Z b renewal/remind send_email(renew_soon)",
                              "2024-01-29T00:00:00Z a renewal/remind send_email(renew_soon)"});
}

TEST_CASE("workflow: internal actions, completion moves the contact to a group, goal condition",
          "[workflow][seed]") {
  // Best customer: three purchases within a year, or a high declared value -> VIP group.
  auto p = compile(
      {nudge::workflow_builder("best_customer")
           .enter_on(
               nudge::on("purchase"),
               nudge::any({nudge::happened(nudge::on("purchase")).within(days(365)).at_least(3),
                           nudge::contact_detail("value_12m").ge(1000.0)}))
           .reenter(nudge::workflow_reentry::never)
           .act("score", nudge::add_score(50))
           .send("thanks", nudge::send_email("vip_welcome"))
           .on_complete_move("customers", "vip")});
  nudge::engine engine{p};
  engine.upsert_contacts(std::vector<nudge::contact>{
      {.id = "a", .groups = {"customers"}},
      {.id = "b", .details = {{"value_12m", 1500.0}}, .groups = {"customers"}},
      {.id = "c"}});
  auto due = engine.process(
      std::vector{ev("a", "purchase", t0), ev("a", "purchase", t0 + days(100)),
                  ev("a", "purchase", t0 + days(200)), ev("a", "purchase", t0 + days(300)),
                  ev("b", "purchase", t0), ev("c", "purchase", t0),
                  ev("c", "purchase", t0 + days(200)), ev("c", "purchase", t0 + days(400))},
      t0 + days(401));
  CHECK(lines(due) ==
        strings{"2024-01-01T00:00:00Z b best_customer/thanks send_email(vip_welcome)",
                "2024-07-19T00:00:00Z a best_customer/thanks send_email(vip_welcome)"});
  CHECK(engine.find_contact("a")->groups == nudge::name_set{"vip"});
  CHECK(engine.find_contact("a")->score == 50);
  CHECK(engine.find_contact("b")->groups == nudge::name_set{"vip"});
  CHECK(engine.find_contact("c")->groups.empty());
}

TEST_CASE("workflow: an exit condition ends the run wherever it is", "[workflow][goal]") {
  auto p = compile(
      {nudge::workflow_builder("nurture")
           .enter_on(nudge::on("signup"))
           .exit_when(nudge::status().eq("customer"))
           .wait("w1", days(2))
           .send("m1", nudge::send_email("nurture_1"))
           .wait("w2", days(2))
           .send("m2", nudge::send_email("nurture_2"))},
      {nudge::rule_builder("buyer").on(nudge::on("purchase")).then(nudge::set_status("customer"))});
  nudge::engine engine{p};
  auto due = engine.process(
      std::vector{ev("a", "signup", t0), ev("b", "signup", t0), ev("b", "purchase", t0 + days(3))},
      t0 + days(10));
  CHECK(lines(due) == strings{"2024-01-03T00:00:00Z a nurture/m1 send_email(nurture_1)",
                              "2024-01-03T00:00:00Z b nurture/m1 send_email(nurture_1)",
                              "2024-01-05T00:00:00Z a nurture/m2 send_email(nurture_2)"});
  CHECK(engine.workflow_stats()[0].exited == 1);
  CHECK(engine.workflow_stats()[0].steps[3].waiting == 0);
}

TEST_CASE("workflow: split invariance and the snapshot round trip with runs inside",
          "[workflow][invariance]") {
  auto p = compile({welcome_series(), abandoned_cart(),
                    nudge::workflow_builder("birthday")
                        .enter_yearly_on("birthday", 9 * 3600)
                        .send("wish", nudge::send_email("happy_birthday"))});
  std::vector<nudge::event> events{
      ev("a", "signup", t0),
      ev("a", "cart", t0 + minutes(5)),
      opened("a", t0 + hours(2), "welcome", "s1"),
      ev("b", "cart", t0 + hours(3)),
      ev("a", "purchase", t0 + hours(4)),
      ev("b", "signup", t0 + days(1)),
      opened("b", t0 + days(2), "welcome", "s1", "email_click"),
      ev("a", "cart", t0 + days(3)),
  };
  const nudge::contact with_birthday{.id = "a",
                                     .details = {{"birthday", std::string{"1990-01-05"}}}};
  const auto until = t0 + days(12);
  nudge::engine whole{p};
  whole.upsert_contact(with_birthday);
  const auto expected = whole.process(events, until);
  REQUIRE(expected.size() > 6);

  const std::size_t cut = GENERATE(1, 3, 5, 7);
  nudge::memory_store store;
  nudge::engine first{p, &store};
  first.upsert_contact(with_birthday);
  std::vector<nudge::due_action> got =
      first.process(std::span<const nudge::event>{events.data(), cut}, events[cut - 1].ts);
  // Through a snapshot into another engine, as a second process would.
  std::ostringstream out;
  nudge::write_snapshot(out, nudge::take_snapshot(first, store));
  nudge::engine second{p};
  nudge::load_snapshot(nudge::parse_snapshot(out.str(), p.get()), second);
  for (std::size_t i = cut; i < events.size(); ++i) {
    for (auto& a : second.process(std::span<const nudge::event>{&events[i], 1}, events[i].ts)) {
      got.push_back(a);
    }
  }
  for (auto& a : second.advance(until)) {
    got.push_back(a);
  }
  CHECK(lines(got) == lines(expected));
  CHECK(second.workflow_stats() == whole.workflow_stats());
  for (const char* id : {"a", "b"}) {
    CHECK(second.store().load(id) == whole.store().load(id));
  }
}

TEST_CASE("workflow: idempotency keys differ per run and step, and repeat on replay",
          "[workflow][keys]") {
  auto p = compile({nudge::workflow_builder("hello")
                        .enter_on(nudge::on("signup"))
                        .send("s1", nudge::send_email("one"))
                        .send("s2", nudge::send_email("two"))});
  const std::vector<nudge::event> events{ev("a", "signup", t0), ev("a", "signup", t0 + days(1))};
  const auto first = run_all(p, events, t0 + days(2));
  const auto again = run_all(p, events, t0 + days(2));
  REQUIRE(first.size() == 4);
  CHECK(first == again);
  std::set<std::uint64_t> keys;
  for (const auto& a : first) {
    keys.insert(a.idempotency_key);
  }
  CHECK(keys.size() == 4);
}

TEST_CASE("workflow: validation names every problem with its pointer", "[workflow][validate]") {
  nudge::rule_set rs;
  rs.workflows.push_back(nudge::workflow_builder("bad")
                             .enter_on(nudge::on("signup"))
                             .send("s1", nudge::send_email("x"), "nowhere")
                             .act("loop_a", nudge::add_tag("t"), "loop_b")
                             .branch("loop_b", nudge::has_tag("t"), "loop_a", "")
                             .split("x", {{50, "s1"}, {40, "s1"}})
                             .send("internal", nudge::add_tag("t")));
  rs.workflows.push_back(nudge::workflow_builder("bad").enter_on(nudge::on("")));
  try {
    nudge::program::compile(rs);
    FAIL("expected a rule_error");
  } catch (const nudge::rule_error& e) {
    strings got;
    for (const auto& d : e.diagnostics()) {
      got.push_back(d.json_pointer + " " + d.code + ": " + d.message);
    }
    CHECK(got == strings{
                     "/workflows/0/steps/0/next unknown_step: no step \"nowhere\" in workflow "
                     "\"bad\"",
                     "/workflows/0/steps/3/split bad_split: split percentages must add up to 100 "
                     "(they add up to 90)",
                     "/workflows/0/steps/4/send/do bad_action: a send step takes a message or "
                     "other external action, not add_tag (use an \"act\" step)",
                     "/workflows/0/steps/1 unreachable_step: step \"loop_a\" cannot be reached "
                     "from the first step",
                     "/workflows/0/steps/2 unreachable_step: step \"loop_b\" cannot be reached "
                     "from the first step",
                     "/workflows/0/steps/3 unreachable_step: step \"x\" cannot be reached from "
                     "the first step",
                     "/workflows/0/steps/4 unreachable_step: step \"internal\" cannot be reached "
                     "from the first step",
                     "/workflows/0/steps/1 cycle_without_wait: steps loop_a -> loop_b -> loop_a "
                     "form a cycle without a wait of fixed length or a wait for an event",
                     "/workflows/1/id duplicate_id: duplicate workflow id \"bad\" (first used by "
                     "/workflows/0)",
                     "/workflows/1/entry/on/event missing_event: an event type is required",
                     "/workflows/1/steps missing_steps: a workflow needs at least one step",
                 });
  }
}

TEST_CASE("workflow: entries, steps, actions and completion go into the contact's timeline",
          "[workflow][timeline]") {
  nudge::rule_set rs;
  rs.workflows = {welcome_series()};
  rs.timeline_size = 20;
  auto p = nudge::program::compile(std::move(rs));
  nudge::engine engine{p};
  engine.process(std::vector{ev("a", "signup", t0)}, t0 + days(4));
  strings got;
  for (const auto& e : nudge::explain(*p, *engine.store().load("a"))) {
    got.push_back(nudge::format_time(e.ts) + " " + e.text);
  }
  CHECK(got == strings{
                   "2024-01-01T00:00:00Z workflow welcome: entered",
                   "2024-01-01T00:00:00Z workflow welcome: reached step s1 send_email welcome_1",
                   "2024-01-01T00:00:00Z workflow welcome: step s1 send_email welcome_1 emitted",
                   "2024-01-01T00:00:00Z workflow welcome: reached step w1",
                   "2024-01-04T00:00:00Z workflow welcome: reached step resend send_email "
                   "welcome_1",
                   "2024-01-04T00:00:00Z workflow welcome: step resend send_email welcome_1 "
                   "emitted",
                   "2024-01-04T00:00:00Z workflow welcome: reached step stop",
                   "2024-01-04T00:00:00Z workflow welcome: completed",
               });
}
