#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/io/load_rules.hpp>
#include <nudge/nudge.hpp>

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

const std::filesystem::path data_dir = std::filesystem::path{NUDGE_SOURCE_DIR} / "tests" / "data";

std::string what_of(std::string_view text, const std::string& file_name) {
  try {
    nudge::load_rules(text, {.file_name = file_name});
  } catch (const nudge::rule_error& e) {
    return e.what();
  }
  return "(loaded without error)";
}

}  // namespace

TEST_CASE("load_rules: every golden error case gives its whole message", "[load_rules][golden]") {
  std::vector<std::filesystem::path> cases;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir / "errors")) {
    if (entry.path().extension() == ".json") {
      cases.push_back(entry.path());
    }
  }
  std::sort(cases.begin(), cases.end());
  REQUIRE(cases.size() >= 12);
  for (const auto& json_path : cases) {
    auto expected_path = json_path;
    expected_path.replace_extension(".expected");
    INFO("case " << json_path.filename().string());
    std::string expected = read_text(expected_path);
    while (!expected.empty() && expected.back() == '\n') {
      expected.pop_back();
    }
    const std::string text = read_text(json_path);
    const std::string name = json_path.filename().string();
    CHECK(what_of(text, name) == expected);
    // The non-throwing twin reports the same problems and no program.
    auto result = nudge::try_load_rules(text, {.file_name = name});
    CHECK_FALSE(result);
    CHECK(result.program == nullptr);
    std::string joined;
    for (const auto& d : result.diagnostics) {
      CHECK(d.file == name);
      CHECK(d.line >= 1);
      CHECK(d.column >= 1);
      CHECK_FALSE(d.code.empty());
      if (!joined.empty()) {
        joined += '\n';
      }
      joined += d.to_string();
    }
    CHECK(joined == expected);
  }
}

TEST_CASE("load_rules: diagnostics carry pointer, code and position", "[load_rules]") {
  const std::string text = read_text(data_dir / "errors" / "bad_duration.json");
  try {
    nudge::load_rules(text, {.file_name = "rules.json"});
    FAIL("expected a rule_error");
  } catch (const nudge::rule_error& e) {
    REQUIRE(e.diagnostics().size() == 1);
    CHECK(e.file() == "rules.json");
    CHECK(e.line() == 11);
    CHECK(e.column() == 21);
    CHECK(e.json_pointer() == "/rules/0/if/not_happened/within");
    CHECK(e.code() == "bad_duration");
    CHECK(
        e.diagnostics()[0].message ==
        "\"60x\" is not a duration (expected a whole number and a unit: s (seconds), m (minutes), "
        "h (hours), d (days), w (weeks), mo (calendar months), y (calendar years); e.g. \"60d\")");
  }
}

TEST_CASE("load_rules: several errors come in document order with stable codes", "[load_rules]") {
  const std::string text = read_text(data_dir / "errors" / "several_errors.json");
  auto r = nudge::try_load_rules(text);
  std::vector<std::string> codes;
  for (const auto& d : r.diagnostics) {
    codes.push_back(d.code);
    CHECK(d.file.empty());
  }
  CHECK(codes == std::vector<std::string>{"bad_duration", "unknown_field", "unknown_operator",
                                          "unknown_group", "duplicate_id", "unknown_event_type",
                                          "unknown_action"});
  // Without a file name the message starts at line:column.
  CHECK(r.diagnostics[0].to_string() ==
        "9:16: /rules/0/delay: \"1hour\" is not a duration (expected a whole number and a unit: s "
        "(seconds), m (minutes), h (hours), d (days), w (weeks), mo (calendar months), y (calendar "
        "years); e.g. \"60d\")");
}

TEST_CASE("load_rules: parse_rules reports the loader's own problems too", "[load_rules]") {
  CHECK_THROWS_WITH(nudge::parse_rules(R"({"rules": [{"id": "x"}]})"),
                    "1:12: /rules/0: missing required field \"on\"\n"
                    "1:12: /rules/0: missing required field \"then\"");
}

TEST_CASE("load_rules: columns count characters, not bytes", "[load_rules]") {
  // "ż" and "ó" take two bytes each in UTF-8.
  const std::string text =
      "{\"rules\": [{\"id\": \"żółw\", \"on\": {\"event\": \"signup\"}, \"delay\": \"x\", "
      "\"then\": [{\"do\": \"send_email\", \"arg\": \"a\"}]}]}";
  CHECK(what_of(text, "f.json") ==
        "f.json:1:63: /rules/0/delay: \"x\" is not a duration (expected a whole number and a unit: "
        "s (seconds), m (minutes), h (hours), d (days), w (weeks), mo (calendar months), y "
        "(calendar years); e.g. \"60d\")");
}

TEST_CASE("load_rules: a byte order mark is skipped and still counted", "[load_rules]") {
  const std::string text = "\xEF\xBB\xBF{\"rules\": 1}";
  CHECK(what_of(text, "f.json") == "f.json:1:12: /rules: expected an array, got 1");
  CHECK(nudge::load_rules("\xEF\xBB\xBF{\"rules\": []}")->rule_count() == 0);
}

TEST_CASE("load_rules_file: an unreadable path is an io error naming it", "[load_rules]") {
  const std::string path = (data_dir / "no_such_file.json").string();
  try {
    nudge::load_rules_file(path);
    FAIL("expected a rule_error");
  } catch (const nudge::rule_error& e) {
    CHECK(e.code() == "io");
    CHECK(e.file() == path);
    CHECK(std::string{e.what()} == path + ": cannot read the file: No such file or directory");
  }
  // A directory cannot be read as a file either.
  try {
    nudge::load_rules_file((data_dir / "errors").string());
    FAIL("expected a rule_error");
  } catch (const nudge::rule_error& e) {
    CHECK(e.code() == "io");
  }
}

TEST_CASE("load_rules_file: names the file in messages", "[load_rules]") {
  const std::string path = (data_dir / "errors" / "duplicate_id.json").string();
  CHECK_THROWS_WITH(nudge::load_rules_file(path),
                    path +
                        ":5:12: /rules/2/id: duplicate rule id \"welcome\" (first used by "
                        "/rules/0)");
}

TEST_CASE("load_rules: every construct compiles to what the builder makes", "[load_rules]") {
  using namespace nudge;
  rule_set expected;
  expected.event_types = {"PURCHASE", "CART"};
  expected.owner_groups["sales"] = {"anna", "bartek", "celina"};
  expected.rules.push_back(rule_builder("triggers_event")
                               .on(on("signup"))
                               .then(send_email("welcome_1"))
                               .then(send_email("welcome_2") | after{days(2)})
                               .then(send_email("welcome_3") | after{days(14)} |
                                     only_if{happened(on("email_open")).since_trigger()}));
  expected.rules.push_back(
      rule_builder("trigger_key").on(on("page_view", "/pricing")).then(web_push("pricing")));
  expected.rules.push_back(rule_builder("trigger_prefix")
                               .on(on_prefix("page_view", "/cart"))
                               .check_after(hours(1))
                               .only_if(not_happened(on("page_view", "/thank-you")).since_trigger())
                               .then(send_sms("cart")));
  expected.rules.push_back(rule_builder("trigger_tag")
                               .on(on("tag_added", "VIP"))
                               .only_if(status().eq("customer"))
                               .then(generate_coupon("coupon") | with_param{"value", "10%"})
                               .then(webhook("https://example.com/hook")));
  expected.rules.push_back(
      rule_builder("trigger_stage")
          .on(on("stage_entered", "onboarding"))
          .only_if(any({has_tag("VIP"), in_group("newsletter"), stage().eq("trial"),
                        !contact_detail("language").exists()}))
          .then(notify_owner("onboarding")));
  expected.rules.push_back(rule_builder("custom_types")
                               .on(on("CART"))
                               .check_after(seconds(90))
                               .only_if(not_happened(on("PURCHASE")).within(minutes(15)))
                               .then(send_email("cart_reminder"))
                               .once_per(days(1)));
  expected.rules.push_back(
      rule_builder("compare_details")
          .on(on("purchase"))
          .only_if(all({contact_detail("company").exists(), !contact_detail("phone").exists(),
                        contact_detail("country").eq(std::string{"PL"}),
                        contact_detail("orders").ne(std::int64_t{3}),
                        contact_detail("spent").lt(99.5), contact_detail("vip").le(true),
                        contact_detail("signed_up").gt(from_epoch(1704096000)),
                        contact_detail("renewal").ge(from_epoch(1704103200)),
                        contact_detail("language")
                            .in({std::string{"pl"}, std::string{"en"}, std::int64_t{7}}),
                        contact_detail("company").contains("Med"),
                        contact_detail("email").starts_with("info@")}))
          .then(add_tag("big") | notify_host{})
          .once());
  expected.rules.push_back(
      rule_builder("compare_fields")
          .on(on("email_click"))
          .only_if(all({status().eq(std::string{"lead"}),
                        stage().in({std::string{"trial"}, std::string{"onboarding"}}),
                        !owner().exists(), score().ge(std::int64_t{50}), score().lt(100.5),
                        time_zone().starts_with("Europe/")}))
          .then(assign_owner("sales"))
          .then(assign_owner("sales", owner_pick::round_robin) | notify_host{})
          .then([] {
            auto a = assign_owner("sales");
            a.salt = "2024";
            return a;
          }()));
  expected.rules.push_back(
      rule_builder("counts")
          .on(on("PURCHASE"))
          .only_if(all({happened(on("PURCHASE")), happened(on("PURCHASE")).exactly(5),
                        happened(on_prefix("page_view", "/p/")).within(weeks(2)).at_least(3),
                        happened(on("tag_added", "VIP")).at_most(0),
                        not_happened(on("stage_entered", "churned")).within(days(30))}))
          .then(remove_tag("cold"))
          .then(set_detail("tier", std::string{"gold"}))
          .then(set_detail("since", from_epoch(1704067200)))
          .then(set_status("customer"))
          .then(add_score(10))
          .then(add_score(-2.5))
          .then(set_stage("loyal"))
          .then(add_to_group("loyal"))
          .then(remove_from_group("prospects"))
          .at_most(2, days(7)));

  const std::string text = read_text(data_dir / "rules" / "every_construct.json");
  const rule_set parsed = parse_rules(text);
  REQUIRE(parsed.rules.size() == expected.rules.size());
  for (std::size_t i = 0; i < parsed.rules.size(); ++i) {
    INFO("rule " << expected.rules[i].id);
    CHECK(parsed.rules[i] == expected.rules[i]);
  }
  CHECK(parsed == expected);

  const auto loaded = load_rules(text);
  const auto built = program::compile(expected);
  CHECK(loaded->rules() == built->rules());
  CHECK(loaded->history_slot_count() == built->history_slot_count());
  CHECK(loaded->longest_delay() == built->longest_delay());
  CHECK(loaded->knows_event_type("CART"));
  CHECK_FALSE(loaded->knows_event_type("ORDER"));
}

TEST_CASE("load_rules: optional top-level parts may be left out", "[load_rules]") {
  const auto p = nudge::load_rules(
      R"({"rules": [{"id": "w", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "w"}]}]})");
  REQUIRE(p->rule_count() == 1);
  const nudge::rule expected =
      nudge::rule_builder("w").on(nudge::on("signup")).then(nudge::send_email("w")).build();
  CHECK(p->rules().rules[0] == expected);
  CHECK(nudge::load_rules(R"({"rules": []})")->rule_count() == 0);
}

TEST_CASE("load_rules: \"$schema\" is accepted and ignored at the top level only", "[load_rules]") {
  // Editors complete a rule file from the JSON Schema it names (schema/rules.schema.json).
  const auto p = nudge::load_rules(
      R"({"$schema": "./schema/rules.schema.json", "rules": [{"id": "w", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "w"}]}]})");
  CHECK(
      p->rules() ==
      nudge::load_rules(
          R"({"rules": [{"id": "w", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "w"}]}]})")
          ->rules());
  CHECK(
      nudge::program_fingerprint(*p) ==
      nudge::program_fingerprint(*nudge::load_rules(
          R"({"rules": [{"id": "w", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "w"}]}]})")));
  CHECK_THROWS_WITH(nudge::load_rules(R"({"$schema": 1, "rules": []})"),
                    "1:13: /$schema: expected a string, got 1");
  CHECK_THROWS_WITH(
      nudge::load_rules(
          R"({"rules": [{"$schema": "x", "id": "w", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "w"}]}]})"),
      "1:13: /rules/0/$schema: unknown field \"$schema\" (expected id, description, on, delay, if, "
      "then, reentry, cap, delivery or on_change)");
}

TEST_CASE("load_rules: an empty exact key matches events without a key", "[load_rules]") {
  const auto rs = nudge::parse_rules(
      R"({"rules": [{"id": "s", "on": {"event": "signup", "key": ""},
                     "then": [{"do": "send_email", "arg": "w"}]}]})");
  CHECK(rs.rules[0].trigger == nudge::on("signup", ""));
}

TEST_CASE("load_rules: the loaded program runs like the built one", "[load_rules]") {
  const auto program = nudge::load_rules(R"({
    "rules": [{"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
               "if": {"not_happened": {"event": "purchase", "within": "60d"}},
               "then": [{"do": "send_email", "arg": "winback"}]}]})");
  nudge::engine engine{program};
  const auto t0 = nudge::from_epoch(1'700'000'000);
  std::vector<nudge::event> events{
      {.contact = "a", .type = "purchase", .ts = t0},
      {.contact = "b", .type = "purchase", .ts = t0},
      {.contact = "b", .type = "purchase", .ts = t0 + nudge::days(30)}};
  auto due = engine.process(events, t0 + nudge::days(100));
  REQUIRE(due.size() == 2);
  CHECK(due[0].contact == "a");
  CHECK(due[0].ts == t0 + nudge::days(60));
  CHECK(due[1].contact == "b");
  CHECK(due[1].ts == t0 + nudge::days(90));
}

TEST_CASE("docs: every example in rules.md loads", "[load_rules][docs]") {
  const std::string doc = read_text(std::filesystem::path{NUDGE_SOURCE_DIR} / "docs" / "rules.md");
  const std::string head =
      R"({"event_types": ["PURCHASE", "CART", "app_session"], "owner_groups": {"sales": ["anna", "bartek"]},)"
      R"("segments": [{"name": "active", "if": {"has_tag": "x"}}],)"
      R"("scoring": {"thresholds": [{"name": "hot", "at": 100}]},)"
      R"("workflows": [{"id": "cart", "entry": {"on": {"event": "cart"}},)"
      R"( "steps": [{"id": "r2_wait", "wait": "1d"}]}],)"
      R"("areas": [{"name": "old_town", "lat": 52.2497, "lon": 21.0122, "km": 1}],)";
  auto as_rule = [&](const std::string& r) { return head + R"("rules": [)" + r + "]}"; };
  auto with = [&](const std::string& on, const std::string& cond, const std::string& act) {
    return as_rule(R"({"id": "doc", "on": )" + on + (cond.empty() ? "" : R"(, "if": )" + cond) +
                   R"(, "then": [)" + act + "]}");
  };
  const std::string signup = R"({"event": "signup"})";
  const std::string email = R"({"do": "send_email", "arg": "x"})";
  std::vector<std::string> files;
  // Fenced blocks: whole files, rules, actions or conditions.
  for (std::size_t at = doc.find("```json\n"); at != std::string::npos;
       at = doc.find("```json\n", at)) {
    at += 8;
    const std::size_t end = doc.find("```", at);
    REQUIRE(end != std::string::npos);
    const std::string block = doc.substr(at, end - at);
    at = end + 3;
    if (block.rfind("\"", 0) == 0) {  // a top-level member: "segments": [...]
      files.push_back(R"({"event_types": ["app_session"], )" + block + R"(, "rules": []})");
    } else if (block.find("\"rules\"") != std::string::npos) {
      files.push_back(block);
    } else if (block.rfind("{\"id\"", 0) == 0 || block.rfind("{\n  \"id\"", 0) == 0) {
      files.push_back(as_rule(block));
    } else if (block.rfind("{\"do\"", 0) == 0) {
      files.push_back(with(signup, "", block));
    } else {
      files.push_back(with(signup, block, email));
    }
  }
  // Inline examples in the tables: actions and triggers.
  for (std::size_t at = doc.find("`{\""); at != std::string::npos; at = doc.find("`{\"", at)) {
    const std::size_t end = doc.find('`', at + 1);
    const std::string inline_json = doc.substr(at + 1, end - at - 1);
    at = end + 1;
    if (inline_json.rfind("{\"do\"", 0) == 0) {
      files.push_back(with(signup, "", inline_json));
    } else if (inline_json.rfind("{\"event\"", 0) == 0 ||
               inline_json.rfind("{\"tag_added\"", 0) == 0 ||
               inline_json.rfind("{\"stage_entered\"", 0) == 0 ||
               inline_json.rfind("{\"segment_", 0) == 0 ||
               inline_json.rfind("{\"score_crossed\"", 0) == 0) {
      files.push_back(with(inline_json, "", email));
    }
  }
  CHECK(files.size() >= 40);
  for (const auto& f : files) {
    INFO(f);
    auto r = nudge::try_load_rules(f);
    for (const auto& d : r.diagnostics) {
      UNSCOPED_INFO(d.to_string());
    }
    CHECK(r);
  }
}

TEST_CASE("load_rules: limits on file size and string length are located errors",
          "[load_rules][limits]") {
  nudge::program_limits limits;
  limits.max_string_bytes = 10;  // "send_email" fits
  auto what = [&](std::string_view text) -> std::string {
    try {
      nudge::load_rules(text, {.file_name = "r.json", .limits = limits});
    } catch (const nudge::rule_error& e) {
      return e.what();
    }
    return "(loaded without error)";
  };
  const std::string ok =
      R"({"rules": [{"id": "a", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "welcome"}]}]})";
  CHECK(what(ok) == "(loaded without error)");

  SECTION("a long string value, named by its pointer") {
    CHECK(what(R"({"rules": [{"id": "a_long_id_x", "on": {"event": "signup"}, "then": []}]})") ==
          "r.json:1:19: /rules/0/id: a string of 11 bytes; at most 10 are allowed "
          "(max_string_bytes)");
  }
  SECTION("a long field name, named by its object; every one is reported") {
    CHECK(what(R"({"rules": [{"id": "a", "verylongname": 1, "on": {"x2345678901": 2}}]})") ==
          "r.json:1:12: /rules/0: a field name of 12 bytes; at most 10 are allowed "
          "(max_string_bytes)\n"
          "r.json:1:49: /rules/0/on: a field name of 11 bytes; at most 10 are allowed "
          "(max_string_bytes)");
  }
  SECTION("a file over max_text_bytes is refused before parsing") {
    limits.max_text_bytes = 64;
    CHECK(what(ok) == "r.json: the rule file has " + std::to_string(ok.size()) +
                          " bytes; at most 64 are allowed (max_text_bytes)");
    auto r = nudge::try_load_rules(ok, {.file_name = "r.json", .limits = limits});
    REQUIRE(r.diagnostics.size() == 1);
    CHECK(r.diagnostics[0].code == "too_large");
  }
  SECTION("load_rules_file checks the size before reading") {
    limits.max_text_bytes = 64;
    const std::string path = (data_dir / "errors" / "string_too_long.json").string();
    CHECK_THROWS_WITH(nudge::load_rules_file(path, limits),
                      path +
                          ": the rule file has 70100 bytes; at most 64 are allowed "
                          "(max_text_bytes)");
  }
  SECTION("more rules than max_rules") {
    limits.max_rules = 1;
    const std::string two = R"({"rules": [{"id": "a", "on": {"event": "signup"}, "then": []},)"
                            R"( {"id": "b", "on": {"event": "signup"}, "then": []}]})";
    CHECK(what(two) == "r.json:1:11: /rules: 2 rules; at most 1 are allowed");
  }
  SECTION("JSON nested 100,000 deep stops at the parser's depth bound") {
    const std::string deep = std::string(100'000, '[') + std::string(100'000, ']');
    CHECK(what(deep) == "r.json:1:145: JSON nested deeper than 144 levels");
  }
}
