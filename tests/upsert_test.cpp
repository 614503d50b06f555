// Profile changes at an explicit instant (engine::upsert_contact(c, at)): segments over profile
// fields flip there, yearly date entries are scheduled for contacts without events, and the
// upsert is one atomic batch.
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/io/sqlite_store.hpp>
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
using nudge::seconds;

nudge::contact with_tag(std::string id, std::string tag) {
  nudge::contact c{.id = std::move(id)};
  c.tags.emplace(std::move(tag), nudge::from_epoch(0));
  return c;
}

// Segment "vip" (tag VIP) with rules mailing on entry and exit, and a birthday workflow.
std::shared_ptr<const nudge::program> vip_and_birthday() {
  nudge::rule_set rs;
  rs.segments = {{"vip", nudge::has_tag("VIP")}};
  rs.rules = {nudge::rule_builder("welcome_vip")
                  .on(nudge::on_segment_entered("vip"))
                  .then(nudge::send_email("vip_welcome")),
              nudge::rule_builder("bye_vip")
                  .on(nudge::on_segment_exited("vip"))
                  .then(nudge::send_email("vip_bye"))};
  rs.workflows = {nudge::workflow_builder("birthday")
                      .enter_yearly_on("birthday", 9 * 3600)
                      .send("wish", nudge::send_email("happy_birthday"))};
  return nudge::program::compile(std::move(rs));
}

// Records what the engine delivers.
class recording_sink final : public nudge::sink {
 public:
  void deliver(std::span<const nudge::due_action> actions) override {
    delivered.insert(delivered.end(), actions.begin(), actions.end());
  }
  std::vector<nudge::due_action> delivered;
};

}  // namespace

TEST_CASE("upsert at an instant: a segment on a tag flips there and its rule fires at exactly it",
          "[upsert][segment]") {
  auto p = vip_and_birthday();
  recording_sink sink;
  nudge::memory_store store;
  nudge::engine e{p, &store, &sink};
  CHECK(e.process(std::vector{ev("ann", "page_view", t0)}, t0).empty());
  CHECK(e.segment_members("vip").empty());

  const auto t1 = t0 + hours(5) + seconds(7);
  const auto entered = e.upsert_contact(with_tag("ann", "VIP"), t1);
  CHECK(lines(entered) == strings{at(t1) + " ann welcome_vip send_email(vip_welcome)"});
  CHECK(lines(sink.delivered) == lines(entered));
  CHECK(e.segment_members("vip") == strings{"ann"});
  CHECK(e.store().load("ann")->clock == t1);
  CHECK(e.stats()[0].emitted == 1);

  // The same profile again: no change, nothing raised.
  CHECK(e.upsert_contact(with_tag("ann", "VIP"), t1 + hours(1)).empty());

  // Dropping the tag leaves the segment at the new instant.
  const auto t2 = t0 + days(3);
  CHECK(lines(e.upsert_contact(nudge::contact{.id = "ann"}, t2)) ==
        strings{at(t2) + " ann bye_vip send_email(vip_bye)"});
  CHECK(e.segment_members("vip").empty());

  // A new contact enters at the upsert's instant, with no event at all.
  CHECK(lines(e.upsert_contact(with_tag("bob", "VIP"), t2)) ==
        strings{at(t2) + " bob welcome_vip send_email(vip_welcome)"});
  CHECK(e.segment_members("vip") == strings{"bob"});
}

TEST_CASE("upsert without an instant: the profile only, evaluated at the next event",
          "[upsert][segment]") {
  auto p = vip_and_birthday();
  nudge::engine e{p};
  e.upsert_contact(with_tag("ann", "VIP"));
  CHECK(e.segment_members("vip").empty());
  CHECK(e.advance(t0 + days(400)).empty());  // no event: never evaluated
  const auto t1 = t0 + days(400) + hours(1);
  CHECK(lines(e.process(std::vector{ev("ann", "page_view", t1)}, t1)) ==
        strings{at(t1) + " ann welcome_vip send_email(vip_welcome)"});
}

TEST_CASE("upsert at an instant: a birthday of a contact with no events is sent on the day",
          "[upsert][workflow]") {
  auto p = vip_and_birthday();
  nudge::engine e{p};
  nudge::contact cleo{.id = "cleo"};
  cleo.details["birthday"] = std::string{"1990-01-05"};
  CHECK(e.upsert_contact(cleo, t0).empty());
  CHECK(e.store().due(t0 + days(4) + hours(9)) == strings{"cleo"});
  CHECK(e.advance(t0 + days(4) + hours(9) - seconds(1)).empty());
  const auto birthday = t0 + days(4) + hours(9);  // 2024-01-05T09:00:00Z
  CHECK(lines(e.advance(t0 + days(30))) ==
        strings{at(birthday) + " cleo birthday/wish send_email(happy_birthday)"});
  CHECK(e.workflow_stats()[0].entered == 1);
  // The next year's is scheduled.
  CHECK(e.store().due(nudge::from_epoch(1'736'067'600)) == strings{"cleo"});  // 2025-01-05T09:00Z

  SECTION("a changed date reschedules the timer from the upsert's instant") {
    cleo.details["birthday"] = std::string{"1990-03-10"};
    CHECK(e.upsert_contact(cleo, t0 + days(40)).empty());
    const auto march = nudge::from_epoch(1'710'061'200);  // 2024-03-10T09:00:00Z
    CHECK(lines(e.advance(t0 + days(90))) ==
          strings{at(march) + " cleo birthday/wish send_email(happy_birthday)"});
  }
  SECTION("without an instant the birthday of a contact without events is never scheduled") {
    nudge::engine plain{p};
    plain.upsert_contact(cleo);
    CHECK(plain.advance(t0 + days(30)).empty());
  }
}

TEST_CASE(
    "upsert at an instant: timers due before it fire first, on the old profile, and those "
    "due at it, after the change",
    "[upsert]") {
  nudge::rule_set rs;
  rs.segments = {{"vip", nudge::has_tag("VIP")}};
  // Checks a day after signup whether the contact is VIP.
  rs.rules = {nudge::rule_builder("check_vip")
                  .on(nudge::on("signup"))
                  .check_after(days(1))
                  .only_if(nudge::in_segment("vip"))
                  .then(nudge::send_email("vip_day_one"))};
  auto p = nudge::program::compile(std::move(rs));

  SECTION("due before the upsert: checked on the old profile") {
    nudge::engine e{p};
    CHECK(e.process(std::vector{ev("ann", "signup", t0)}, t0).empty());
    CHECK(e.upsert_contact(with_tag("ann", "VIP"), t0 + days(1) + seconds(1)).empty());
  }
  SECTION("due at the upsert's instant: checked on the new profile") {
    nudge::engine e{p};
    CHECK(e.process(std::vector{ev("ann", "signup", t0)}, t0).empty());
    CHECK(lines(e.upsert_contact(with_tag("ann", "VIP"), t0 + days(1))) ==
          strings{at(t0 + days(1)) + " ann check_vip send_email(vip_day_one)"});
  }
}

TEST_CASE("upsert at an instant before the contact's clock throws and changes nothing",
          "[upsert][atomic]") {
  auto p = vip_and_birthday();
  recording_sink sink;
  nudge::memory_store store;
  nudge::engine e{p, &store, &sink};
  CHECK(e.process(std::vector{ev("ann", "page_view", t0 + days(2))}, t0 + days(2)).empty());
  const auto before = e.store().load("ann");
  REQUIRE(before);
  const auto stats_before = e.stats();

  // bob (new) is fine; ann's instant is in her past: the batch fails as a whole.
  const std::vector contacts{with_tag("bob", "VIP"), with_tag("ann", "VIP")};
  try {
    e.upsert_contacts(contacts, t0 + days(1));
    FAIL("no exception");
  } catch (const nudge::input_error& err) {
    CHECK(err.contact() == "ann");
    CHECK(err.event_index() == 1);
    CHECK_THAT(err.what(), Catch::Contains("out of order: the upsert at 2024-01-02T00:00:00Z") &&
                               Catch::Contains("is before 2024-01-03T00:00:00Z") &&
                               Catch::Contains("the contact's last applied event or timer"));
  }
  CHECK(e.store().load("ann") == before);
  CHECK_FALSE(e.store().load("bob"));
  CHECK(e.segment_members("vip").empty());
  CHECK(sink.delivered.empty());
  CHECK(e.stats()[0].emitted == stats_before[0].emitted);

  // At the clock itself it is accepted.
  CHECK(lines(e.upsert_contacts(contacts, t0 + days(2))) ==
        strings{at(t0 + days(2)) + " ann welcome_vip send_email(vip_welcome)",
                at(t0 + days(2)) + " bob welcome_vip send_email(vip_welcome)"});
}

TEST_CASE("upsert at an instant: empty ids and merged ids are refused", "[upsert]") {
  auto p = vip_and_birthday();
  nudge::engine e{p};
  const std::vector<nudge::contact> empty{nudge::contact{}};
  CHECK_THROWS_AS(e.upsert_contacts(empty, t0), nudge::input_error);
  CHECK(e.process(std::vector{ev("anon", "identify", t0, "ann")}, t0).empty());
  CHECK_THROWS_WITH(e.upsert_contact(nudge::contact{.id = "anon"}, t0 + seconds(1)),
                    Catch::Contains("merged into \"ann\""));
}

TEST_CASE("upsert at an instant on the SQLite store: one transaction with the outbox and meta",
          "[upsert][sqlite]") {
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("nudge_upsert_test_{}", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto path = (dir / "state.db").string();
  auto p = vip_and_birthday();
  {
    nudge::sqlite_store db{path, *p};
    recording_sink sink;
    nudge::durable_engine engine{p, db, &sink};
    nudge::contact cleo = with_tag("cleo", "VIP");
    cleo.details["birthday"] = std::string{"1990-01-05"};
    const std::vector<std::pair<std::string, std::string>> meta{{"host.loaded", "yes"}};
    CHECK(engine.upsert_contacts(std::vector{cleo}, t0, meta) == 1);
    CHECK(lines(sink.delivered) == strings{at(t0) + " cleo welcome_vip send_email(vip_welcome)"});
    CHECK(db.outbox_size() == 0);
    CHECK(db.get_meta("host.loaded") == "yes");
    // Refused: nothing of it is written, the meta entry included.
    const std::vector<std::pair<std::string, std::string>> other{{"host.loaded", "twice"}};
    CHECK_THROWS_AS(engine.upsert_contacts(std::vector{cleo}, t0 - seconds(1), other),
                    nudge::input_error);
    CHECK(db.get_meta("host.loaded") == "yes");
    CHECK(engine.advance(t0 + days(30)) == 1);
    CHECK(lines(sink.delivered).back() ==
          at(t0 + days(4) + hours(9)) + " cleo birthday/wish send_email(happy_birthday)");
  }
  {
    nudge::sqlite_store db{path, *p, {.read_only = true}};
    CHECK(db.load("cleo")->clock == t0 + days(4) + hours(9));
    CHECK(db.load("cleo")->segments.contains("vip"));
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("upsert at an instant: a score set by the host crosses thresholds and decays from there",
          "[upsert][scoring]") {
  nudge::rule_set rs;
  rs.scoring.decay = nudge::score_decay{days(1), 0.5, 0};
  rs.scoring.thresholds = {{"hot", 10}};
  rs.rules = {nudge::rule_builder("hot_lead")
                  .on(nudge::on("score_crossed", "hot"))
                  .then(nudge::send_email("hot"))};
  auto p = nudge::program::compile(std::move(rs));
  nudge::engine e{p};
  nudge::contact ann{.id = "ann"};
  ann.score = 12;
  CHECK(lines(e.upsert_contact(ann, t0 + hours(1))) ==
        strings{at(t0 + hours(1)) + " ann hot_lead send_email(hot)"});
  CHECK(e.advance(t0 + days(1)).empty());  // decay at the next whole day: 12 -> 6
  CHECK(e.find_contact("ann")->score == 6);
}
