// What the nudge CLI's subcommands share (common.hpp).
#include "common.hpp"

#include <cstdio>

#include <fmt/format.h>

#include <nudge/error.hpp>
#include <nudge/io/load_rules.hpp>

#include "follow.hpp"

namespace nudge_cli {

bool parse_until(const std::string& text, std::optional<nudge::time_point>& until) {
  if (text.empty()) {
    return true;
  }
  if (text == "now") {
    until = wall_now();  // the wall clock at the start of the command
    return true;
  }
  nudge::time_error why = nudge::time_error::none;
  auto t = nudge::parse_time(text, &why);
  if (!t) {
    if (why == nudge::time_error::out_of_range) {
      fmt::print(stderr, "--until: \"{}\" is outside the supported range ({})\n", text,
                 nudge::input_range_text);
    } else {
      fmt::print(stderr,
                 "--until: \"{}\" is not an ISO-8601 time with offset, epoch seconds or now\n",
                 text);
    }
    return false;
  }
  until = *t;
  return true;
}

bool check_error_options(const std::string& on_error, const std::string& rejects) {
  if (!rejects.empty() && on_error != "skip") {
    fmt::print(stderr, "--rejects needs --on-error skip\n");
    return false;
  }
  return true;
}
// Loads rules, printing every problem; nullptr when there were any.
std::shared_ptr<const nudge::program> load_or_report(const std::string& path) {
  try {
    return nudge::load_rules_file(path);
  } catch (const nudge::rule_error& e) {
    for (const auto& d : e.diagnostics()) {
      fmt::print(stderr, "{}\n", d.to_string());
    }
    const auto n = e.diagnostics().size();
    fmt::print(stderr, "{} error{}\n", n, n == 1 ? "" : "s");
    return nullptr;
  }
}

std::shared_ptr<const nudge::program> load_rules_text(const std::string& text,
                                                      const std::string& name) {
  try {
    return nudge::load_rules(text, {.file_name = name});
  } catch (const nudge::rule_error& e) {
    for (const auto& d : e.diagnostics()) {
      fmt::print(stderr, "{}\n", d.to_string());
    }
    return nullptr;
  }
}

// Every replay says what it left pending: with --until, the timers due after it; with the
// default end, those left when its extensions ran out (normally none).
void print_pending(const nudge::replay_result& r, bool until_given) {
  const auto& p = r.pending;
  std::string line = fmt::format("{} timer{} pending", p.timers, p.timers == 1 ? "" : "s");
  if (p.timers > 0) {
    line += fmt::format(" past {} ({}), the last due at {}",
                        until_given ? "--until" : "the default end", nudge::format_time(r.until),
                        nudge::format_time(p.last));
  }
  if (p.recurring > 0) {
    line += fmt::format("; {} recurring (yearly dates, score decay) not counted", p.recurring);
  }
  fmt::print(stderr, "{}\n", line);
}

}  // namespace nudge_cli
