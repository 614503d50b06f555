// What the nudge CLI's subcommands share: exit codes, option checks, loading rules.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nudge/io/replay.hpp>
#include <nudge/program.hpp>
#include <nudge/time.hpp>

namespace nudge_cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_input = 1;
inline constexpr int exit_usage = 2;

/// The meta key under which nudge run stores the rule file's text (nudge outbox reads it).
inline constexpr std::string_view meta_rules = "run.rules";

/// Sets `until` from the text of --until (empty: not given, `until` unchanged; "now": the wall
/// clock, follow.hpp's wall_now). False after
/// printing to stderr why the text is not a time; the caller exits with the usage code.
bool parse_until(const std::string& text, std::optional<nudge::time_point>& until);

/// The rule of --on-error and --rejects (nudge replay, nudge run): false after printing
/// "--rejects needs --on-error skip" to stderr; the caller exits with the usage code.
bool check_error_options(const std::string& on_error, const std::string& rejects);

/// Loads a rule file, printing every problem and their count; nullptr when there were any.
std::shared_ptr<const nudge::program> load_or_report(const std::string& path);

/// Loads rules from `text` (named `name` in messages), printing every problem; nullptr when
/// there were any (nudge run, nudge outbox).
std::shared_ptr<const nudge::program> load_rules_text(const std::string& text,
                                                      const std::string& name);

/// Prints what a replay left pending (nudge replay, nudge explain).
void print_pending(const nudge::replay_result& r, bool until_given);

}  // namespace nudge_cli
