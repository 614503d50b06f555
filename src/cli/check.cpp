// nudge check RULES: validates a rule file and prints every problem.
#include <string>

#include <fmt/format.h>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {

int run_check(const std::string& rules_path) {
  auto program = load_or_report(rules_path);
  if (!program) {
    return exit_input;
  }
  fmt::print("ok: {} rules\n", program->rule_count());
  return exit_ok;
}

}  // namespace nudge_cli
