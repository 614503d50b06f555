// nudge/nudge.hpp is the whole public API (issue 14): it includes every header of
// include/nudge/, and due_action has an owning form for sinks that queue actions.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/nudge.hpp>

TEST_CASE("headers: nudge/nudge.hpp includes every public header", "[headers]") {
  const auto dir = std::filesystem::path{NUDGE_SOURCE_DIR} / "include" / "nudge";
  std::ifstream in{dir / "nudge.hpp"};
  std::stringstream text;
  text << in.rdbuf();
  std::vector<std::string> missing;
  // The io headers (files, databases) sit in include/nudge/io/; detail/ is not public API.
  for (const std::string sub : {"", "io/"}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir / sub)) {
      const auto name = sub + entry.path().filename().string();
      if (entry.path().extension() == ".hpp" && name != "nudge.hpp" &&
          text.str().find("#include <nudge/" + name + ">") == std::string::npos) {
        missing.push_back(name);
      }
    }
  }
  CHECK(missing.empty());
  // The whole API in one translation unit: names from the headers nudge.hpp used to lack.
  CHECK(&nudge::load_rules_file != nullptr);
  CHECK(&nudge::read_contacts != nullptr);
  CHECK(&nudge::write_actions_csv != nullptr);
  CHECK(&nudge::save_snapshot != nullptr);
  CHECK(std::is_class_v<nudge::sqlite_store>);
}

TEST_CASE("due_action: to_owned copies every string, valid after the program is gone",
          "[headers][due_action]") {
  std::vector<nudge::owned_action> queue;
  {
    nudge::rule_set rs;
    rs.rules.push_back(nudge::rule_builder("welcome")
                           .on(nudge::on("signup"))
                           .then(nudge::send_email("hello") | nudge::with_param{"subject", "Hi"}));
    nudge::engine engine{nudge::program::compile(std::move(rs))};
    for (const auto& a :
         engine.process(std::vector{nudge::event{
                            .contact = "c1", .type = "signup", .ts = nudge::from_epoch(100)}},
                        nudge::from_epoch(100))) {
      queue.push_back(a.to_owned());
    }
  }  // the engine and the only reference to its program are gone
  REQUIRE(queue.size() == 1);
  const auto& a = queue[0];
  CHECK(a.contact == "c1");
  CHECK(a.ts == nudge::from_epoch(100));
  CHECK(a.rule == "welcome");
  CHECK(a.step.empty());
  CHECK_FALSE(a.from_workflow());
  CHECK(a.action() == "send_email");
  CHECK(a.arg == "hello");
  CHECK(a.params.at("subject") == "Hi");
  CHECK(a.idempotency_key != 0);
}
