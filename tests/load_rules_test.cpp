#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nudge/load_rules.hpp>
#include <nudge/nudge.hpp>
#include <string>
#include <vector>

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
    CHECK(e.diagnostics()[0].message == "\"60x\" is not a duration (expected e.g. \"60d\")");
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
        "9:16: /rules/0/delay: \"1hour\" is not a duration (expected e.g. \"60d\")");
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
        "f.json:1:63: /rules/0/delay: \"x\" is not a duration (expected e.g. \"60d\")");
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
