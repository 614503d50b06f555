// Conditions: the builders' trees, and what each leaf means when evaluated.
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::t0;

const nudge::time_point T = t0 + nudge::days(100);  // evaluation time

// Does `c` hold for `profile` with `history` applied, checked by a rule triggered at `now`?
bool holds(const nudge::condition& c, nudge::contact profile = {},
           std::vector<nudge::event> history = {}, nudge::time_point now = T) {
  nudge::rule_set rs;
  rs.event_types = {"probe"};
  rs.rules.push_back(nudge::rule_builder("probe")
                         .on(nudge::on("probe"))
                         .only_if(c)
                         .then(nudge::send_email("yes")));
  auto p = nudge::program::compile(std::move(rs));
  profile.id = "ann";
  for (auto& e : history) {
    e.contact = "ann";
  }
  history.push_back({.contact = "ann", .type = "probe", .ts = now});
  return !nudge::evaluate(*p, p->new_state(profile), history, now).actions.empty();
}

nudge::contact profile() {
  nudge::contact c;
  c.details["age"] = std::int64_t{30};
  c.details["spend"] = 99.5;
  c.details["name"] = std::string{"Ewa Kowalska"};
  c.details["nickname"] = std::string{};
  c.details["vip"] = true;
  c.details["opted_out"] = false;
  c.details["birthday"] = nudge::from_epoch(631'152'000);  // 1990-01-01
  c.tags["newsletter"] = t0;
  c.groups.insert("beta");
  c.score = 12.5;
  c.status = "customer";
  c.stage = "trial";
  c.time_zone = "Europe/Warsaw";
  return c;
}

}  // namespace

TEST_CASE("condition: builders produce the trees they name", "[condition]") {
  using kind = nudge::condition::kind;
  const nudge::condition leaf =
      nudge::not_happened(nudge::on_prefix("page_view", "/cart")).within(nudge::days(60));
  CHECK(leaf.node == kind::happened);
  CHECK(leaf.events == nudge::event_match{"page_view", nudge::key_match::prefix, "/cart"});
  CHECK(leaf.window == nudge::window_kind::within);
  CHECK(leaf.window_length == nudge::days(60));
  CHECK(leaf.count == nudge::count_op::at_most);
  CHECK(leaf.count_bound == 0);

  const nudge::condition since = nudge::happened(nudge::on("email_open", "edu_1")).since_trigger();
  CHECK(since.window == nudge::window_kind::since_trigger);
  CHECK(since.count == nudge::count_op::at_least);
  CHECK(since.count_bound == 1);
  CHECK(since.events.match == nudge::key_match::exact);

  const nudge::condition n = !nudge::has_tag("vip");
  REQUIRE(n.node == kind::negate);
  REQUIRE(n.children.size() == 1);
  CHECK(n.children[0] == nudge::has_tag("vip"));

  const nudge::condition cmp = nudge::contact_detail("age").in({std::int64_t{1}, 2.5});
  CHECK(cmp.node == kind::compare);
  CHECK(cmp.target == nudge::field::detail);
  CHECK(cmp.name == "age");
  CHECK(cmp.op == nudge::compare_op::in);
  CHECK(cmp.operands == std::vector<nudge::value>{std::int64_t{1}, 2.5});
  CHECK(nudge::status().eq("customer").target == nudge::field::status);
  CHECK(nudge::score().ge(10.0).operands == std::vector<nudge::value>{10.0});
  CHECK(nudge::always().node == kind::always);
  CHECK(nudge::all({nudge::always(), leaf}).children.size() == 2);
}

TEST_CASE("condition: detail comparisons", "[condition][compare]") {
  using nudge::contact_detail;
  const auto c = profile();
  SECTION("equality, across integer and decimal") {
    CHECK(holds(contact_detail("age").eq(std::int64_t{30}), c));
    CHECK(holds(contact_detail("age").eq(30.0), c));
    CHECK_FALSE(holds(contact_detail("age").eq(std::string{"30"}), c));  // text is not a number
    CHECK(holds(contact_detail("age").ne(std::int64_t{31}), c));
    CHECK(holds(contact_detail("vip").eq(true), c));
    CHECK(holds(contact_detail("name").eq(std::string{"Ewa Kowalska"}), c));
  }
  SECTION("order, to the boundary") {
    CHECK_FALSE(holds(contact_detail("age").lt(std::int64_t{30}), c));
    CHECK(holds(contact_detail("age").le(std::int64_t{30}), c));
    CHECK(holds(contact_detail("age").gt(29.5), c));
    CHECK_FALSE(holds(contact_detail("age").gt(std::int64_t{30}), c));
    CHECK(holds(contact_detail("age").ge(std::int64_t{30}), c));
    CHECK(holds(contact_detail("spend").lt(std::int64_t{100}), c));
    CHECK(holds(contact_detail("birthday").lt(t0), c));
    CHECK(holds(contact_detail("name").gt(std::string{"Anna"}), c));
    // Different kinds are unordered: neither side of the comparison holds.
    CHECK_FALSE(holds(contact_detail("age").lt(std::string{"a"}), c));
    CHECK_FALSE(holds(contact_detail("age").ge(std::string{"a"}), c));
    CHECK(holds(contact_detail("age").ne(std::string{"a"}), c));
  }
  SECTION("membership and text") {
    CHECK(holds(contact_detail("age").in({std::int64_t{1}, std::int64_t{30}}), c));
    CHECK_FALSE(holds(contact_detail("name").in({std::string{"Ewa"}}), c));
    CHECK(holds(contact_detail("name").contains("Kowal"), c));
    CHECK(holds(contact_detail("name").starts_with("Ewa"), c));
    CHECK_FALSE(holds(contact_detail("name").starts_with("Kowal"), c));
    CHECK_FALSE(holds(contact_detail("age").contains("3"), c));  // not text
  }
  SECTION("presence") {
    CHECK(holds(contact_detail("age").exists(), c));
    CHECK(holds(contact_detail("opted_out").exists(), c));       // false is a value
    CHECK_FALSE(holds(contact_detail("nickname").exists(), c));  // empty text is not
    CHECK_FALSE(holds(contact_detail("missing").exists(), c));
    // A missing detail equals nothing and differs from everything.
    CHECK_FALSE(holds(contact_detail("missing").eq(std::string{""}), c));
    CHECK(holds(contact_detail("missing").ne(std::string{"x"}), c));
    CHECK_FALSE(holds(contact_detail("missing").lt(std::int64_t{1}), c));
  }
}

TEST_CASE("condition: profile fields, tags and groups", "[condition][compare]") {
  const auto c = profile();
  CHECK(holds(nudge::status().eq("customer"), c));
  CHECK(holds(nudge::status().eq("lead"), {}));  // the default status
  CHECK(holds(nudge::stage().in({std::string{"trial"}, std::string{"paid"}}), c));
  CHECK(holds(nudge::time_zone().starts_with("Europe/"), c));
  CHECK_FALSE(holds(nudge::owner().exists(), c));
  CHECK(holds(!nudge::owner().exists(), c));
  CHECK(holds(nudge::owner().ne("anna"), c));     // no owner differs from anna
  CHECK_FALSE(holds(nudge::stage().eq(""), {}));  // an empty stage is no stage
  CHECK(holds(nudge::score().ge(12.5), c));
  CHECK(holds(nudge::score().gt(std::int64_t{12}), c));
  CHECK_FALSE(holds(nudge::score().lt(12.5), c));
  CHECK(holds(nudge::has_tag("newsletter"), c));
  CHECK_FALSE(holds(nudge::has_tag("vip"), c));
  CHECK(holds(nudge::in_group("beta"), c));
  CHECK_FALSE(holds(nudge::in_group("alpha"), c));
}

TEST_CASE("condition: all, any and not", "[condition][logic]") {
  const auto c = profile();
  const auto yes = nudge::has_tag("newsletter");
  const auto no = nudge::has_tag("vip");
  CHECK(holds(nudge::all({yes, yes}), c));
  CHECK_FALSE(holds(nudge::all({yes, no}), c));
  CHECK(holds(nudge::any({no, yes}), c));
  CHECK_FALSE(holds(nudge::any({no, no}), c));
  CHECK(holds(!no, c));
  CHECK(holds(nudge::all({}), c));        // nothing to fail
  CHECK_FALSE(holds(nudge::any({}), c));  // nothing to pass
  CHECK(holds(nudge::any({no, nudge::all({yes, !no, nudge::always()})}), c));
}

TEST_CASE("condition: happened counts events by type and key", "[condition][happened]") {
  const std::vector<nudge::event> history{
      ev("page_view", t0, "/cart/1"), ev("page_view", t0 + nudge::days(1), "/cart/2"),
      ev("page_view", t0 + nudge::days(2), "/pricing"), ev("purchase", t0 + nudge::days(3))};
  using nudge::happened;
  using nudge::on;
  CHECK(holds(happened(on("page_view")).exactly(3), {}, history));
  CHECK(holds(happened(on("page_view", "/pricing")).exactly(1), {}, history));
  CHECK(holds(happened(nudge::on_prefix("page_view", "/cart")).exactly(2), {}, history));
  CHECK(holds(happened(on("page_view", "/cart")).exactly(0), {}, history));  // exact, not prefix
  CHECK(holds(happened(on("purchase")).at_least(1), {}, history));
  CHECK_FALSE(holds(happened(on("purchase")).at_least(2), {}, history));
  CHECK(holds(happened(on("purchase")).at_most(1), {}, history));
  CHECK_FALSE(holds(happened(on("page_view")).at_most(2), {}, history));
  CHECK(holds(nudge::not_happened(on("cart")), {}, history));
  CHECK_FALSE(holds(happened(on("cart")), {}, history));
}

TEST_CASE("condition: windows count the last d seconds, ending now", "[condition][happened]") {
  const std::vector<nudge::event> history{ev("purchase", T - nudge::days(30)),
                                          ev("purchase", T - nudge::days(7)),
                                          ev("purchase", T - nudge::days(1))};
  using nudge::happened;
  using nudge::on;
  CHECK(holds(happened(on("purchase")).within(nudge::days(7)).exactly(1), {}, history));
  CHECK(holds(happened(on("purchase")).within(nudge::days(7) + nudge::seconds(1)).exactly(2), {},
              history));
  CHECK(holds(happened(on("purchase")).within(nudge::days(31)).exactly(3), {}, history));
  CHECK(holds(happened(on("purchase")).within(nudge::days(31)).at_least(3), {}, history));
  CHECK_FALSE(holds(happened(on("purchase")).within(nudge::days(30)).at_least(3), {}, history));
  CHECK(holds(happened(on("purchase")).within(nudge::days(30)).at_most(2), {}, history));
  CHECK(holds(nudge::not_happened(on("purchase")).within(nudge::hours(23)), {}, history));
  // Lifetime counts everything, whatever the windows of other leaves keep.
  CHECK(holds(nudge::all({happened(on("purchase")).exactly(3),
                          happened(on("purchase")).within(nudge::days(2)).exactly(1)}),
              {}, history));
}

TEST_CASE("condition: since trigger is empty when the check runs at the trigger",
          "[condition][happened]") {
  const std::vector<nudge::event> history{ev("email_open", T, "edu_1")};
  CHECK_FALSE(holds(nudge::happened(nudge::on("email_open")).since_trigger(), {}, history));
  CHECK(holds(nudge::not_happened(nudge::on("email_open")).since_trigger(), {}, history));
  CHECK(holds(nudge::happened(nudge::on("email_open")).within(nudge::seconds(1)), {}, history));
}
