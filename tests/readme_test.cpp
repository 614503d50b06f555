// The C++ quick start of README.md, compiled and checked. The lines between "README begin" and
// "README end" are the README's snippet, indented by two spaces; scripts/test.sh checks that
// the two copies agree.
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/core.h>

#include <nudge/nudge.hpp>

TEST_CASE("readme: quick start sends one cart reminder a day after the cart", "[readme]") {
  // README begin
  // "When someone puts something in the cart and has not bought within a day, remind them."
  nudge::rule_set rules;
  rules.rules.push_back(
      nudge::rule_builder("abandoned_cart")
          .on(nudge::on("cart"))
          .check_after(nudge::days(1))
          .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::days(1)))
          .then(nudge::send_email("cart_reminder")));
  nudge::engine engine{nudge::program::compile(std::move(rules))};

  const auto t0 = nudge::from_epoch(1'704'103'200);  // 2024-01-01T10:00:00Z
  const std::vector<nudge::event> events{
      {.contact = "ann", .type = "cart", .ts = t0},
      {.contact = "bob", .type = "cart", .ts = t0},
      {.contact = "bob", .type = "purchase", .ts = t0 + nudge::hours(3)},
  };
  auto due = engine.process(events, t0 + nudge::hours(3));  // nothing due yet
  due = engine.advance(t0 + nudge::days(2));                // the host's clock moved on
  for (const auto& a : due) {
    // prints: 2024-01-02T10:00:00Z ann abandoned_cart send_email cart_reminder
    fmt::print("{} {} {} {} {}\n", nudge::format_time(a.ts), a.contact, a.rule, a.action(), a.arg);
  }
  // README end

  REQUIRE(due.size() == 1);
  CHECK(due[0].contact == "ann");
  CHECK(nudge::format_time(due[0].ts) == "2024-01-02T10:00:00Z");
  CHECK(due[0].rule == "abandoned_cart");
  CHECK(due[0].action() == "send_email");
  CHECK(due[0].arg == "cart_reminder");
  CHECK(engine.stats()[0].triggered == 2);
  CHECK(engine.stats()[0].passed == 1);
  CHECK(engine.stats()[0].failed == 1);
}
