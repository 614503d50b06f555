// Scoring: points per event with caps per aligned period, decay at exact grid instants, and
// threshold crossings raising score_crossed.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

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

double score_of(nudge::engine& e, const std::string& id) {
  return e.find_contact(id).value().score;
}

}  // namespace

TEST_CASE("scoring: points per event, capped per UTC day", "[scoring]") {
  nudge::rule_set rs;
  rs.scoring.rules = {{"views", nudge::on("page_view"), 20, nudge::score_cap{50, days(1)}},
                      {"buys", nudge::on("purchase"), 30, std::nullopt},
                      {"unsub", nudge::on("tag_added", "unsubscribed"), -15, std::nullopt}};
  nudge::engine e{nudge::program::compile(rs)};
  // Three views on day 1: 20 + 20 + 10 (the cap). The next day's period starts afresh at
  // 00:00:00 UTC, even though 24 hours have not passed since the first view.
  e.process(std::vector{ev("page_view", t0 + hours(10)), ev("page_view", t0 + hours(11)),
                        ev("page_view", t0 + hours(12))},
            t0 + hours(12));
  CHECK(score_of(e, "ann") == 50);
  e.process(std::vector{ev("page_view", t0 + hours(23) + nudge::minutes(59))}, t0 + hours(24));
  CHECK(score_of(e, "ann") == 50);
  e.process(std::vector{ev("page_view", t0 + days(1)), ev("purchase", t0 + days(1))}, t0 + days(1));
  CHECK(score_of(e, "ann") == 100);
  e.process(std::vector{ev("tag_added", t0 + days(2), "unsubscribed")}, t0 + days(2));
  CHECK(score_of(e, "ann") == 85);
}

TEST_CASE("scoring: a threshold crossing raises score_crossed once until re-armed",
          "[scoring][threshold]") {
  nudge::rule_set rs;
  rs.scoring.rules = {{"buys", nudge::on("purchase"), 60, std::nullopt},
                      {"refund", nudge::on("refund"), -60, std::nullopt}};
  rs.scoring.thresholds = {{"hot", 100}, {"warm", 50}};
  rs.event_types = {"refund"};
  rs.rules = {nudge::rule_builder("hot")
                  .on(nudge::on("score_crossed", "hot"))
                  .then(nudge::notify_owner("hot_lead")),
              nudge::rule_builder("warm")
                  .on(nudge::on("score_crossed", "warm"))
                  .only_if(nudge::score().ge(50))
                  .then(nudge::send_email("warm"))};
  nudge::engine e{nudge::program::compile(rs)};
  const std::vector events{
      ev("purchase", t0),          ev("purchase", t0 + hours(1)), ev("purchase", t0 + hours(2)),
      ev("refund", t0 + hours(3)), ev("refund", t0 + hours(4)),   ev("purchase", t0 + hours(5))};
  // 60 (warm), 120 (hot), 180, 120 (still hot), 60 (below hot: re-armed), 120 (hot again).
  CHECK(lines(e.process(events, t0 + hours(5))) ==
        strings{at(t0) + " ann warm send_email(warm)",
                at(t0 + hours(1)) + " ann hot notify_owner(hot_lead)",
                at(t0 + hours(5)) + " ann hot notify_owner(hot_lead)"});
}

TEST_CASE("scoring: decay halves the score at each 30-day grid instant, to the second",
          "[scoring][decay]") {
  nudge::rule_set rs;
  rs.scoring.rules = {{"buys", nudge::on("purchase"), 100, std::nullopt}};
  rs.scoring.decay = nudge::score_decay{days(30), 0.5, 0};
  rs.scoring.thresholds = {{"hot", 80}};
  rs.segments = {{"hot", nudge::score().ge(80)}};
  rs.rules = {nudge::rule_builder("cooled")
                  .on(nudge::on_segment_exited("hot"))
                  .then(nudge::send_email("come_back"))};
  nudge::engine e{nudge::program::compile(rs)};
  // Grid instants are multiples of 30 days since the epoch: 19710 days is one, 2023-12-19.
  const auto grid = nudge::from_epoch(19'710LL * 86'400);
  const auto next = grid + days(30);  // 2024-01-18
  e.process(std::vector{ev("purchase", t0)}, t0);
  CHECK(score_of(e, "ann") == 100);
  CHECK(e.store().due(next - nudge::seconds(1)).empty());
  CHECK(lines(e.advance(next)) == strings{at(next) + " ann cooled send_email(come_back)"});
  CHECK(score_of(e, "ann") == 50);
  e.advance(next + days(30));
  CHECK(score_of(e, "ann") == 25);
  SECTION("subtracting moves toward 0 and stops there") {
    nudge::rule_set sub = rs;
    sub.scoring.decay = nudge::score_decay{days(30), 1, 40};
    nudge::engine s{nudge::program::compile(sub)};
    s.process(std::vector{ev("purchase", t0)}, t0);
    s.advance(next + days(60));
    CHECK(score_of(s, "ann") == 0);
    CHECK(s.store().due(nudge::max_time).empty());  // a zero score needs no decay timer
  }
}

TEST_CASE("scoring: compile rejects bad scoring with pointers", "[scoring][errors]") {
  nudge::rule_set rs;
  rs.scoring.rules = {{"", nudge::on("page_view"), 1, nudge::score_cap{0, days(1)}},
                      {"a", nudge::on(""), 1, std::nullopt}};
  rs.scoring.decay = nudge::score_decay{days(0), 1.5, -1};
  rs.scoring.thresholds = {{"hot", 1}, {"hot", 2}};
  try {
    nudge::program::compile(rs);
    FAIL("no error");
  } catch (const nudge::rule_error& err) {
    strings got;
    for (const auto& d : err.diagnostics()) {
      got.push_back(d.json_pointer);
    }
    CHECK(got == strings{"/scoring/rules/0/id", "/scoring/rules/0/cap", "/scoring/rules/1/on/event",
                         "/scoring/decay/every", "/scoring/decay/factor", "/scoring/decay/subtract",
                         "/scoring/thresholds/1/name"});
  }
}
