// Time zones from the host (nudge/zones.hpp, nudge/io/zones.hpp): the system provider's
// historical transitions (Europe/Moscow 2011-2014, America/Sao_Paulo's abolished DST), the
// POSIX rule after the last transition, a host's own provider, compiling without one, and the
// program fingerprint following the zone data.
#include <memory>
#include <sstream>
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

using nudge::hours;
using nudge::minutes;

const nudge::zone_rules& system_zone(const char* name) {
  const nudge::zone_rules* z = nudge::system_zones()->zones()->find(name);
  REQUIRE(z != nullptr);
  return *z;
}

// Quiet hours 21:00-08:00 on the contact's clock, deferring; one e-mail per probe.
std::string quiet_rules(const std::string& zone, const std::string& extra = {}) {
  return fmt::format(
      R"({{"event_types": ["probe"], "rules": [{{"id": "promo", "on": {{"event": "probe"}},
    "then": [{{"do": "send_email", "arg": "promo"}}]}}],
    "delivery": {{"default_time_zone": "{}", "quiet_hours": {{"from": "21:00", "to": "08:00"}}{}}}}})",
      zone, extra);
}

// The actions one probe at `t` gives a consenting contact in `zone` within two days.
strings promo_at(const nudge::program& p, const char* t, const std::string& zone = {}) {
  nudge::contact c{.id = "ann"};
  c.consent["email"] = true;
  c.time_zone = zone;
  const auto out = nudge::evaluate(p, p.new_state(std::move(c)), std::vector{ev("probe", at(t))},
                                   at(t) + hours(48));
  return lines(out.actions);
}

// A host's provider of fixed zones.
struct fixed_zones final : nudge::zone_provider {
  std::vector<std::pair<std::string, nudge::zone_rules>> list;
  std::shared_ptr<const nudge::zone_database> zones() const override {
    return std::make_shared<nudge::zone_database>(list, "the test's zones");
  }
};

std::shared_ptr<const fixed_zones> one_zone(const char* name, const char* posix) {
  auto z = std::make_shared<fixed_zones>();
  z->list.emplace_back(name, *nudge::zone_rules::parse(posix));
  return z;
}

}  // namespace

TEST_CASE("zones: the system provider keeps each zone's historical transitions",
          "[zones][local_time]") {
  const auto& moscow = system_zone("Europe/Moscow");
  CHECK(moscow.utc_offset(at("2010-07-01T00:00:00Z")) == hours(4));  // MSD
  CHECK(moscow.utc_offset(at("2010-12-01T00:00:00Z")) == hours(3));  // MSK
  CHECK(moscow.utc_offset(at("2012-01-15T00:00:00Z")) == hours(4));  // +04 all year 2011-2014
  CHECK(moscow.utc_offset(at("2012-07-15T00:00:00Z")) == hours(4));
  CHECK(moscow.utc_offset(at("2016-01-15T00:00:00Z")) == hours(3));  // +03 since 2014-10-26
  CHECK(moscow.utc_offset(at("2016-07-15T00:00:00Z")) == hours(3));
  CHECK(moscow.posix() == "MSK-3");

  const auto& sao_paulo = system_zone("America/Sao_Paulo");
  CHECK(sao_paulo.utc_offset(at("2018-01-15T12:00:00Z")) == hours(-2));  // summer time
  CHECK(sao_paulo.utc_offset(at("2018-07-15T12:00:00Z")) == hours(-3));
  CHECK(sao_paulo.utc_offset(at("2020-01-15T12:00:00Z")) == hours(-3));  // abolished in 2019

  // After the file's last transition (2037 for zones that still change clocks), the rule at the
  // end of the file: Warsaw still has summer time in 2050.
  const auto& warsaw = system_zone("Europe/Warsaw");
  CHECK(warsaw.utc_offset(at("2050-01-15T12:00:00Z")) == hours(1));
  CHECK(warsaw.utc_offset(at("2050-07-15T12:00:00Z")) == hours(2));
  CHECK(warsaw.utc_offset(at("2024-03-31T00:59:59Z")) == hours(1));
  CHECK(warsaw.utc_offset(at("2024-03-31T01:00:00Z")) == hours(2));
  CHECK(warsaw.posix() == "CET-1CEST,M3.5.0,M10.5.0/3");

  CHECK(nudge::system_zones()->zones()->find("Europe/Warsow") == nullptr);
  CHECK(nudge::system_zones()->zones()->find("localtime") == nullptr);
  // Read once per process: every call hands out the same database.
  CHECK(nudge::system_zones()->zones() == nudge::system_zones()->zones());
}

TEST_CASE("zones: quiet hours follow Moscow's offset of the year (2012: +04, 2016: +03)",
          "[zones][local_time][delivery]") {
  const auto p = nudge::load_rules(quiet_rules("Europe/Moscow"));
  // 19:00 UTC is 23:00 in 2012 and 22:00 in 2016: deferred to 08:00 local the next morning.
  CHECK(promo_at(*p, "2012-06-01T19:00:00Z") ==
        strings{"2012-06-02T04:00:00Z ann promo send_email(promo)"});
  CHECK(promo_at(*p, "2016-06-01T19:00:00Z") ==
        strings{"2016-06-02T05:00:00Z ann promo send_email(promo)"});
  // In winter too: 2012 had no winter time (+04), 2016 has +03 all year.
  CHECK(promo_at(*p, "2012-12-01T16:30:00Z") ==
        strings{"2012-12-01T16:30:00Z ann promo send_email(promo)"});  // 20:30 local
  CHECK(promo_at(*p, "2012-12-01T17:30:00Z") ==
        strings{"2012-12-02T04:00:00Z ann promo send_email(promo)"});  // 21:30 local
  CHECK(promo_at(*p, "2016-12-01T17:30:00Z") ==
        strings{"2016-12-01T17:30:00Z ann promo send_email(promo)"});  // 20:30 local
}

TEST_CASE("zones: quiet hours in Sao Paulo with summer time (2018) and without (2020)",
          "[zones][local_time][delivery]") {
  // The zone comes from the contact; the rule set's default is UTC.
  const auto p = nudge::load_rules(quiet_rules("UTC"));
  // 00:30 UTC is 22:30 in January 2018 (-02) and 21:30 in January 2020 (-03).
  CHECK(promo_at(*p, "2018-01-16T00:30:00Z", "America/Sao_Paulo") ==
        strings{"2018-01-16T10:00:00Z ann promo send_email(promo)"});
  CHECK(promo_at(*p, "2020-01-16T00:30:00Z", "America/Sao_Paulo") ==
        strings{"2020-01-16T11:00:00Z ann promo send_email(promo)"});
  // 23:30 UTC: 21:30 (quiet) in 2018, 20:30 (allowed) in 2020.
  CHECK(promo_at(*p, "2018-01-15T23:30:00Z", "America/Sao_Paulo") ==
        strings{"2018-01-16T10:00:00Z ann promo send_email(promo)"});
  CHECK(promo_at(*p, "2020-01-15T23:30:00Z", "America/Sao_Paulo") ==
        strings{"2020-01-15T23:30:00Z ann promo send_email(promo)"});
}

TEST_CASE("zones: an until_time wait in Sao Paulo with summer time (2018) and without (2020)",
          "[zones][local_time][workflow]") {
  const auto p = nudge::load_rules(R"({"event_types": ["probe"], "rules": [], "workflows": [
    {"id": "w", "entry": {"on": {"event": "probe"}}, "steps": [
      {"id": "morning", "wait": {"until_time": "09:00"}},
      {"id": "hello", "send": {"do": "send_email", "arg": "hello"}}]}]})");
  // 03:00 UTC is 01:00 in January 2018 (-02) and 00:00 in January 2020 (-03): 09:00 local is
  // 11:00 UTC, then 12:00 UTC.
  CHECK(promo_at(*p, "2018-01-15T03:00:00Z", "America/Sao_Paulo") ==
        strings{"2018-01-15T11:00:00Z ann w/hello send_email(hello)"});
  CHECK(promo_at(*p, "2020-01-15T03:00:00Z", "America/Sao_Paulo") ==
        strings{"2020-01-15T12:00:00Z ann w/hello send_email(hello)"});
}

TEST_CASE("zones: a table of transitions, then the POSIX rule", "[zones]") {
  // +01 until 2000-01-01, +02 until 2010-01-01, then Warsaw's rules.
  const auto z =
      nudge::zone_rules::with_history(3600, {{946'684'800, 7200}, {1'262'304'000, 3600}},
                                      nudge::zone_rules::parse("CET-1CEST,M3.5.0,M10.5.0/3"));
  CHECK(z.utc_offset(at("1999-12-31T23:59:59Z")) == hours(1));
  CHECK(z.utc_offset(at("2000-01-01T00:00:00Z")) == hours(2));
  CHECK(z.utc_offset(at("2005-07-01T00:00:00Z")) == hours(2));
  CHECK(z.utc_offset(at("2010-01-01T00:00:00Z")) == hours(1));
  CHECK(z.utc_offset(at("2010-07-01T00:00:00Z")) == hours(2));  // the rule's summer time
  CHECK(z.transitions().size() == 2);
  CHECK(z.initial_offset_seconds() == 3600);
  // Without a rule the last offset holds.
  const auto held = nudge::zone_rules::with_history(0, {{0, -1800}}, std::nullopt);
  CHECK(held.utc_offset(at("2050-07-01T00:00:00Z")) == minutes(-30));
  CHECK(held.utc_offset(at("1960-07-01T00:00:00Z")) == minutes(0));
  CHECK(held.posix().empty());
  CHECK_THROWS_AS(nudge::zone_rules::with_history(0, {{10, 0}, {10, 3600}}, std::nullopt),
                  std::invalid_argument);
}

TEST_CASE("zones: a host's own provider, and compiling without one", "[zones]") {
  auto rules = nudge::parse_rules(quiet_rules("Shop/Local"));
  SECTION("the host's provider resolves the names") {
    const auto p = nudge::program::compile(rules, {}, one_zone("Shop/Local", "<+05>-5"));
    CHECK(p->knows_time_zone("Shop/Local"));
    CHECK_FALSE(p->knows_time_zone("Europe/Warsaw"));
    CHECK(promo_at(*p, "2024-06-01T15:30:00Z") ==
          strings{"2024-06-01T15:30:00Z ann promo send_email(promo)"});  // 20:30 local
    CHECK(promo_at(*p, "2024-06-01T16:30:00Z") ==
          strings{"2024-06-02T03:00:00Z ann promo send_email(promo)"});  // 21:30 local
  }
  SECTION("no provider: a zone name the rules do not define is an error") {
    CHECK_THROWS_WITH(
        nudge::program::compile(rules),
        "/delivery/default_time_zone: unknown time zone \"Shop/Local\" (not in \"time_zones\", "
        "and the program was compiled without a zone provider: pass one to program::compile, "
        "e.g. nudge::system_zones() from nudge/io/zones.hpp)");
    CHECK_THROWS_WITH(
        nudge::load_rules(quiet_rules("Shop/Local"), {.file_name = "r.json", .zones = nullptr}),
        Catch::Contains("compiled without a zone provider"));
  }
  SECTION("no provider: the rule set's own zones and UTC still resolve") {
    const auto own = nudge::program::compile(nudge::parse_rules(
        quiet_rules("Shop/Local", R"(, "time_zones": {"Shop/Local": "<+05>-5"})")));
    CHECK(own->knows_time_zone("Shop/Local"));
    CHECK_FALSE(own->knows_time_zone("Europe/Warsaw"));
    const auto utc = nudge::program::compile(nudge::parse_rules(quiet_rules("UTC")));
    CHECK_FALSE(utc->knows_time_zone("Europe/Warsaw"));
  }
  SECTION("the system provider names its database in the error") {
    CHECK_THROWS_WITH(
        nudge::load_rules(quiet_rules("Shop/Local")),
        Catch::Contains("unknown time zone \"Shop/Local\" (not in \"time_zones\" "
                        "nor in the system time zone database (/usr/share/zoneinfo))"));
  }
}

TEST_CASE("zones: the program fingerprint follows the zone data it reads", "[zones][snapshot]") {
  const auto rules = nudge::parse_rules(quiet_rules("Shop/Local"));
  const auto a = nudge::program::compile(rules, {}, one_zone("Shop/Local", "<+05>-5"));
  const auto same = nudge::program::compile(rules, {}, one_zone("Shop/Local", "<+05>-5"));
  const auto moved = nudge::program::compile(rules, {}, one_zone("Shop/Local", "<+06>-6"));
  CHECK(nudge::program_fingerprint(*a) == nudge::program_fingerprint(*same));
  CHECK(nudge::program_fingerprint(*a) != nudge::program_fingerprint(*moved));

  // A snapshot saved under one zone database is refused under the other.
  nudge::memory_store store;
  nudge::engine engine{a, &store};
  std::ostringstream bytes;
  nudge::write_snapshot(bytes, nudge::take_snapshot(engine, store));
  CHECK_NOTHROW(nudge::parse_snapshot(bytes.str(), same.get()));
  CHECK_THROWS_AS(nudge::parse_snapshot(bytes.str(), moved.get()), nudge::snapshot_error);

  // Rules that read no local time do not depend on the zones.
  const auto plain = nudge::parse_rules(
      R"({"event_types": ["probe"], "rules": [{"id": "r", "on": {"event": "probe"}, "then": [{"do": "add_tag", "arg": "x"}]}]})");
  CHECK(
      nudge::program_fingerprint(*nudge::program::compile(plain, {}, one_zone("A/B", "<+05>-5"))) ==
      nudge::program_fingerprint(*nudge::program::compile(plain)));
}
