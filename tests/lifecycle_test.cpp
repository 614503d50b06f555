// Workflow lifecycle and versions: a running engine taking a changed program (draft, paused,
// archived, reactivated; a new version with runs moved by step id; a step gone), to the second,
// with split invariance and a snapshot round trip across the change.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/explain.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::strings;
using test_support::t0;

using nudge::days;
using nudge::hours;
using nudge::minutes;

std::shared_ptr<const nudge::program> compile(std::vector<nudge::workflow> workflows,
                                              std::uint32_t timeline = 0) {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("hello").on(nudge::on("signup")).then(nudge::send_email("hello")));
  rs.workflows = std::move(workflows);
  rs.timeline_size = timeline;
  return nudge::program::compile(std::move(rs));
}

strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}/{} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.step, a.action(), a.arg));
  }
  return out;
}

std::vector<nudge::due_action> run(nudge::engine& e, const std::vector<nudge::event>& events,
                                   nudge::time_point now) {
  return e.process(events, now);
}

void append(std::vector<nudge::due_action>& to, std::vector<nudge::due_action> more) {
  to.insert(to.end(), more.begin(), more.end());
}

// Version 1: an hour after the cart, a reminder; a day later, a second one.
nudge::workflow_builder cart(nudge::workflow_status status = nudge::workflow_status::active) {
  return std::move(nudge::workflow_builder("cart")
                       .enter_on(nudge::on("cart"))
                       .exit_on(nudge::on("purchase"))
                       .status(status)
                       .wait("w1", hours(1))
                       .send("r1", nudge::send_email("cart_1"))
                       .wait("w2", days(1))
                       .send("r2", nudge::send_email("cart_2")));
}

// `w` with the steps of `from` (a new version's steps).
nudge::workflow with_steps(nudge::workflow w, const nudge::workflow& from) {
  w.steps = from.steps;
  return w;
}

const nudge::workflow_step_stats& step(const nudge::workflow_stats& w, const std::string& id) {
  for (const auto& s : w.steps) {
    if (s.step == id) {
      return s;
    }
  }
  FAIL("no step " << id);
  return w.steps.front();
}

}  // namespace

TEST_CASE("lifecycle: a draft is validated but nobody enters and nothing runs",
          "[lifecycle][draft]") {
  auto draft = compile({cart(nudge::workflow_status::draft).build(),
                        nudge::workflow_builder("birthday")
                            .status(nudge::workflow_status::draft)
                            .enter_yearly_on("birthday", 9 * 3600)
                            .send("wish", nudge::send_email("happy_birthday"))});
  nudge::engine e{draft};
  e.upsert_contact({.id = "b", .details = {{"birthday", std::string{"1990-01-05"}}}});
  auto got = run(e, {ev("a", "cart", t0), ev("b", "cart", t0 + minutes(1))}, t0 + days(30));
  CHECK(got.empty());
  CHECK(e.workflow_stats()[0].entered == 0);
  CHECK(e.store().load("a")->runs.empty());
  CHECK(e.store().load("b")->timers.empty());  // no birthday timer for a draft

  // A draft must still be a valid workflow.
  nudge::rule_set bad;
  bad.workflows.push_back(nudge::workflow_builder("broken")
                              .status(nudge::workflow_status::draft)
                              .enter_on(nudge::on("cart"))
                              .wait("w", hours(1), "nowhere"));
  CHECK_THROWS_WITH(nudge::program::compile(bad), Catch::Contains("/workflows/0/steps/0/next"));
}

TEST_CASE("lifecycle: paused holds contacts, takes nobody in, and resumes at reactivation",
          "[lifecycle][pause]") {
  auto active = compile({cart()});
  auto paused = compile({cart(nudge::workflow_status::paused)});
  nudge::engine e{active};
  std::vector<nudge::due_action> got;
  // a: reminder 1 at 01:00, then waits for reminder 2 at 2024-01-02T01:00.
  // c: enters at 01:30, its first wait would end at 02:30, inside the pause.
  append(got, run(e, {ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))}, t0 + hours(2)));
  CHECK(lines(got) == strings{"2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)"});

  e.change_program(paused, t0 + hours(2));
  // b's cart comes during the pause: it does not enter, now or later.
  CHECK(run(e, {ev("b", "cart", t0 + hours(5))}, t0 + hours(12)).empty());
  CHECK(e.store().load("b")->runs.empty());
  const auto c = e.store().load("c");
  REQUIRE(c->runs.size() == 1);
  CHECK(c->runs[0].held);  // its wait ended at 02:30 while paused: held, nothing sent
  CHECK(c->timers.empty());
  CHECK(step(e.workflow_stats()[0], "w1").waiting == 1);  // still stuck there
  CHECK(step(e.workflow_stats()[0], "w2").waiting == 1);

  // Active again at 12:00: c's elapsed wait ends at that instant (not at 02:30, not later);
  // a's wait, still running, ends when it was due.
  e.change_program(active, t0 + hours(12));
  CHECK_FALSE(e.store().load("c")->runs[0].held);
  append(got, e.advance(t0 + days(3)));
  CHECK(lines(got) == strings{
                          "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                          "2024-01-01T12:00:00Z c cart/r1 send_email(cart_1)",
                          "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)",
                          "2024-01-02T12:00:00Z c cart/r2 send_email(cart_2)",
                      });
  const auto& w = e.workflow_stats()[0];
  CHECK(w.entered == 2);
  CHECK(w.completed == 2);
  CHECK(w.active == 0);
  CHECK(w.ended == 0);
  CHECK(step(w, "w1").waiting == 0);

  SECTION("a goal still ends a run during the pause") {
    nudge::engine g{active};
    run(g, {ev("a", "cart", t0)}, t0 + hours(2));
    g.change_program(paused, t0 + hours(2));
    run(g, {ev("a", "purchase", t0 + hours(3))}, t0 + hours(3));
    g.change_program(active, t0 + hours(4));
    CHECK(g.advance(t0 + days(3)).empty());
    CHECK(g.workflow_stats()[0].exited == 1);
  }
}

TEST_CASE("lifecycle: archiving ends the runs inside, counted as ended, and sends nothing",
          "[lifecycle][archive]") {
  auto active = compile({cart()}, 16);
  auto archived = compile({cart(nudge::workflow_status::archived)}, 16);
  nudge::engine e{active};
  auto got = run(e, {ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))}, t0 + hours(2));
  CHECK(lines(got) == strings{"2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)"});
  e.change_program(archived, t0 + hours(2));
  CHECK(e.store().load("a")->runs.empty());
  CHECK(e.store().load("a")->timers.empty());
  CHECK(run(e, {ev("b", "cart", t0 + hours(3))}, t0 + days(5)).empty());
  const auto& w = e.workflow_stats()[0];
  CHECK(w.entered == 2);
  CHECK(w.ended == 2);
  CHECK(w.completed == 0);
  CHECK(w.exited == 0);
  CHECK(w.active == 0);
  CHECK(step(w, "w2").ended == 1);  // a was waiting for its second reminder
  CHECK(step(w, "w1").ended == 1);  // c for its first
  CHECK(step(w, "w2").waiting == 0);
  CHECK(step(w, "w1").waiting == 0);
  const auto a = e.store().load("a");
  const auto last = a->timeline[a->timeline.size() - 1];
  CHECK(nudge::explain_entry(*archived, last).text ==
        "workflow cart: exited: the workflow was archived (or set back to draft): the run ended");
  CHECK(last.ts == t0 + hours(2));
}

TEST_CASE("lifecycle: a new version moves runs by step id, keeping their pending waits",
          "[lifecycle][version]") {
  auto v1 = compile({cart()});
  // Version 2: another second reminder, a third one two days later.
  auto v2 = compile({with_steps(cart().version(2, nudge::version_policy::move_by_step_id).build(),
                                nudge::workflow_builder("cart")
                                    .wait("w1", hours(1))
                                    .send("r1", nudge::send_email("cart_1"))
                                    .wait("w2", days(1))
                                    .send("r2", nudge::send_email("cart_2_new"))
                                    .wait("w3", days(2))
                                    .send("r3", nudge::send_email("cart_3")))});
  nudge::engine e{v1};
  auto got = run(e, {ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))}, t0 + hours(2));
  e.change_program(v2, t0 + hours(2));
  const auto a = e.store().load("a");
  REQUIRE(a->runs.size() == 1);
  CHECK(a->runs[0].version == 2);
  append(got, e.advance(t0 + days(5)));
  CHECK(lines(got) == strings{
                          "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                          "2024-01-01T02:30:00Z c cart/r1 send_email(cart_1)",
                          "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2_new)",
                          "2024-01-02T02:30:00Z c cart/r2 send_email(cart_2_new)",
                          "2024-01-04T01:00:00Z a cart/r3 send_email(cart_3)",
                          "2024-01-04T02:30:00Z c cart/r3 send_email(cart_3)",
                      });
  // Not restarted, not duplicated: one entry each, and a new cart while inside does not enter
  // again (at most one run).
  const auto& w = e.workflow_stats()[0];
  CHECK(w.entered == 2);
  CHECK(w.completed == 2);
  CHECK(step(w, "r1").sent == 2);
  CHECK(step(w, "r3").sent == 2);
}

TEST_CASE("lifecycle: a run whose step the new version lacks ends, counted as ended",
          "[lifecycle][version]") {
  auto v1 = compile({cart()});
  // Version 2 replaces w2 with a two-day wait w2b.
  auto v2 = compile(
      {with_steps(cart().version(2).build(), nudge::workflow_builder("cart")
                                                 .wait("w1", hours(1))
                                                 .send("r1", nudge::send_email("cart_1"))
                                                 .wait("w2b", days(2))
                                                 .send("r2", nudge::send_email("cart_2")))});
  nudge::engine e{v1};
  auto got = run(e, {ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))}, t0 + hours(2));
  e.change_program(v2, t0 + hours(2));
  CHECK(e.store().load("a")->runs.empty());  // a was at w2, which version 2 lacks
  append(got, e.advance(t0 + days(5)));
  CHECK(lines(got) == strings{
                          "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                          "2024-01-01T02:30:00Z c cart/r1 send_email(cart_1)",
                          "2024-01-03T02:30:00Z c cart/r2 send_email(cart_2)",
                      });
  const auto& w = e.workflow_stats()[0];
  CHECK(w.ended == 1);
  CHECK(w.completed == 1);
  CHECK(w.active == 0);
  // Statistics follow the new version's steps; w2's counts went with it.
  CHECK(w.steps.size() == 4);
  CHECK(step(w, "w2b").reached == 1);
}

TEST_CASE("lifecycle: changes the running engine cannot take are refused, naming where",
          "[lifecycle][validate]") {
  auto v1 = compile({cart()});
  nudge::engine e{v1};
  run(e, {ev("a", "cart", t0)}, t0 + hours(2));
  auto refused = [&](const std::shared_ptr<const nudge::program>& next) {
    try {
      e.change_program(next, t0 + hours(2));
    } catch (const nudge::rule_error& err) {
      return std::string{err.what()};
    }
    return std::string{"accepted"};
  };
  // Steps changed, version not raised.
  auto same_version = compile({with_steps(
      cart().build(),
      nudge::workflow_builder("cart").wait("w1", hours(2)).send("r1", nudge::send_email("x")))});
  CHECK(refused(same_version) ==
        "/workflows/0/version: the steps of workflow \"cart\" changed but its version is still 1 "
        "(the running one is 1); a changed workflow needs a higher version");
  // Removed or moved.
  CHECK(refused(compile({})) ==
        "/workflows: workflow \"cart\" (/workflows/0) is missing; a workflow is never removed "
        "from a running program: set its status to \"archived\" (states, statistics and the "
        "outbox name workflows by position)");
  auto other = nudge::workflow_builder("other").enter_on(nudge::on("x")).end("e").build();
  CHECK_THAT(refused(compile({other, cart().build()})),
             Catch::StartsWith("/workflows/0/id: workflow \"other\" stands where the running "
                               "program has \"cart\""));
  // Rules changed.
  nudge::rule_set rs = v1->rules();
  rs.rules[0].id = "hello2";
  CHECK_THAT(refused(nudge::program::compile(rs)), Catch::StartsWith("the rules, segments"));
  // A change before a contact's last evaluation would rewrite its past.
  auto archived = compile({cart(nudge::workflow_status::archived)});
  CHECK_THROWS_WITH(e.change_program(archived, t0),
                    "nudge::migrate_state: contact \"a\" was last evaluated at "
                    "2024-01-01T01:00:00Z, after the program change at 2024-01-01T00:00:00Z");
  // Nothing changed by any refusal: the engine still runs version 1.
  CHECK(lines(e.advance(t0 + days(2))) ==
        strings{"2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)"});
  // Appending a workflow is fine.
  auto appended = compile({cart().build(), other});
  CHECK_NOTHROW(e.change_program(appended, t0 + days(2)));
  CHECK(e.workflow_stats().size() == 2);
  CHECK(e.workflow_stats()[0].completed == 1);
}

TEST_CASE("lifecycle: split invariance and the snapshot round trip across program changes",
          "[lifecycle][invariance]") {
  auto active = compile({cart()});
  auto paused = compile({cart(nudge::workflow_status::paused)});
  const std::vector<nudge::event> before{ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90)),
                                         ev("d", "cart", t0 + minutes(100))};
  const std::vector<nudge::event> during{ev("b", "cart", t0 + hours(5)),
                                         ev("d", "purchase", t0 + hours(6))};
  const auto pause_at = t0 + hours(2), resume_at = t0 + hours(12), until = t0 + days(3);

  nudge::engine whole{active};
  auto expected = whole.process(before, pause_at);
  whole.change_program(paused, pause_at);
  append(expected, whole.process(during, resume_at));
  whole.change_program(active, resume_at);
  append(expected, whole.advance(until));
  REQUIRE(expected.size() == 4);

  const int split = GENERATE(0, 1, 2);
  nudge::memory_store store;
  nudge::engine first{active, &store};
  std::vector<nudge::due_action> got;
  for (const auto& e : before) {  // one event per batch
    append(got, first.process(std::span<const nudge::event>{&e, 1}, e.ts));
  }
  append(got, first.advance(pause_at));
  first.change_program(paused, pause_at);
  nudge::engine second{paused};
  if (split == 0) {
    append(got, first.process(during, resume_at));
    first.change_program(active, resume_at);
    append(got, first.advance(until));
  } else {
    // Through a snapshot taken during the pause, into a new engine on the paused program.
    if (split == 2) {
      append(got, first.process(std::span<const nudge::event>{during.data(), 1}, during[0].ts));
    }
    std::ostringstream out;
    nudge::write_snapshot(out, nudge::take_snapshot(first, store));
    nudge::load_snapshot(nudge::parse_snapshot(out.str(), paused.get()), second);
    const std::size_t from = split == 2 ? 1 : 0;
    append(got,
           second.process(std::span<const nudge::event>{during.data() + from, during.size() - from},
                          resume_at));
    second.change_program(active, resume_at);
    append(got, second.advance(until));
  }
  nudge::engine& last = split == 0 ? first : second;
  CHECK(lines(got) == lines(expected));
  CHECK(last.workflow_stats() == whole.workflow_stats());
  for (const char* id : {"a", "b", "c", "d"}) {
    CHECK(last.store().load(id) == whole.store().load(id));
  }
}

TEST_CASE("lifecycle: the SQLite store takes a program change durably across reopening",
          "[lifecycle][sqlite]") {
  const auto dir = std::filesystem::current_path() / fmt::format("lifecycle_test_{}", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "state.db").string();
  auto active = compile({cart()});
  auto paused = compile({cart(nudge::workflow_status::paused)});
  auto v2 = compile(
      {with_steps(cart().version(2).build(), nudge::workflow_builder("cart")
                                                 .wait("w1", hours(1))
                                                 .send("r1", nudge::send_email("cart_1"))
                                                 .wait("w2", days(1))
                                                 .send("r2", nudge::send_email("cart_2_new")))});
  strings got;
  {
    nudge::sqlite_store db{path, *active};
    nudge::durable_engine engine{active, db, nullptr};
    engine.process(std::vector{ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))},
                   t0 + hours(2));
    engine.change_program(paused, t0 + hours(2));
    engine.advance(t0 + hours(12));
  }
  {
    // Reopened with the paused rules: the change was committed, c is held.
    nudge::sqlite_store db{path, *paused};
    CHECK(db.load("c")->runs.at(0).held);
    nudge::durable_engine engine{paused, db, nullptr};
    CHECK(engine.engine().workflow_stats()[0].entered == 2);
    engine.change_program(v2, t0 + hours(12));
    engine.advance(t0 + days(3));
    for (const auto& e : db.outbox()) {  // no sink: everything stays in the outbox
      const auto& w = v2->rules().workflows.at(e.rule_index);
      got.push_back(fmt::format("{} {} {}/{} {}({})", nudge::format_time(e.ts), e.contact, w.id,
                                w.steps.at(e.action_index).id, nudge::action_name(e.kind), e.arg));
    }
  }
  {
    nudge::sqlite_store db{path, *v2};
    CHECK(db.load("a")->runs.empty());
    nudge::durable_engine engine{v2, db, nullptr};
    CHECK(engine.engine().workflow_stats()[0].completed == 2);
    // Opening with the version 1 rules now is refused: the database follows version 2.
    CHECK_THROWS_AS(nudge::sqlite_store(path, *active), nudge::sqlite_error);
  }
  std::filesystem::remove_all(dir);
  CHECK(got == strings{
                   "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                   "2024-01-01T12:00:00Z c cart/r1 send_email(cart_1)",
                   "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2_new)",
                   "2024-01-02T12:00:00Z c cart/r2 send_email(cart_2_new)",
               });
}

TEST_CASE("lifecycle: finish on the old version keeps runs on the steps they entered",
          "[lifecycle][version]") {
  auto v1 = compile({cart()});
  const auto old_steps = cart().build().steps;
  auto v2 = compile({with_steps(
      cart().version(2, nudge::version_policy::finish_on_old).keep_version(1, old_steps).build(),
      nudge::workflow_builder("cart")
          .wait("w1", hours(1))
          .send("r1", nudge::send_email("cart_1"))
          .wait("w2", days(1))
          .send("r2", nudge::send_email("cart_2_new"))
          .wait("w3", days(2))
          .send("r3", nudge::send_email("cart_3")))});
  nudge::engine e{v1};
  auto got = run(e, {ev("a", "cart", t0)}, t0 + hours(2));
  e.change_program(v2, t0 + hours(2));
  CHECK(e.store().load("a")->runs.at(0).version == 1);
  append(got, run(e, {ev("b", "cart", t0 + hours(3))}, t0 + days(5)));
  // a finishes version 1 (its second reminder as it was, no third); b walks version 2.
  CHECK(lines(got) == strings{
                          "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                          "2024-01-01T04:00:00Z b cart/r1 send_email(cart_1)",
                          "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)",
                          "2024-01-02T04:00:00Z b cart/r2 send_email(cart_2_new)",
                          "2024-01-04T04:00:00Z b cart/r3 send_email(cart_3)",
                      });
  const auto& w = e.workflow_stats()[0];
  CHECK(w.completed == 2);
  CHECK(step(w, "r2").sent == 2);  // statistics merge versions by step id
  CHECK(step(w, "r3").sent == 1);

  SECTION("through a snapshot of the version 2 engine") {
    nudge::memory_store store;
    nudge::engine first{v1, &store};
    run(first, {ev("a", "cart", t0)}, t0 + hours(2));
    first.change_program(v2, t0 + hours(2));
    std::ostringstream out;
    nudge::write_snapshot(out, nudge::take_snapshot(first, store));
    nudge::engine second{v2};
    nudge::load_snapshot(nudge::parse_snapshot(out.str(), v2.get()), second);
    CHECK(lines(second.advance(t0 + days(5))) ==
          strings{"2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)"});
  }
  SECTION("move by step id, with the old version kept: a run whose step is gone finishes there") {
    auto moved = compile({with_steps(cart().version(2).keep_version(1, old_steps).build(),
                                     nudge::workflow_builder("cart")
                                         .wait("w1", hours(1))
                                         .send("r1", nudge::send_email("cart_1"))
                                         .wait("w2b", days(2))
                                         .send("r2", nudge::send_email("cart_2_new")))});
    nudge::engine m{v1};
    auto out = run(m, {ev("a", "cart", t0), ev("c", "cart", t0 + minutes(90))}, t0 + hours(2));
    m.change_program(moved, t0 + hours(2));
    append(out, m.advance(t0 + days(5)));
    CHECK(lines(out) == strings{
                            "2024-01-01T01:00:00Z a cart/r1 send_email(cart_1)",
                            "2024-01-01T02:30:00Z c cart/r1 send_email(cart_1)",
                            "2024-01-02T01:00:00Z a cart/r2 send_email(cart_2)",
                            "2024-01-03T02:30:00Z c cart/r2 send_email(cart_2_new)",
                        });
    CHECK(m.workflow_stats()[0].ended == 0);
  }
  SECTION("the old version must be kept, and kept as it ran") {
    auto dropped =
        compile({with_steps(cart().version(2, nudge::version_policy::finish_on_old).build(),
                            v2->rules().workflows[0])});
    nudge::engine r{v1};
    run(r, {ev("a", "cart", t0)}, t0 + hours(2));
    CHECK_THROWS_WITH(r.change_program(dropped, t0 + hours(2)),
                      "/workflows/0/previous_versions: workflow \"cart\" lets runs finish on "
                      "version 1, but the new rules do not keep that version's steps (add them "
                      "under previous_versions)");
    auto altered_steps = old_steps;
    altered_steps[1].act.arg = "cart_1_altered";
    auto altered = compile({with_steps(cart()
                                           .version(2, nudge::version_policy::finish_on_old)
                                           .keep_version(1, altered_steps)
                                           .build(),
                                       v2->rules().workflows[0])});
    CHECK_THROWS_WITH(r.change_program(altered, t0 + hours(2)),
                      "/workflows/0/previous_versions/0/steps: version 1 of workflow \"cart\" "
                      "differs from the running version 1; a kept version must keep its steps as "
                      "they ran");
  }
}

TEST_CASE("lifecycle: previous versions in a rule file, with located errors", "[lifecycle][json]") {
  const std::string good = R"({"rules": [], "workflows": [{
    "id": "cart", "version": 2, "on_new_version": "finish_on_old",
    "entry": {"on": {"event": "cart"}},
    "steps": [{"id": "w1", "wait": "2h"}, {"id": "r1", "send": {"do": "send_email", "arg": "b"}}],
    "previous_versions": [
      {"version": 1, "steps": [{"id": "w1", "wait": "1h"},
                               {"id": "r1", "send": {"do": "send_email", "arg": "a"}}]}]}]})";
  auto p = nudge::load_rules(good);
  REQUIRE(p->rules().workflows[0].previous_versions.size() == 1);
  CHECK(p->rules().workflows[0].previous_versions[0].steps[1].act.arg == "a");
  const std::string bad = R"({"rules": [], "workflows": [{
    "id": "cart", "version": 2,
    "entry": {"on": {"event": "cart"}},
    "steps": [{"id": "w1", "wait": "2h"}],
    "previous_versions": [
      {"version": 2, "steps": [{"id": "w1", "wait": "1h", "next": "nowhere"}]},
      {"steps": [], "colour": "red"}]}]})";
  try {
    nudge::load_rules(bad, {.file_name = "cart.json"});
    FAIL("accepted");
  } catch (const nudge::rule_error& e) {
    CHECK(std::string{e.what()} ==
          "cart.json:7:7: /workflows/0/previous_versions/1: missing required field \"version\"\n"
          "cart.json:7:17: /workflows/0/previous_versions/1/steps: a workflow version needs at "
          "least one step\n"
          "cart.json:7:21: /workflows/0/previous_versions/1/colour: unknown field \"colour\" "
          "(expected version or steps)");
  }
  // The graph of a kept version is checked like the current one's.
  const std::string bad_graph = R"({"rules": [], "workflows": [{
    "id": "cart", "version": 2,
    "entry": {"on": {"event": "cart"}},
    "steps": [{"id": "w1", "wait": "2h"}],
    "previous_versions": [{"version": 2, "steps": [{"id": "w1", "wait": "1h", "next": "nowhere"}]}]}]})";
  try {
    nudge::load_rules(bad_graph, {.file_name = "cart.json"});
    FAIL("accepted");
  } catch (const nudge::rule_error& e) {
    CHECK(std::string{e.what()} ==
          "cart.json:5:39: /workflows/0/previous_versions/0/version: a kept version must be older "
          "than the current version 2\n"
          "cart.json:5:87: /workflows/0/previous_versions/0/steps/0/next: no step \"nowhere\" in "
          "workflow \"cart\"");
  }
}

// A rule's delay, condition and actions change in a running engine (rule::on_change): pending
// timers re-timed and run under the new definition, or dropped; split invariance across the
// change on a memory store.
TEST_CASE("lifecycle: a changed rule's pending timers are re-evaluated or dropped",
          "[lifecycle][rules]") {
  auto program = [](nudge::duration delay, const std::string& arg, nudge::rule_change c) {
    nudge::rule_set rs;
    rs.rules.push_back(nudge::rule_builder("winback")
                           .on(nudge::on("purchase"))
                           .check_after(delay)
                           .then(nudge::send_email(arg))
                           .on_change(c));
    return nudge::program::compile(std::move(rs));
  };
  auto v1 = program(days(10), "v1", nudge::rule_change::refuse);
  const std::vector<nudge::event> events{ev("a", "purchase", t0), ev("b", "purchase", t0)};

  SECTION("reevaluate") {
    nudge::memory_store store;
    nudge::engine e{v1, &store};
    CHECK(run(e, events, t0 + days(1)).empty());
    e.change_program(program(days(3), "v2", nudge::rule_change::reevaluate), t0 + days(1));
    CHECK(store.load("a")->timers.front().due_at == t0 + days(3));
    CHECK(lines(e.advance(t0 + days(30))) ==
          strings{"2024-01-04T00:00:00Z a winback/ send_email(v2)",
                  "2024-01-04T00:00:00Z b winback/ send_email(v2)"});
  }
  SECTION("drop") {
    nudge::engine e{v1};
    CHECK(run(e, events, t0 + days(1)).empty());
    e.change_program(program(days(3), "v2", nudge::rule_change::drop), t0 + days(1));
    CHECK(e.store().load("a")->timers.empty());
    CHECK(lines(run(e, {ev("c", "purchase", t0 + days(2))}, t0 + days(30))) ==
          strings{"2024-01-06T00:00:00Z c winback/ send_email(v2)"});
  }
  SECTION("refused without on_change, the engine unchanged") {
    nudge::engine e{v1};
    CHECK(run(e, events, t0 + days(1)).empty());
    CHECK_THROWS_WITH(
        e.change_program(program(days(3), "v2", nudge::rule_change::refuse), t0 + days(1)),
        Catch::Contains("/rules/0/on_change: rule \"winback\" changed in a running engine"));
    CHECK(lines(e.advance(t0 + days(30))) ==
          strings{"2024-01-11T00:00:00Z a winback/ send_email(v1)",
                  "2024-01-11T00:00:00Z b winback/ send_email(v1)"});
  }
}
