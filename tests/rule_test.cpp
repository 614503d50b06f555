// Rules: what the builder produces, what compilation refuses (all problems at once), re-entry
// policies and caps to the second, and what the program derives from the rules.
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::t0;

// Feeds one probe event per time to a rule set with `r` alone; returns per probe "P" (passed),
// "S" (suppressed) or "F" (failed).
std::string runs(const nudge::rule& r, const std::vector<nudge::time_point>& times) {
  nudge::rule_set rs;
  rs.event_types = {"probe"};
  rs.rules.push_back(r);
  auto p = nudge::program::compile(std::move(rs));
  std::vector<nudge::event> events;
  for (auto t : times) {
    events.push_back({.contact = "ann", .type = "probe", .ts = t});
  }
  auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, times.back());
  std::string s;
  for (const auto& o : out.outcomes) {
    switch (o.kind) {
      case nudge::rule_outcome_kind::passed:
        s += 'P';
        break;
      case nudge::rule_outcome_kind::suppressed:
        s += 'S';
        break;
      case nudge::rule_outcome_kind::failed:
        s += 'F';
        break;
      case nudge::rule_outcome_kind::triggered:
        break;
      default:  // delivery-policy outcomes: no policy here
        s += '?';
        break;
    }
  }
  return s;
}

nudge::rule_builder probe_rule() {
  nudge::rule_builder b{"r"};
  b.on(nudge::on("probe")).then(nudge::send_email("x"));
  return b;
}

// The compile error's message, or "compiled".
std::string compile_error(nudge::rule_set rs, nudge::program_limits limits = {}) {
  try {
    nudge::program::compile(std::move(rs), limits);
  } catch (const nudge::rule_error& e) {
    return e.what();
  }
  return "compiled";
}

nudge::rule_set one(nudge::rule r) {
  nudge::rule_set rs;
  rs.rules.push_back(std::move(r));
  return rs;
}

}  // namespace

TEST_CASE("rule: the builder reads like the sentence and yields plain data", "[rule][builder]") {
  const nudge::rule r =
      nudge::rule_builder("cart")
          .on(nudge::on_prefix("page_view", "/cart"))
          .check_after(nudge::hours(1))
          .only_if(nudge::not_happened(nudge::on("purchase")).since_trigger())
          .then(nudge::send_email("reminder") | nudge::with_param{"subject", "Forgot something?"})
          .then(nudge::send_sms("reminder") | nudge::after{nudge::days(1)} |
                nudge::only_if{nudge::not_happened(nudge::on("purchase")).since_trigger()})
          .then(nudge::add_tag("cart_abandoned") | nudge::notify_host{})
          .once_per(nudge::days(7))
          .at_most(3, nudge::days(30))
          .build();
  CHECK(r.id == "cart");
  CHECK(r.trigger == nudge::event_match{"page_view", nudge::key_match::prefix, "/cart"});
  CHECK(r.delay == nudge::hours(1));
  CHECK(r.condition ==
        nudge::condition(nudge::not_happened(nudge::on("purchase")).since_trigger()));
  REQUIRE(r.actions.size() == 3);
  CHECK(r.actions[0].kind == nudge::action_kind::send_email);
  CHECK(r.actions[0].arg == "reminder");
  CHECK(r.actions[0].params == nudge::name_map<std::string>{{"subject", "Forgot something?"}});
  CHECK(r.actions[1].delay == nudge::days(1));
  CHECK(r.actions[1].condition.has_value());
  CHECK(r.actions[2].notify);
  CHECK(nudge::is_external(r.actions[0].kind));
  CHECK_FALSE(nudge::is_external(r.actions[2].kind));
  CHECK(r.reentry_policy == nudge::reentry::once_per);
  CHECK(r.reentry_window == nudge::days(7));
  CHECK(r.cap == nudge::frequency_cap{3, nudge::days(30)});

  const auto owner = nudge::assign_owner("reps", nudge::owner_pick::round_robin);
  CHECK(owner.kind == nudge::action_kind::assign_owner);
  CHECK(owner.pick == nudge::owner_pick::round_robin);
  CHECK(nudge::add_score(2.5).val == nudge::value{2.5});
  CHECK(nudge::set_detail("plan", std::string{"pro"}).val == nudge::value{std::string{"pro"}});
  CHECK(nudge::action_name(nudge::action_kind::generate_coupon) == "generate_coupon");
  CHECK(nudge::action_from_name("remove_from_group") == nudge::action_kind::remove_from_group);
  CHECK_FALSE(nudge::action_from_name("send_fax").has_value());
}

TEST_CASE("rule: compilation reports every problem with its pointer", "[rule][errors]") {
  SECTION("several problems at once, in order") {
    nudge::rule_set rs;
    rs.owner_groups["empty"] = {};
    rs.rules.push_back(nudge::rule_builder("").on(nudge::on("signup")).then(nudge::send_email("")));
    rs.rules.push_back(nudge::rule_builder("a").on(nudge::on("")).check_after(nudge::seconds(-1)));
    rs.rules.push_back(
        nudge::rule_builder("a").on(nudge::on("signup")).then(nudge::assign_owner("sales")));
    try {
      nudge::program::compile(rs);
      FAIL("compiled");
    } catch (const nudge::rule_error& e) {
      CHECK(std::string{e.what()} ==
            "/owner_groups/empty: an owner group needs at least one member\n"
            "/rules/0/id: a rule needs an id\n"
            "/rules/0/then/0/arg: send_email needs an argument\n"
            "/rules/1/on/event: an event type is required\n"
            "/rules/1/delay: a delay must be between 0s and 36500d\n"
            "/rules/2/id: duplicate rule id \"a\" (first used by /rules/1)\n"
            "/rules/2/then/0/arg: no owner group \"sales\" is defined");
      REQUIRE(e.diagnostics().size() == 7);
      CHECK(e.code() == "empty_group");
      CHECK(e.json_pointer() == "/owner_groups/empty");
      CHECK(e.line() == 0);
      CHECK(e.file().empty());
      std::vector<std::string> codes;
      for (const auto& d : e.diagnostics()) {
        codes.push_back(d.code);
      }
      CHECK(codes == std::vector<std::string>{"empty_group", "missing_id", "missing_arg",
                                              "missing_event", "bad_delay", "duplicate_id",
                                              "unknown_group"});
    }
  }
  SECTION("policies") {
    nudge::rule r = probe_rule();
    r.reentry_policy = nudge::reentry::once_per;
    CHECK(compile_error(one(r)) == "/rules/0/reentry: once_per needs a window longer than 0s");
    r = probe_rule().at_most(0, nudge::days(1));
    CHECK(compile_error(one(r)) ==
          "/rules/0/cap: a cap needs max >= 1 and a window longer than 0s");
    r = probe_rule().at_most(1, nudge::seconds(0));
    CHECK(compile_error(one(r)) ==
          "/rules/0/cap: a cap needs max >= 1 and a window longer than 0s");
    r = probe_rule().check_after(nudge::days(36'501));
    CHECK(compile_error(one(r)) == "/rules/0/delay: a delay must be between 0s and 36500d");
    r = probe_rule().then(nudge::send_email("late") | nudge::after{nudge::seconds(-5)});
    CHECK(compile_error(one(r)) == "/rules/0/then/1/delay: a delay must be between 0s and 36500d");
    r = probe_rule().then(nudge::make_action(nudge::action_kind::add_score, {}));
    r.actions.back().val = std::string{"ten"};
    CHECK(compile_error(one(r)) == "/rules/0/then/1/value: add_score takes a number of points");
  }
  SECTION("conditions, with their paths") {
    auto with = [](nudge::condition c) { return one(probe_rule().only_if(std::move(c))); };
    CHECK(compile_error(with(nudge::all(
              {nudge::always(), nudge::happened(nudge::on("x")).within(nudge::seconds(0))}))) ==
          "/rules/0/if/all/1/happened/within: a window must be longer than 0s and at most 36500d");
    CHECK(compile_error(with(nudge::happened(nudge::on("x")).at_least(-1))) ==
          "/rules/0/if/happened: a count bound cannot be negative");
    CHECK(compile_error(with(nudge::any({nudge::happened(nudge::on(""))}))) ==
          "/rules/0/if/any/0/happened/event: an event type is required");
    nudge::condition bad_not;
    bad_not.node = nudge::condition::kind::negate;
    CHECK(compile_error(with(bad_not)) == "/rules/0/if/not: \"not\" takes exactly one condition");
    CHECK(compile_error(with(!nudge::contact_detail("").exists())) ==
          "/rules/0/if/not/detail: a detail name is required");
    CHECK(compile_error(with(nudge::contact_detail("a").in({}))) ==
          "/rules/0/if: \"in\" needs at least one candidate");
    CHECK(
        compile_error(with(nudge::compare(nudge::field::detail, "a", nudge::compare_op::eq, {}))) ==
        "/rules/0/if: the comparison takes exactly one operand");
    CHECK(compile_error(
              with(nudge::compare(nudge::field::detail, "a", nudge::compare_op::exists, {true}))) ==
          "/rules/0/if: \"exists\" takes no operand");
    CHECK(compile_error(with(nudge::compare(nudge::field::detail, "a", nudge::compare_op::contains,
                                            {std::int64_t{1}}))) ==
          "/rules/0/if: \"contains\" and \"prefix\" compare text");
    CHECK(compile_error(with(nudge::score().ge(std::string{"high"}))) ==
          "/rules/0/if: a score compares with a number");
    CHECK(compile_error(with(nudge::has_tag(""))) == "/rules/0/if: a tag is required");
    CHECK(compile_error(with(nudge::in_group(""))) == "/rules/0/if: a group is required");
    // Action conditions are checked too.
    CHECK(compile_error(one(
              probe_rule().then(nudge::send_email("y") | nudge::only_if{nudge::has_tag("")}))) ==
          "/rules/0/then/1/if: a tag is required");
  }
  SECTION("limits") {
    nudge::program_limits limits;
    limits.max_condition_depth = 2;
    CHECK(compile_error(one(probe_rule().only_if(!nudge::has_tag("a"))), limits) == "compiled");
    CHECK(compile_error(one(probe_rule().only_if(!!nudge::has_tag("a"))), limits) ==
          "/rules/0/if/not/not: condition nested deeper than 2 levels");
    limits = {};
    limits.max_rules = 1;
    nudge::rule_set two;
    two.rules = {probe_rule(), nudge::rule_builder("s").on(nudge::on("probe"))};
    CHECK(compile_error(two, limits) == "/rules: 2 rules; at most 1 are allowed");
  }
}

TEST_CASE("rule: once runs at most one passing check per contact, ever", "[rule][reentry]") {
  const nudge::rule r = probe_rule().once();
  CHECK(runs(r, {t0, t0 + nudge::seconds(1), t0 + nudge::weeks(520)}) == "PSS");
  // A failing check does not use up the run.
  const nudge::rule tagged = probe_rule().only_if(nudge::has_tag("ok")).once();
  nudge::rule_set rs;
  rs.event_types = {"probe"};
  rs.rules.push_back(tagged);
  auto p = nudge::program::compile(rs);
  std::vector<nudge::event> events{{.contact = "ann", .type = "probe", .ts = t0},
                                   {.contact = "ann", .type = "tag_added", .ts = t0, .key = "ok"},
                                   {.contact = "ann", .type = "probe", .ts = t0},
                                   {.contact = "ann", .type = "probe", .ts = t0}};
  auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, t0);
  CHECK(out.actions.size() == 1);
  CHECK(out.state.rule_runs.at(0).runs == 1);
}

TEST_CASE("rule: once_per allows the next run exactly one window after the last",
          "[rule][reentry]") {
  const nudge::rule r = probe_rule().once_per(nudge::days(7));
  const auto w = nudge::days(7);
  CHECK(runs(r, {t0, t0 + w - nudge::seconds(1)}) == "PS");
  CHECK(runs(r, {t0, t0 + w}) == "PP");
  // Suppressed checks do not restart the window: it counts from the last passing run.
  CHECK(runs(r, {t0, t0 + nudge::days(3), t0 + w, t0 + w + nudge::days(6)}) == "PSPS");
}

TEST_CASE("rule: a frequency cap counts passing runs after t - per, up to t", "[rule][cap]") {
  const nudge::rule r = probe_rule().at_most(2, nudge::days(1));
  const auto d = nudge::days(1);
  CHECK(runs(r, {t0, t0 + nudge::hours(1), t0 + nudge::hours(2)}) == "PPS");
  CHECK(runs(r, {t0, t0 + nudge::hours(1), t0 + d - nudge::seconds(1)}) == "PPS");
  CHECK(runs(r, {t0, t0 + nudge::hours(1), t0 + d}) == "PPP");  // t0 has left the window
  CHECK(runs(r, {t0, t0 + nudge::hours(1), t0 + d, t0 + d + nudge::minutes(30)}) == "PPPS");
  // With once_per as well, both must allow the run.
  const nudge::rule both = probe_rule().once_per(nudge::hours(1)).at_most(2, d);
  CHECK(runs(both, {t0, t0 + nudge::minutes(59), t0 + nudge::hours(1), t0 + nudge::hours(2),
                    t0 + d + nudge::hours(1)}) == "PSPSP");
}

TEST_CASE("rule: the program knows its event types, delays and rules", "[rule][program]") {
  nudge::rule_set rs;
  rs.event_types = {"REFUND"};
  rs.rules.push_back(nudge::rule_builder("loyal")
                         .on(nudge::on("order"))
                         .check_after(nudge::days(60))
                         .only_if(nudge::happened(nudge::on("PURCHASE")))
                         .then(nudge::send_email("a") | nudge::after{nudge::days(6)}));
  rs.rules.push_back(
      nudge::rule_builder("quick").on(nudge::on("signup")).check_after(nudge::days(65)));
  auto p = nudge::program::compile(rs);
  CHECK(p->rule_count() == 2);
  CHECK(p->find_rule("quick") == 1u);
  CHECK_FALSE(p->find_rule("slow").has_value());
  CHECK(p->longest_delay() == nudge::days(66));
  for (const char* known :
       {"page_view", "tag_added", "score_changed", "REFUND", "order", "PURCHASE"}) {
    INFO(known);
    CHECK(p->knows_event_type(known));
  }
  CHECK_FALSE(p->knows_event_type("refund"));
  CHECK_FALSE(p->knows_event_type(""));
  CHECK(p->rules() == rs);
}

TEST_CASE("rule: the program keeps only the history its conditions read", "[rule][program]") {
  const auto slots = [](std::vector<nudge::condition> conditions) {
    nudge::rule_set rs;
    rs.event_types = {"probe"};
    for (std::size_t i = 0; i < conditions.size(); ++i) {
      rs.rules.push_back(nudge::rule_builder(fmt::format("r{}", i))
                             .on(nudge::on("probe"))
                             .only_if(conditions[i])
                             .then(nudge::send_email("x")));
    }
    return nudge::program::compile(rs)->history_slot_count();
  };
  using nudge::happened;
  using nudge::on;
  CHECK(slots({}) == 0);
  CHECK(slots({nudge::has_tag("a"), nudge::score().gt(1.0)}) == 0);  // triggers need no history
  CHECK(slots({happened(on("purchase")), happened(on("purchase")).within(nudge::days(7))}) == 1);
  CHECK(slots({happened(on("page_view", "/a")), happened(on("page_view", "/b")),
               happened(nudge::on_prefix("page_view", "/a")), happened(on("page_view"))}) == 4);
  // A delayed action's condition counts too.
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("drip")
                         .on(nudge::on("signup"))
                         .then(nudge::send_email("2") |
                               nudge::only_if{happened(on("email_open", "1")).since_trigger()}));
  CHECK(nudge::program::compile(rs)->history_slot_count() == 1);
}

TEST_CASE("rule: a windowed count keeps only as many event times as its bound needs",
          "[rule][program]") {
  nudge::rule_set rs;
  rs.event_types = {"probe"};
  rs.rules.push_back(
      nudge::rule_builder("frequent")
          .on(nudge::on("probe"))
          .only_if(nudge::happened(nudge::on("purchase")).within(nudge::days(30)).at_least(3))
          .then(nudge::send_email("x")));
  auto p = nudge::program::compile(rs);
  std::vector<nudge::event> events;
  for (int i = 0; i < 10; ++i) {
    events.push_back({.contact = "ann", .type = "purchase", .ts = t0 + nudge::days(i)});
  }
  auto out = nudge::evaluate(*p, p->new_state({.id = "ann"}), events, t0 + nudge::days(9));
  REQUIRE(out.state.history.size() == 1);
  CHECK(out.state.history[0].count == 10);
  CHECK(out.state.history[0].first == t0);
  CHECK(out.state.history[0].last == t0 + nudge::days(9));
  CHECK(out.state.history[0].recent.size() == 3);
}
