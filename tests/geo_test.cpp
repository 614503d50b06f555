// Locations: haversine distances, `near` and `moved` conditions, areas raising area_entered /
// area_exited, locations from events, profiles and contacts files, and located errors for bad
// coordinates; expected actions computed by hand (distances: docs/rules.md, "Location").
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/nudge.hpp>

namespace {

using strings = std::vector<std::string>;

const nudge::geo_point warsaw{52.2297, 21.0122};
const nudge::geo_point old_town{52.2497, 21.0122};
const nudge::geo_point krakow{50.0614, 19.9366};
const nudge::geo_point gdansk{54.3520, 18.6466};

nudge::event ping(std::string contact, const char* iso, nudge::geo_point p,
                  std::string type = "location") {
  nudge::event e{
      .contact = std::move(contact), .type = std::move(type), .ts = *nudge::parse_time(iso)};
  e.props["lat"] = p.lat;
  e.props["lon"] = p.lon;
  return e;
}

strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.action(), a.arg));
  }
  return out;
}

const char* const geo_rules = R"({
  "event_types": ["location"],
  "areas": [{"name": "old_town", "lat": 52.2497, "lon": 21.0122, "km": 1}],
  "segments": [{"name": "near_store", "if": {"near": {"lat": 52.2297, "lon": 21.0122, "km": 5}}}],
  "rules": [
    {"id": "enter", "on": {"area_entered": "old_town"}, "then": [{"do": "web_push", "arg": "in"}]},
    {"id": "leave", "on": {"area_exited": "old_town"}, "then": [{"do": "web_push", "arg": "out"}]},
    {"id": "store", "on": {"segment_entered": "near_store"},
     "then": [{"do": "send_email", "arg": "store"}]},
    {"id": "travel", "on": {"event": "location"}, "if": {"moved": {"km": 100}},
     "then": [{"do": "send_sms", "arg": "travel"}]}
  ]
})";

}  // namespace

TEST_CASE("geo: haversine distances on the mean Earth radius", "[geo]") {
  CHECK(nudge::earth_radius_km == 6371.0088);
  CHECK(nudge::distance_km(warsaw, warsaw) == 0);
  // 0.02 degrees of latitude: 6371.0088 * 0.02 * pi / 180 = 2.2239 km.
  CHECK(nudge::distance_km(warsaw, old_town) == Approx(2.22390).epsilon(1e-5));
  // A quarter of the equator: 6371.0088 * pi / 2 = 10007.557221 km; pole to pole twice that.
  CHECK(nudge::distance_km({0, 0}, {0, 90}) == Approx(10007.557221).epsilon(1e-9));
  CHECK(nudge::distance_km({90, 0}, {-90, 0}) == Approx(20015.114442).epsilon(1e-9));
  CHECK(nudge::distance_km(krakow, gdansk) == Approx(485.1015).epsilon(1e-6));
  CHECK(nudge::geo_problem(91, 0) == "latitude 91 is outside -90 to 90");
  CHECK(nudge::geo_problem(0, -180.5) == "longitude -180.5 is outside -180 to 180");
  CHECK_FALSE(nudge::geo_problem(-90, 180));
}

TEST_CASE("geo: areas, near segments and moved, from events and profiles", "[geo][json]") {
  const auto p = nudge::load_rules(geo_rules);
  nudge::engine e{p};
  // ann's profile puts her in the Warsaw centre: inside near_store (0 km), outside the Old Town
  // (2.22 km from its centre): the store e-mail at once.
  nudge::contact ann{.id = "ann"};
  ann.location = warsaw;
  CHECK(lines(e.upsert_contact(ann, *nudge::parse_time("2024-01-01T00:00:00Z"))) ==
        strings{"2024-01-01T00:00:00Z ann store send_email(store)"});
  const auto out = e.process(
      std::vector<nudge::event>{
          // Into the Old Town (2.22 km: no travel SMS), still near the store (2.22 <= 5 km).
          ping("ann", "2024-01-01T10:00:00Z", old_town),
          // A page view carrying a location counts too: back home, out of the Old Town.
          ping("ann", "2024-01-01T11:00:00Z", warsaw, "page_view"),
          // bob's first location (no previous one: no SMS), then 485.1 km: SMS.
          ping("bob", "2024-01-01T10:00:00Z", krakow),
          ping("bob", "2024-01-01T12:00:00Z", gdansk),
          // The same point again changes nothing; the previous location stays Kraków, so moved
          // still holds: a second SMS.
          ping("bob", "2024-01-01T13:00:00Z", gdansk),
      },
      *nudge::parse_time("2024-01-02T00:00:00Z"));
  CHECK(lines(out) == strings{
                          "2024-01-01T10:00:00Z ann enter web_push(in)",
                          "2024-01-01T11:00:00Z ann leave web_push(out)",
                          "2024-01-01T12:00:00Z bob travel send_sms(travel)",
                          "2024-01-01T13:00:00Z bob travel send_sms(travel)",
                      });
  const auto bob = e.store().load("bob");
  REQUIRE(bob);
  CHECK(bob->contact.location == gdansk);
  CHECK(bob->previous_location == krakow);
  std::string bytes;
  nudge::encode_contact_state(*bob, bytes);
  CHECK(nudge::decode_contact_state(bytes, p.get()) == *bob);
}

TEST_CASE("geo: builders give the same conditions as the JSON", "[geo]") {
  const auto p = nudge::load_rules(geo_rules);
  CHECK(p->rules().segments[0].condition == nudge::near(warsaw, 5));
  CHECK(p->rules().rules[3].condition == nudge::moved_more_than(100));
  CHECK(p->rules().areas == std::vector<nudge::area>{{"old_town", old_town, 1}});
}

TEST_CASE("geo: bad coordinates and unknown areas are located errors", "[geo][json]") {
  auto problems = [](const std::string& text) {
    auto r = nudge::try_load_rules(text, {.file_name = "g.json"});
    strings out;
    for (const auto& d : r.diagnostics) {
      out.push_back(d.to_string());
    }
    return out;
  };
  CHECK(problems(R"({"areas": [{"name": "a", "lat": 91, "lon": 0, "km": 1}], "rules": []})") ==
        strings{"g.json:1:33: /areas/0/lat: latitude 91 is outside -90 to 90"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"},
 "if": {"near": {"lat": 0, "lon": 200, "km": 1}},
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"g.json:2:35: /rules/0/if/near/lon: longitude 200 is outside -180 to 180"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"},
 "if": {"near": {"lat": "52", "lon": 21, "km": 1}},
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"g.json:2:25: /rules/0/if/near/lat: expected a number, got \"52\""});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"area_entered": "nowhere"},
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"g.json:1:47: /rules/0/on/area_entered: no area \"nowhere\" is defined"});
  CHECK(problems(R"({"rules": [{"id": "r", "on": {"event": "signup"}, "if": {"moved": {"km": -1}},
 "then": [{"do": "send_email", "arg": "x"}]}]})") ==
        strings{"g.json:1:74: /rules/0/if/moved/km: a distance must be a finite number, 0 or "
                "more"});
}

TEST_CASE("geo: bad event coordinates are input errors and nothing is applied", "[geo]") {
  const auto p = nudge::load_rules(geo_rules);
  nudge::engine e{p};
  auto bad = ping("ann", "2024-01-01T10:00:00Z", {91, 0});
  CHECK_THROWS_WITH(
      e.process(std::vector<nudge::event>{bad}, *nudge::parse_time("2024-01-02T00:00:00Z")),
      Catch::Contains("props/lat: latitude 91 is outside -90 to 90"));
  auto half = ping("ann", "2024-01-01T10:00:00Z", old_town);
  half.props.erase("lon");
  CHECK_THROWS_WITH(
      e.process(std::vector<nudge::event>{half}, *nudge::parse_time("2024-01-02T00:00:00Z")),
      Catch::Contains("props/lat without props/lon (a location needs both)"));
  CHECK_FALSE(e.store().load("ann"));
}

TEST_CASE("geo: contacts files carry lat / lon and bad ones are refused with the line",
          "[geo][read_events]") {
  const auto ok = nudge::parse_contacts("contact,lat,lon\nc1,52.2297,21.0122\nc2,,\n",
                                        nudge::file_format::csv, "c.csv");
  REQUIRE(ok.size() == 2);
  CHECK(ok[0].location == warsaw);
  CHECK_FALSE(ok[1].location);
  CHECK(ok[0].details.empty());
  const auto jl = nudge::parse_contacts(R"({"id": "c1", "lat": 50.0614, "lon": 19.9366})"
                                        "\n",
                                        nudge::file_format::jsonl, "c.jsonl");
  REQUIRE(jl.size() == 1);
  CHECK(jl[0].location == krakow);
  CHECK_THROWS_WITH(
      nudge::parse_contacts("contact,lat,lon\nc1,95,21\n", nudge::file_format::csv, "c.csv"),
      Catch::Contains("c.csv:2: latitude 95 is outside -90 to 90"));
  CHECK_THROWS_WITH(
      nudge::parse_contacts("contact,lat,lon\nc1,52,\n", nudge::file_format::csv, "c.csv"),
      Catch::Contains("c.csv:2: lat without lon (a location needs both)"));
}

TEST_CASE("geo: an identified visitor's location goes to the known contact if it has none",
          "[geo][identity]") {
  const auto p = nudge::load_rules(geo_rules);
  nudge::engine e{p};
  nudge::event identify{.contact = "anon-1",
                        .type = "identify",
                        .ts = *nudge::parse_time("2024-01-01T11:00:00Z"),
                        .key = "c1"};
  e.process(std::vector<nudge::event>{ping("anon-1", "2024-01-01T10:00:00Z", krakow),
                                      ping("c2", "2024-01-01T10:00:00Z", gdansk), identify},
            *nudge::parse_time("2024-01-01T12:00:00Z"));
  const auto c1 = e.store().load("c1");
  REQUIRE(c1);
  CHECK(c1->contact.location == krakow);
  // A known contact keeps its own location.
  nudge::event identify2{.contact = "anon-1b",
                         .type = "identify",
                         .ts = *nudge::parse_time("2024-01-01T13:00:00Z"),
                         .key = "c2"};
  e.process(std::vector<nudge::event>{ping("anon-1b", "2024-01-01T12:30:00Z", krakow), identify2},
            *nudge::parse_time("2024-01-01T14:00:00Z"));
  CHECK(e.store().load("c2")->contact.location == gdansk);
}
