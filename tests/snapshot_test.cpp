#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/engine.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/rule.hpp>

namespace {

using nudge::days;
using nudge::from_epoch;
using nudge::hours;

std::shared_ptr<const nudge::program> small_program(const std::string& template_name = "winback") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("become_customer")
                         .on(nudge::on("purchase"))
                         .then(nudge::set_status("customer")));
  rs.rules.push_back(nudge::rule_builder("winback")
                         .on(nudge::on("purchase"))
                         .check_after(days(60))
                         .only_if(nudge::not_happened(nudge::on("purchase")).within(days(60)))
                         .then(nudge::send_email(template_name)));
  rs.rules.push_back(nudge::rule_builder("cart")
                         .on(nudge::on("cart"))
                         .check_after(hours(1))
                         .at_most(2, days(1))
                         .then(nudge::send_email("cart_reminder")));
  return nudge::program::compile(rs);
}

nudge::contact_state rich_state() {
  nudge::contact_state s;
  s.contact.id = "c42";
  s.contact.details["company"] = std::string{"Ekomed"};
  s.contact.details["employees"] = std::int64_t{-12};
  s.contact.details["ltv"] = 19.99;
  s.contact.details["vip"] = true;
  s.contact.details["birthday"] = from_epoch(315532800);
  s.contact.tags["VIP"] = from_epoch(1704103200);
  s.contact.score = -2.5;
  s.contact.owner = "ala";
  s.contact.status = "customer";
  s.contact.stage = "onboarding";
  s.contact.consent["email"] = true;
  s.contact.consent["sms"] = false;
  s.contact.time_zone = "Europe/Warsaw";
  s.contact.groups = {"newsletter", "b2b"};
  nudge::history_slot h;
  h.count = 3;
  h.first = from_epoch(1704000000);
  h.last = from_epoch(1704100000);
  h.recent = {from_epoch(1704050000), from_epoch(1704100000)};
  s.history = {h, {}};
  s.rule_runs[2] = {.runs = 4, .last = from_epoch(1704100000), .earlier = {from_epoch(1704090000)}};
  s.timers.push_back({.due_at = from_epoch(1704103200),
                      .sequence = 7,
                      .rule = 2,
                      .action = -1,
                      .triggered_at = from_epoch(1704099600),
                      .trigger_ordinal = 11});
  s.timers.push_back({.due_at = from_epoch(1704103300),
                      .sequence = 8,
                      .rule = 2,
                      .action = 0,
                      .triggered_at = from_epoch(1704099600),
                      .trigger_ordinal = 11,
                      .deferred = true});
  s.timers.push_back({.due_at = from_epoch(1704200000),
                      .sequence = 9,
                      .rule = 0,
                      .action = 1,
                      .triggered_at = from_epoch(1704099600),
                      .trigger_ordinal = 3,
                      .kind = nudge::timer_kind::workflow_step});
  s.channel_sends[0] = {from_epoch(1704000000), from_epoch(1704000100)};
  s.channel_sends[3] = {from_epoch(1704000200)};
  s.clock = from_epoch(1704100000);
  s.events_applied = 12;
  s.timers_scheduled = 10;
  // Five entries into a ring of three: the ring has wrapped, so the codec must write it oldest
  // first and the decoded (unwrapped) ring must still compare equal.
  for (std::uint32_t i = 0; i < 5; ++i) {
    nudge::timeline_entry e;
    e.ts = from_epoch(1704000000 + i);
    e.until = from_epoch(1704100000 + i);
    e.source = 2;
    e.step = i % 2 == 0 ? 0 : nudge::timeline_none;
    e.detail = i;
    e.what = static_cast<nudge::timeline_what>(i);
    e.reason = static_cast<nudge::timeline_reason>(i);
    s.timeline.record(e, 3);
  }
  s.runs.push_back({.workflow = 0,
                    .version = 2,
                    .step = 1,
                    .id = 3,
                    .entry_ordinal = 10,
                    .steps_taken = 2,
                    .entered_at = from_epoch(1704099600),
                    .step_at = from_epoch(1704099600),
                    .phase = 1,
                    .held = true,
                    .last_send = 0,
                    .last_send_at = from_epoch(1704099600),
                    .last_opened_at = from_epoch(1704099700)});
  s.workflow_history[0] = {.entries = 4, .last_entry = from_epoch(1704099600)};
  s.runs_started = 4;
  return s;
}

std::string encode(const nudge::snapshot& s) {
  std::ostringstream out;
  nudge::write_snapshot(out, s);
  return out.str();
}

std::string error_of(const std::string& bytes, const nudge::program* expected = nullptr) {
  try {
    nudge::parse_snapshot(bytes, expected, "s.snap");
  } catch (const nudge::snapshot_error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("snapshot: a contact state round-trips through the codec exactly") {
  const auto s = rich_state();
  std::string bytes;
  nudge::encode_contact_state(s, bytes);
  CHECK(nudge::decode_contact_state(bytes) == s);
}

TEST_CASE("snapshot: a snapshot round-trips with states, statistics and counters") {
  nudge::snapshot s;
  s.fingerprint = 0x0123456789abcdefULL;
  s.states = {rich_state()};
  s.stats = {{.rule = "r1",
              .triggered = 5,
              .passed = 4,
              .failed = 1,
              .suppressed = 0,
              .emitted = 4,
              .first = from_epoch(1704000000),
              .last = from_epoch(1704100000)},
             {.rule = "r2"}};
  s.counters = {3, 0};
  s.workflows = {{.workflow = "welcome",
                  .entered = 3,
                  .completed = 1,
                  .exited = 1,
                  .sent = 4,
                  .opened = 2,
                  .clicked = 1,
                  .active = 1,
                  .first = from_epoch(1704000000),
                  .last = from_epoch(1704100000),
                  .steps = {{.step = "s1", .reached = 3, .sent = 3, .opened = 2, .waiting = 0},
                            {.step = "w1", .reached = 2, .waiting = 1}}}};
  const auto bytes = encode(s);
  CHECK(bytes.substr(0, 12) == std::string("NUDGSNAP\x08\x00\x00\x00", 12));
  CHECK(nudge::parse_snapshot(bytes) == s);
}

TEST_CASE("snapshot: the program fingerprint is stable and follows every rule change") {
  const auto a = small_program();
  CHECK(nudge::program_fingerprint(*a) == nudge::program_fingerprint(*small_program()));
  CHECK(nudge::program_fingerprint(*a) != nudge::program_fingerprint(*small_program("winback2")));
}

TEST_CASE("snapshot: another format version is rejected naming both versions") {
  nudge::snapshot s;
  auto bytes = encode(s);
  bytes[8] = 9;
  CHECK(error_of(bytes) == "s.snap: snapshot format version 9, this build reads version 8");
}

TEST_CASE("snapshot: another program is rejected naming both fingerprints") {
  const auto writer_program = small_program();
  const auto reader_program = small_program("winback2");
  nudge::snapshot s;
  s.fingerprint = nudge::program_fingerprint(*writer_program);
  const auto bytes = encode(s);
  const auto expected = fmt::format(
      "s.snap: snapshot written for program fingerprint {:016x}, the loaded rules have "
      "fingerprint {:016x} (a snapshot only loads into the rule program that wrote it)",
      nudge::program_fingerprint(*writer_program), nudge::program_fingerprint(*reader_program));
  CHECK(error_of(bytes, reader_program.get()) == expected);
}

TEST_CASE("snapshot: a truncated file is rejected at every length, naming the byte offset") {
  nudge::snapshot s;
  s.states = {rich_state()};
  s.stats = {{.rule = "r1", .triggered = 1}};
  const auto bytes = encode(s);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    INFO("length " << n);
    const auto message = error_of(bytes.substr(0, n));
    CHECK(message.rfind("s.snap: truncated at byte ", 0) == 0);
  }
  CHECK(error_of(bytes.substr(0, 10)) ==
        "s.snap: truncated at byte 8: expected 4 bytes of the format version, found 2");
}

TEST_CASE("snapshot: a corrupt byte anywhere is rejected, never loaded") {
  nudge::snapshot s;
  s.states = {rich_state()};
  s.stats = {{.rule = "r1", .triggered = 1}};
  const auto bytes = encode(s);
  for (std::size_t i = 12; i < bytes.size(); ++i) {  // past the magic and version
    INFO("byte " << i);
    auto bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    CHECK(error_of(bad) != "no error");
  }
  auto bad = bytes;
  bad[bad.size() - 1] = static_cast<char>(bad[bad.size() - 1] ^ 1);
  CHECK(error_of(bad).rfind(fmt::format("s.snap: corrupt at byte {}: checksum ", bytes.size() - 8),
                            0) == 0);
  CHECK(error_of(bytes + "x") == fmt::format("s.snap: corrupt at byte {}: 1 bytes after the end "
                                             "of the snapshot",
                                             bytes.size()));
  CHECK(error_of("NUDGSNAQ") ==
        "s.snap: corrupt at byte 0: not a nudge snapshot (the file does not start with "
        "\"NUDGSNAP\")");
}

TEST_CASE("snapshot: a failed load changes nothing in the engine") {
  const auto program = small_program();
  nudge::memory_store store;
  nudge::engine engine{program, &store};
  nudge::snapshot s = nudge::take_snapshot(engine, store);
  s.states = {program->new_state(nudge::contact{.id = "c1"})};
  s.stats[0].rule = "renamed";
  CHECK_THROWS_WITH(nudge::load_snapshot(s, engine),
                    "snapshot statistics 0 are for rule \"renamed\", not \"become_customer\"");
  CHECK(store.size() == 0);
}

namespace {

struct w1_data {
  std::filesystem::path dir;
  std::shared_ptr<const nudge::program> program;
  std::vector<nudge::contact> contacts;
  std::vector<nudge::event> events;
};

// W1 data: 300 contacts, 6,000 events over 60 days (tests/support/gen_w1.py, seed 5) and the W1
// rules with 10 filler rules, generated into the test's working directory.
const w1_data& w1() {
  static const w1_data data = [] {
    w1_data d;
    d.dir = std::filesystem::current_path() / ("snapshot_test_w1_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d.dir);
    const std::string source = NUDGE_SOURCE_DIR;
    const std::string gen = "/usr/bin/python3 " + source +
                            "/tests/support/gen_w1.py --contacts 300 --events 6000 --days 60 "
                            "--seed 5 --quiet --out " +
                            d.dir.string();
    const std::string rules = "/usr/bin/python3 " + source +
                              "/examples/w1/make_rules.py --filler 10 > " +
                              (d.dir / "rules.json").string();
    REQUIRE(std::system(gen.c_str()) == 0);
    REQUIRE(std::system(rules.c_str()) == 0);
    d.program = nudge::load_rules_file((d.dir / "rules.json").string());
    d.contacts = nudge::read_contacts((d.dir / "contacts.csv").string());
    d.events = nudge::read_events((d.dir / "events.csv").string(), {.program = d.program.get()});
    std::filesystem::remove_all(d.dir);
    return d;
  }();
  return data;
}

}  // namespace

TEST_CASE(
    "snapshot: replaying half, snapshotting and loading into a fresh engine gives the "
    "uninterrupted run's actions") {
  const auto& d = w1();
  REQUIRE(d.events.size() == 6000);
  // Cut between distinct timestamps, and process the first half up to just before the second's
  // first event, as a replay with batches does.
  std::size_t cut = d.events.size() / 2;
  while (d.events[cut].ts == d.events[cut - 1].ts) {
    ++cut;
  }
  const auto mid = d.events[cut].ts - nudge::seconds(1);
  const auto until = d.events.back().ts + d.program->longest_delay();
  const std::span<const nudge::event> first{d.events.data(), cut};
  const std::span<const nudge::event> second{d.events.data() + cut, d.events.size() - cut};

  nudge::memory_store whole_store;
  nudge::engine whole{d.program, &whole_store};
  whole.upsert_contacts(d.contacts);
  auto expected = whole.process(first, mid);
  const auto expected_first = expected.size();
  for (auto& a : whole.process(second, until)) {
    expected.push_back(std::move(a));
  }

  nudge::memory_store store;
  nudge::engine before{d.program, &store};
  before.upsert_contacts(d.contacts);
  auto actions = before.process(first, mid);
  CHECK(actions.size() == expected_first);
  const auto path =
      (std::filesystem::current_path() / ("snapshot_test_" + std::to_string(::getpid()) + ".snap"))
          .string();
  nudge::save_snapshot(path, before, store);

  nudge::engine after{d.program};  // its own memory store
  nudge::load_snapshot(path, after);
  std::filesystem::remove(path);
  for (auto& a : after.process(second, until)) {
    actions.push_back(std::move(a));
  }
  CHECK(expected.size() > 100);
  CHECK(actions == expected);
  CHECK(after.stats() == whole.stats());
  CHECK(after.counters() == whole.counters());
  const auto& after_store = dynamic_cast<const nudge::memory_store&>(after.store());
  CHECK(nudge::take_snapshot(after, after_store) == nudge::take_snapshot(whole, whole_store));
}

TEST_CASE("snapshot: a file that cannot be written names the path, the step and the reason") {
  const auto dir =
      std::filesystem::current_path() / ("snapshot_test_missing_" + std::to_string(::getpid()));
  const auto path = (dir / "s.snap").string();
  nudge::snapshot s;
  s.fingerprint = 0x0123456789abcdefULL;
  s.states = {rich_state()};
  try {
    nudge::write_snapshot(path, s);
    FAIL("no error");
  } catch (const nudge::snapshot_error& e) {
    CHECK(std::string{e.what()} ==
          path + ": cannot write the snapshot (open " + path + ".tmp): No such file or directory");
  }
  // Written through PATH.tmp (fsynced, renamed, the directory fsynced): nothing else is left.
  std::filesystem::create_directories(dir);
  nudge::write_snapshot(path, s);
  CHECK(std::filesystem::exists(path));
  CHECK(!std::filesystem::exists(path + ".tmp"));
  CHECK(nudge::read_snapshot(path, nullptr) == s);
  std::filesystem::remove_all(dir);
}

// Issue 13: a year-9999 event made a timer no snapshot could read back. Inputs now end at
// max_input_time, 200 years before max_time (nudge/time.hpp): the longest delay from the last
// input instant is still storable, and the codec reads back every instant up to max_time.
TEST_CASE("snapshot: timers at the edge of the supported range round-trip") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("w")
                         .on(nudge::on("purchase"))
                         .check_after(days(36'500))  // program_limits::max_delay
                         .then(nudge::send_email("x")));
  const auto program = nudge::program::compile(rs);
  nudge::memory_store store;
  nudge::engine engine{program, &store};
  const std::vector<nudge::event> events{
      {.contact = "c1", .type = "purchase", .ts = nudge::max_input_time}};
  CHECK(engine.process(events, nudge::max_input_time).empty());
  const auto state = store.load("c1");
  REQUIRE(state);
  REQUIRE(state->timers.size() == 1);
  CHECK(state->timers[0].due_at == nudge::max_input_time + days(36'500));
  CHECK(state->timers[0].due_at <= nudge::max_time);

  const auto bytes = encode(nudge::take_snapshot(engine, store));
  nudge::memory_store store2;
  nudge::engine engine2{program, &store2};
  nudge::load_snapshot(nudge::parse_snapshot(bytes, program.get()), engine2);
  CHECK(store2.load("c1") == state);
  CHECK(encode(nudge::take_snapshot(engine2, store2)) == bytes);

  // One second past the input range: refused before anything is stored.
  const std::vector<nudge::event> late{
      {.contact = "c2", .type = "purchase", .ts = nudge::max_input_time + nudge::seconds(1)}};
  CHECK_THROWS_WITH(engine.process(late, nudge::max_input_time + nudge::seconds(1)),
                    "event 0 (contact \"\"): now (247090953600) is outside the supported range "
                    "(1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z)");
  CHECK_THROWS_WITH(engine.process(late, nudge::max_time),
                    Catch::Matchers::Contains("is outside the supported range"));
  CHECK_FALSE(store.load("c2"));

  // The codec's own bound is max_time: a timer there decodes, one second later is corrupt.
  auto edge = *state;
  edge.timers[0].due_at = nudge::max_time;
  std::string record;
  nudge::encode_contact_state(edge, record);
  CHECK(nudge::decode_contact_state(record) == edge);
  edge.timers[0].due_at = nudge::max_time + nudge::seconds(1);
  record.clear();
  nudge::encode_contact_state(edge, record);
  CHECK_THROWS_WITH(nudge::decode_contact_state(record),
                    Catch::Matchers::Contains("a timer due time 253402300800 is outside the "
                                              "supported range"));
}

TEST_CASE(
    "snapshot: a host that raised max_delay past the headroom gets an error, not a state "
    "it cannot read back") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("w")
                         .on(nudge::on("purchase"))
                         .check_after(days(100'000))
                         .then(nudge::send_email("x")));
  nudge::program_limits limits;
  limits.max_delay = days(365'000);
  const auto program = nudge::program::compile(rs, limits);
  nudge::memory_store store;
  nudge::engine engine{program, &store};
  const std::vector<nudge::event> events{
      {.contact = "c1", .type = "purchase", .ts = from_epoch(247'000'000'000)}};
  CHECK_THROWS_WITH(engine.process(events, from_epoch(247'000'000'000)),
                    Catch::Matchers::Contains("a timer would be due at epoch 255640000000, after "
                                              "9999-12-31T23:59:59Z (the latest time nudge can "
                                              "store)"));
  CHECK_FALSE(store.load("c1"));
}
