// nudge explain: replays an event log keeping every contact's timeline, then prints one
// contact's: what the rules did, and why.
#include <exception>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

#include <fmt/format.h>

#include <nudge/contact_state.hpp>
#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/explain.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/replay.hpp>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {

// Replays with a timeline kept for every contact, then prints the one contact's timeline.
int run_explain(const explain_args& args) {
  nudge::replay_options options;
  options.contacts_path = args.contacts;
  if (!parse_until(args.until, options.until)) {
    return exit_usage;
  }
  std::shared_ptr<const nudge::program> program;
  try {
    std::ifstream in{args.rules, std::ios::binary};
    if (!in) {
      fmt::print(stderr, "{}: cannot read the rule file\n", args.rules);
      return exit_input;
    }
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    auto rules = nudge::parse_rules(text, {.file_name = args.rules, .limits = {}});
    rules.timeline_size = args.timeline_size;
    program = nudge::program::compile(std::move(rules), {}, nudge::system_zones());
  } catch (const nudge::rule_error& e) {
    for (const auto& d : e.diagnostics()) {
      fmt::print(stderr, "{}\n", d.to_string());
    }
    const auto n = e.diagnostics().size();
    fmt::print(stderr, "{} error{}\n", n, n == 1 ? "" : "s");
    return exit_input;
  }
  std::optional<nudge::contact_state> state;
  options.on_finished = [&](nudge::engine& engine) { state = engine.store().load(args.contact); };
  try {
    print_pending(nudge::replay(program, args.events, options), options.until.has_value());
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return exit_input;
  }
  if (!state) {
    fmt::print(stderr, "contact \"{}\" does not appear in the contacts or events\n", args.contact);
    return exit_input;
  }
  if (args.json) {
    fmt::print("{}\n", nudge::format_explanation_json(*program, *state));
  } else {
    fmt::print("{}", nudge::format_explanation(*program, *state));
  }
  return exit_ok;
}

}  // namespace nudge_cli
