#include <catch2/catch.hpp>

#include <nudge/nudge.hpp>

TEST_CASE("engine: delayed check sees purchases made during the delay", "[engine][delay]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("winback")
          .on(nudge::on("purchase"))
          .check_after(nudge::days(60))
          .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::days(60)))
          .then(nudge::send_email("winback")));
  auto program = nudge::program::compile(rs);
  nudge::engine engine{program};
  const auto t0 = nudge::from_epoch(1'700'000'000);
  std::vector<nudge::event> events{
      {.contact = "a", .type = "purchase", .ts = t0},
      {.contact = "b", .type = "purchase", .ts = t0},
      {.contact = "b", .type = "purchase", .ts = t0 + nudge::days(30)}};
  auto due = engine.process(events, t0 + nudge::days(30));
  REQUIRE(due.empty());
  due = engine.advance(t0 + nudge::days(100));
  REQUIRE(due.size() == 2);
  CHECK(due[0].contact == "a");
  CHECK(due[0].ts == t0 + nudge::days(60));
  CHECK(due[1].contact == "b");
  CHECK(due[1].ts == t0 + nudge::days(90));
  CHECK(engine.stats()[0].triggered == 3);
  CHECK(engine.stats()[0].passed == 2);
  CHECK(engine.stats()[0].failed == 1);
}

TEST_CASE("program: absurd windowed counts and caps are refused, not kept in memory",
          "[program][limits]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("many")
          .on(nudge::on("purchase"))
          .only_if(
              nudge::happened(nudge::on("purchase")).within(nudge::days(1)).at_least(1'000'000'000))
          .at_most(1'000'000'000'000, nudge::days(1))
          .then(nudge::send_email("x")));
  REQUIRE_THROWS_WITH(nudge::program::compile(rs),
                      "/rules/0/if/happened: a windowed count bound can be at most 1000\n"
                      "/rules/0/cap: a cap can allow at most 1000 runs per window");
}
