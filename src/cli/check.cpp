// nudge check RULES: validates a rule file and prints every problem; when there is none, what the
// file holds (a file of workflows only has 0 rules, and is fine).
#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {
namespace {

// "1 rule", "2 rules".
std::string counted(std::size_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace

int run_check(const std::string& rules_path) {
  auto program = load_or_report(rules_path);
  if (!program) {
    return exit_input;
  }
  const auto& rules = program->rules();
  fmt::print("ok: {}, {}, {}, {}\n", counted(rules.rules.size(), "rule", "rules"),
             counted(rules.workflows.size(), "workflow", "workflows"),
             counted(rules.segments.size(), "segment", "segments"),
             counted(rules.scoring.rules.size(), "score rule", "score rules"));
  return exit_ok;
}

}  // namespace nudge_cli
