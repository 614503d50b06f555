// nudge/io/load_rules.hpp: rule files (JSON) to programs, with every problem located.
//
// The format is documented in docs/rules.md. Loading compiles to exactly the program the C++
// builder would produce for the same rules.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/error.hpp>
#include <nudge/io/zones.hpp>
#include <nudge/program.hpp>
#include <nudge/rule.hpp>

namespace nudge {

struct load_options {
  std::string file_name;  ///< used in messages ("rules.json:14:9: ..."); may be empty
  program_limits limits;
  /// The zone provider program::compile resolves zone names with: by default the system's tz
  /// database (nudge/io/zones.hpp); null: only the file's "time_zones" and "UTC".
  std::shared_ptr<const zone_provider> zones = system_zones();
};

/// Parses a rule file's text into plain rule data, without compiling.
/// @throws nudge::rule_error listing every problem (each with JSON pointer and line:column).
rule_set parse_rules(std::string_view json_text, const load_options& options = {});

/// Parses, validates and compiles. A bad file never yields a half-loaded program.
///
/// Example:
///
///     auto program = nudge::load_rules(text, {.file_name = "rules.json"});
///
/// @throws nudge::rule_error listing every problem found, in document order.
std::shared_ptr<const program> load_rules(std::string_view json_text,
                                          const load_options& options = {});

/// Reads and loads the file at `path` (its name appears in messages), resolving zone names with
/// `zones` (load_options::zones).
/// @throws nudge::rule_error (also for a file that cannot be read).
std::shared_ptr<const program> load_rules_file(
    const std::string& path, program_limits limits = {},
    std::shared_ptr<const zone_provider> zones = system_zones());

/// The non-throwing twin: the program, or the diagnostics.
struct load_result {
  std::shared_ptr<const nudge::program> program;  ///< null when diagnostics is non-empty
  std::vector<diagnostic> diagnostics;
  explicit operator bool() const noexcept { return program != nullptr; }
};
load_result try_load_rules(std::string_view json_text, const load_options& options = {});

}  // namespace nudge
