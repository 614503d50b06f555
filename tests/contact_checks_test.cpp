// Contacts files: values that used to fall back silently are refused, located (issue 14).
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>

namespace {

std::string error_of(std::string_view text, nudge::file_format format,
                     const nudge::contact_read_options& options = {}) {
  try {
    nudge::parse_contacts(text, format, "contacts", options);
  } catch (const nudge::read_error& e) {
    return e.what();
  }
  return "read";
}

// Quiet hours read the contact's local time, so its zone matters.
std::shared_ptr<const nudge::program> with_hours(const std::string& zones = "") {
  return nudge::load_rules(R"({"delivery": {"quiet_hours": {"from": "21:00", "to": "08:00"})" +
                           zones + R"(}, "rules": [{"id": "r", "on": {"event": "signup"},
                           "then": [{"do": "send_email", "arg": "hi"}]}]})");
}

}  // namespace

TEST_CASE("contacts: an unknown time zone is refused with the contact and its line",
          "[contacts][zones]") {
  const auto program = with_hours(R"(, "time_zones": {"Shop/Local": "CET-1CEST,M3.5.0,M10.5.0/3"},
                                   "use_system_zones": false)");
  const std::string csv = "contact,time_zone\nc1,Shop/Local\nc2,\nc3,Europe/Warsow\n";
  CHECK(error_of(csv, nudge::file_format::csv, {.program = program.get()}) ==
        "contacts:4: unknown time zone \"Europe/Warsow\" for contact \"c3\" (neither in the rule "
        "file's \"time_zones\" nor in the system's zoneinfo)");
  CHECK(error_of(R"({"id": "c3", "time_zone": "Europe/Warsow"})", nudge::file_format::jsonl,
                 {.program = program.get()}) ==
        "contacts:1: unknown time zone \"Europe/Warsow\" for contact \"c3\" (neither in the rule "
        "file's \"time_zones\" nor in the system's zoneinfo)");
  // Without a program, or with one that reads no local time, the zone is not checked.
  CHECK(error_of(csv, nudge::file_format::csv) == "read");
  const auto no_hours = nudge::load_rules(
      R"({"rules": [{"id": "r", "on": {"event": "signup"}, "then": [{"do": "add_tag", "arg": "x"}]}]})");
  CHECK_FALSE(no_hours->reads_time_zones());
  CHECK(error_of(csv, nudge::file_format::csv, {.program = no_hours.get()}) == "read");
  CHECK(program->reads_time_zones());
  CHECK(program->knows_time_zone("Shop/Local"));
  CHECK_FALSE(program->knows_time_zone("Europe/Warsaw"));  // system zones are off here

  // With a reject handler the line is skipped and the others are read.
  std::vector<nudge::input_problem> heard;
  auto read = nudge::parse_contacts(
      csv, nudge::file_format::csv, "contacts",
      {.program = program.get(), .on_reject = [&](const auto& p) { heard.push_back(p); }});
  CHECK(read.size() == 2);
  REQUIRE(heard.size() == 1);
  CHECK(heard[0].line == 4);
}

TEST_CASE("contacts: a consent naming no channel is refused, with the channels and separator",
          "[contacts][consent]") {
  const std::string expected =
      "contacts:2: consent: unknown channel \"email,sms\" (known: email, sms, web_push, popup, "
      "chat; in CSV several are separated by ';', as in \"email;sms\")";
  CHECK(error_of("contact,consent\nc1,\"email,sms\"\n", nudge::file_format::csv) == expected);
  CHECK(error_of("contact,consent\nc1,email;sms;chat;popup;web_push\n", nudge::file_format::csv) ==
        "read");
  CHECK(error_of("contact,consent\nc1,email;e-mail\n", nudge::file_format::csv) ==
        "contacts:2: consent: unknown channel \"e-mail\" (known: email, sms, web_push, popup, "
        "chat; in CSV several are separated by ';', as in \"email;sms\")");
  CHECK(error_of("{\"id\": \"c0\"}\n{\"id\": \"c1\", \"consent\": {\"email,sms\": true}}\n",
                 nudge::file_format::jsonl) == expected);
}
