// Dynamic segments are re-evaluated only when something they read changes (an event recorded in
// a window they read, a profile field an action or a built-in event changes, an earlier segment
// they name) or when a window they read loses an event. These tests cover the inputs that index
// could miss, and flip timers that must stay exact while other segments are not re-evaluated.
#include <algorithm>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::at;
using test_support::compile;
using test_support::ev;
using test_support::lines;
using test_support::strings;
using test_support::t0;
using test_support::with;

using nudge::days;
using nudge::hours;
using nudge::seconds;

std::string in(nudge::time_point t, const std::string& who, const std::string& segment) {
  return fmt::format("{} {} enter_{} send_email(in_{})", at(t), who, segment, segment);
}
std::string out(nudge::time_point t, const std::string& who, const std::string& segment) {
  return fmt::format("{} {} exit_{} send_email(out_{})", at(t), who, segment, segment);
}

nudge::rule on_event(std::string id, std::string type, std::vector<nudge::action> actions) {
  auto b = nudge::rule_builder(std::move(id)).on(nudge::on(std::move(type)));
  for (auto& a : actions) {
    b.then(std::move(a));
  }
  return b;
}

}  // namespace

TEST_CASE("segment inputs: profile fields changed by rule actions and built-in events",
          "[segment][inputs]") {
  // "visited" is evaluated at every page view; the profile segments are evaluated at the first
  // event and then only when an action or event changes what they read.
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(7))},
                    {"pro", nudge::contact_detail("plan").eq("pro")},
                    {"gold", nudge::has_tag("gold")},
                    {"team", nudge::in_group("team")},
                    {"customer", nudge::status().eq("customer")},
                    {"won", nudge::stage().eq("won")},
                    {"owned", nudge::owner().eq("olga")}},
                   {on_event("upgrade", "probe",
                             {nudge::set_detail("plan", std::string{"pro"}), nudge::add_tag("gold"),
                              nudge::add_to_group("team"), nudge::set_status("customer"),
                              nudge::assign_owner("sales")}),
                    on_event("downgrade", "app_session",
                             {nudge::set_detail("plan", std::string{"free"}),
                              nudge::remove_tag("gold"), nudge::remove_from_group("team"),
                              nudge::set_status("lead"), nudge::set_stage("lost")})},
                   {}, {{"sales", {"olga"}}});
  nudge::engine e{p};
  const std::vector events{
      ev("ann", "page_view", t0),
      ev("ann", "page_view", t0 + hours(1)),
      ev("ann", "probe", t0 + hours(2)),
      ev("ann", "page_view", t0 + hours(3)),
      ev("ann", "tag_added", t0 + hours(4), "gold"),  // already tagged: no change
      ev("ann", "stage_entered", t0 + hours(5), "won"),
      ev("ann", "app_session", t0 + hours(6)),
      ev("ann", "tag_added", t0 + hours(7), "gold"),  // a built-in event changes the tags
      ev("ann", "tag_removed", t0 + hours(8), "gold")};
  CHECK(lines(e.process(events, t0 + days(10))) ==
        strings{in(t0, "ann", "visited"), in(t0 + hours(2), "ann", "pro"),
                in(t0 + hours(2), "ann", "gold"), in(t0 + hours(2), "ann", "team"),
                in(t0 + hours(2), "ann", "customer"), in(t0 + hours(2), "ann", "owned"),
                in(t0 + hours(5), "ann", "won"), out(t0 + hours(6), "ann", "pro"),
                out(t0 + hours(6), "ann", "gold"), out(t0 + hours(6), "ann", "team"),
                out(t0 + hours(6), "ann", "customer"), out(t0 + hours(6), "ann", "won"),
                in(t0 + hours(7), "ann", "gold"), out(t0 + hours(8), "ann", "gold"),
                out(t0 + hours(3) + days(7), "ann", "visited")});
}

TEST_CASE("segment inputs: an in_segment chain follows its base, also at a flip timer",
          "[segment][inputs]") {
  auto p = compile(
      {{"carted", nudge::happened(nudge::on("cart")).within(hours(1))},
       {"recent", nudge::happened(nudge::on("page_view")).within(days(7))},
       {"recent_gold", nudge::all({nudge::in_segment("recent"), nudge::has_tag("gold")})},
       {"recent_gold_pl",
        nudge::all({nudge::in_segment("recent_gold"), nudge::contact_detail("language").eq("pl")})},
       {"not_recent", !nudge::in_segment("recent")}},
      {on_event("polish", "signup", {nudge::set_detail("language", std::string{"pl"})}),
       on_event("gild", "probe", {nudge::add_tag("gold")})});
  nudge::engine e{p};
  const std::vector events{ev("ann", "signup", t0),           ev("ann", "page_view", t0 + hours(1)),
                           ev("ann", "probe", t0 + hours(2)), ev("ann", "cart", t0 + days(1)),
                           ev("ann", "cart", t0 + days(3)),   ev("ann", "cart", t0 + days(5))};
  const auto gone = t0 + hours(1) + days(7);
  CHECK(lines(e.process(events, t0 + days(20))) ==
        strings{in(t0, "ann", "not_recent"), in(t0 + hours(1), "ann", "recent"),
                out(t0 + hours(1), "ann", "not_recent"), in(t0 + hours(2), "ann", "recent_gold"),
                in(t0 + hours(2), "ann", "recent_gold_pl"), in(t0 + days(1), "ann", "carted"),
                out(t0 + days(1) + hours(1), "ann", "carted"), in(t0 + days(3), "ann", "carted"),
                out(t0 + days(3) + hours(1), "ann", "carted"), in(t0 + days(5), "ann", "carted"),
                out(t0 + days(5) + hours(1), "ann", "carted"), out(gone, "ann", "recent"),
                out(gone, "ann", "recent_gold"), out(gone, "ann", "recent_gold_pl"),
                in(gone, "ann", "not_recent")});
}

TEST_CASE("segment inputs: a score segment follows scoring rules, actions and decay",
          "[segment][inputs]") {
  nudge::scoring s;
  s.rules.push_back({"probes", nudge::on("probe"), 6, std::nullopt});
  s.decay = nudge::score_decay{days(1), 0.5, 0};
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(days(2))},
                    {"warm", nudge::score().ge(10.0)}},
                   {on_event("cool", "app_session", {nudge::add_score(-6)})}, s);
  nudge::engine e{p};
  const std::vector events{ev("ann", "page_view", t0), ev("ann", "probe", t0 + hours(1)),  // 6
                           ev("ann", "page_view", t0 + hours(2)),
                           ev("ann", "probe", t0 + hours(3)),  // 12: in
                           // t0 + 1d: decay to 6, out
                           ev("ann", "probe", t0 + days(1) + hours(1)),  // 12: in
                           ev("ann", "page_view", t0 + days(1) + hours(2)),
                           ev("ann", "app_session", t0 + days(1) + hours(3))};  // 6: out
  CHECK(lines(e.process(events, t0 + days(1) + hours(4))) ==
        strings{in(t0, "ann", "visited"), in(t0 + hours(3), "ann", "warm"),
                out(t0 + days(1), "ann", "warm"), in(t0 + days(1) + hours(1), "ann", "warm"),
                out(t0 + days(1) + hours(3), "ann", "warm")});
}

TEST_CASE("segment inputs: a window edge passes exactly while other segments take events",
          "[segment][inputs]") {
  auto p =
      compile({{"carted", nudge::happened(nudge::on("cart")).within(hours(1))},
               {"two_views", nudge::happened(nudge::on("page_view")).within(days(7)).at_least(2)},
               {"spent", nudge::sum_of(nudge::on("purchase"), "value").within(days(3)).ge(100)},
               {"probed", nudge::first_seen(nudge::on("probe")).within(days(2))}});
  nudge::memory_store store;
  nudge::engine e{p, &store};
  // One batch: the carted flip at t0 + 2d + 1h and the later events are not two_views' inputs,
  // so two_views keeps its first evaluation's edge; the flip timer must still be at t0 + 7d.
  const std::vector first{ev("ann", "page_view", t0),
                          ev("ann", "page_view", t0 + days(1)),
                          ev("ann", "cart", t0 + days(2)),
                          ev("ann", "probe", t0 + days(3)),
                          with(ev("ann", "purchase", t0 + days(3) + hours(1)), "value", 60.0),
                          with(ev("ann", "purchase", t0 + days(4)), "value", 50.0)};
  CHECK(lines(e.process(first, t0 + days(4))) ==
        strings{in(t0 + days(1), "ann", "two_views"), in(t0 + days(2), "ann", "carted"),
                out(t0 + days(2) + hours(1), "ann", "carted"), in(t0 + days(3), "ann", "probed"),
                in(t0 + days(4), "ann", "spent")});
  // Next flips: probed leaves at t0 + 5d, two_views at t0 + 7d, spent at t0 + 6d + 1h (the
  // purchase of 60 leaves the 3-day window).
  CHECK(store.due(t0 + days(5) - seconds(1)).empty());
  CHECK(store.due(t0 + days(5)) == strings{"ann"});
  CHECK(lines(e.advance(t0 + days(5))) == strings{out(t0 + days(5), "ann", "probed")});
  CHECK(store.due(t0 + days(6) + hours(1) - seconds(1)).empty());
  // Carts between the flips: carted is re-evaluated, the others keep their edges.
  CHECK(lines(e.process(std::vector{ev("ann", "cart", t0 + days(6))}, t0 + days(6))) ==
        strings{in(t0 + days(6), "ann", "carted")});
  CHECK(lines(e.process(std::vector{ev("ann", "cart", t0 + days(6) + hours(2))},
                        t0 + days(6) + hours(2))) ==
        strings{out(t0 + days(6) + hours(1), "ann", "carted"),
                out(t0 + days(6) + hours(1), "ann", "spent"),
                in(t0 + days(6) + hours(2), "ann", "carted")});
  CHECK(store.due(t0 + days(6) + hours(3) - seconds(1)).empty());
  CHECK(lines(e.advance(t0 + days(7) - seconds(1))) ==
        strings{out(t0 + days(6) + hours(3), "ann", "carted")});
  CHECK(store.due(t0 + days(7) - seconds(1)).empty());
  CHECK(store.due(t0 + days(7)) == strings{"ann"});
  CHECK(lines(e.advance(t0 + days(7))) == strings{out(t0 + days(7), "ann", "two_views")});
  CHECK(store.due(nudge::max_time).empty());
}

TEST_CASE("segment inputs: one batch (re-evaluating what changed) equals one event per batch",
          "[segment][inputs][split]") {
  // Each batch starts by evaluating every segment; inside one long batch only touched segments
  // are. Actions change the profile, scores change, segments build on earlier ones.
  nudge::scoring s;
  s.rules.push_back({"views", nudge::on("page_view"), 1, std::nullopt});
  s.rules.push_back({"buys", nudge::on("purchase"), 5, std::nullopt});
  s.decay = nudge::score_decay{days(2), 0.5, 0};
  auto p = compile(
      {{"active", nudge::happened(nudge::on("page_view")).within(days(3)).at_least(2)},
       {"spender", nudge::sum_of(nudge::on("purchase"), "value").within(days(5)).ge(100)},
       {"avg_high", nudge::average_of(nudge::on("purchase"), "value").within(days(4)).gt(40)},
       {"lapsed", nudge::all({nudge::happened(nudge::on("purchase")),
                              nudge::not_happened(nudge::on("purchase")).within(days(4))})},
       {"new", nudge::first_seen(nudge::on("page_view")).within(days(2))},
       {"old_last", nudge::last_seen(nudge::on("cart")).older_than(days(1))},
       {"hot", nudge::score().ge(8.0)},
       {"vip", nudge::all({nudge::in_segment("spender"), nudge::has_tag("vip")})},
       {"vip_pl", nudge::all({nudge::in_segment("vip"), nudge::contact_detail("lang").eq("pl")})},
       {"team_active", nudge::all({nudge::in_group("team"), nudge::in_segment("active")})},
       {"customer", nudge::status().eq("customer")}},
      {on_event("tag_vip", "signup", {nudge::add_tag("vip")}),
       on_event("untag_vip", "app_session", {nudge::remove_tag("vip")}),
       on_event("polish", "probe", {nudge::set_detail("lang", std::string{"pl"})}),
       on_event("english", "cart", {nudge::set_detail("lang", std::string{"en"})}),
       on_event("join", "signup", {nudge::add_to_group("team")}),
       on_event("leave", "probe", {nudge::remove_from_group("team")}),
       on_event("customer", "purchase", {nudge::set_status("customer")}),
       on_event("refund", "app_session", {nudge::set_status("lead"), nudge::add_score(-3)}),
       nudge::rule_builder("hot_spender")
           .on(nudge::on_segment_entered("hot"))
           .only_if(nudge::in_segment("spender"))
           .then(nudge::add_tag("vip"))},
      s);
  const strings types{"page_view", "purchase", "cart", "signup", "app_session", "probe"};
  const strings who{"ann", "bob", "cid"};
  std::mt19937 rng(GENERATE(1u, 2u, 3u));
  std::vector<nudge::event> events;
  auto t = t0;
  for (int i = 0; i < 300; ++i) {
    t += seconds(static_cast<std::int64_t>(rng() % (30 * 3600)));
    const auto& type = types[rng() % types.size()];
    auto e = ev(who[rng() % who.size()], type, t);
    if (type == "purchase") {
      e = with(std::move(e), "value", static_cast<double>(rng() % 90 + 5));
    }
    events.push_back(std::move(e));
  }
  const auto end = t + days(10);
  nudge::memory_store whole_store;
  nudge::engine whole{p, &whole_store};
  const auto expected = lines(whole.process(events, end));
  REQUIRE(expected.size() > 100);
  nudge::memory_store split_store;
  nudge::engine split{p, &split_store};
  strings got;
  for (std::size_t i = 0; i < events.size();) {
    std::size_t j = i + 1;
    while (j < events.size() && events[j].ts == events[j - 1].ts) {
      ++j;
    }
    auto part = lines(split.process(std::span{events.data() + i, j - i}, events[j - 1].ts));
    got.insert(got.end(), part.begin(), part.end());
    i = j;
  }
  auto rest = lines(split.advance(end));
  got.insert(got.end(), rest.begin(), rest.end());
  // Batches return their actions in time and contact order: compare them as one such list.
  auto ordered = [](strings v) {
    std::stable_sort(v.begin(), v.end(), [](const std::string& a, const std::string& b) {
      return a.substr(0, a.find(' ', 21)) < b.substr(0, b.find(' ', 21));
    });
    return v;
  };
  CHECK(ordered(got) == ordered(expected));
  for (const auto& id : who) {
    CHECK(*split_store.find(id) == *whole_store.find(id));
  }
  for (const auto& name : {"active", "spender", "avg_high", "lapsed", "new", "old_last", "hot",
                           "vip", "vip_pl", "team_active", "customer"}) {
    CHECK(whole.segment_members(name) == split.segment_members(name));
  }
}

TEST_CASE("segment inputs: an upsert at an instant after a flip timer re-evaluates every segment",
          "[segment][inputs][upsert]") {
  // The flip timer at t0 + 1h fires in the upsert's own evaluation, which evaluates "gold" on
  // the old profile first; the new profile must then be read again.
  auto p = compile({{"visited", nudge::happened(nudge::on("page_view")).within(hours(1))},
                    {"gold", nudge::has_tag("gold")},
                    {"pl", nudge::contact_detail("language").eq("pl")}});
  nudge::engine e{p};
  CHECK(lines(e.process(std::vector{ev("ann", "page_view", t0)}, t0)) ==
        strings{in(t0, "ann", "visited")});
  nudge::contact c{.id = "ann"};
  c.tags.emplace("gold", t0);
  c.details["language"] = std::string{"pl"};
  CHECK(lines(e.upsert_contact(c, t0 + hours(2))) == strings{out(t0 + hours(1), "ann", "visited"),
                                                             in(t0 + hours(2), "ann", "gold"),
                                                             in(t0 + hours(2), "ann", "pl")});
  CHECK(e.segment_members("gold") == strings{"ann"});
}
