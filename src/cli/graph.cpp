// nudge graph RULES --format mermaid|dot [--workflow ID] [--stats FILE]: the rule file's
// workflows as a diagram (nudge::workflow_graph), optionally with the step counts of a replay:
// FILE is what `nudge replay --stats` prints on standard error (its workflow/step table).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nudge/io/workflow_graph.hpp>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {
namespace {

std::vector<std::string> split_words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> words;
  for (std::string w; in >> w;) {
    words.push_back(std::move(w));
  }
  return words;
}

bool parse_count(const std::string& text, std::uint64_t& out) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  out = std::stoull(text);
  return true;
}

// The workflow/step table of `nudge replay --stats` (replay.cpp's print_workflow_stats): a header
// line "workflow/step entered completed exited sent dropped deferred opened clicked inside first
// last", then per workflow its row and one "workflow/step" row per step (whose completed and
// exited columns are "-"). The table ends at the first line of another shape.
std::vector<nudge::workflow_stats> read_stats(const std::string& path) {
  std::ifstream in{path};
  if (!in) {
    throw std::runtime_error(fmt::format("{}: cannot read the statistics", path));
  }
  std::vector<nudge::workflow_stats> out;
  std::string line;
  std::size_t number = 0;
  bool in_table = false;
  while (std::getline(in, line)) {
    ++number;
    const auto words = split_words(line);
    if (!in_table) {
      in_table = !words.empty() && words[0] == "workflow/step";
      continue;
    }
    // name (may hold spaces) + 9 counts + first + last.
    if (words.size() < 12) {
      break;
    }
    const std::size_t n = words.size();
    std::string name = words[0];
    for (std::size_t i = 1; i + 11 < n; ++i) {
      name += " " + words[i];
    }
    std::uint64_t c[9] = {};
    const bool is_step = words[n - 10] == "-" && words[n - 9] == "-";
    bool ok = true;
    for (std::size_t i = 0; i < 9; ++i) {
      const auto& w = words[n - 11 + i];
      if (!(is_step && (i == 1 || i == 2)) && !parse_count(w, c[i])) {
        ok = false;
      }
    }
    if (!ok) {
      break;
    }
    if (!is_step) {
      nudge::workflow_stats ws;
      ws.workflow = name;
      ws.entered = c[0];
      ws.completed = c[1];
      ws.exited = c[2];
      ws.sent = c[3];
      ws.opened = c[6];
      ws.clicked = c[7];
      ws.active = static_cast<std::int64_t>(c[8]);
      out.push_back(std::move(ws));
      continue;
    }
    if (out.empty() || !name.starts_with(out.back().workflow + "/")) {
      throw std::runtime_error(fmt::format(
          "{}:{}: step row \"{}\" does not follow its workflow's row", path, number, name));
    }
    nudge::workflow_step_stats st;
    st.step = name.substr(out.back().workflow.size() + 1);
    st.reached = c[0];
    st.sent = c[3];
    st.opened = c[6];
    st.clicked = c[7];
    st.waiting = static_cast<std::int64_t>(c[8]);
    out.back().steps.push_back(std::move(st));
  }
  if (!in_table) {
    throw std::runtime_error(fmt::format(
        "{}: no workflow/step table (--stats reads what nudge replay --stats prints on standard "
        "error: nudge replay ... --stats 2> FILE)",
        path));
  }
  return out;
}

}  // namespace

int run_graph(const graph_args& args) {
  auto program = load_or_report(args.rules);
  if (!program) {
    return exit_input;
  }
  const auto& all = program->rules().workflows;
  std::vector<nudge::workflow> chosen;
  if (args.workflow.empty()) {
    chosen = all;
  } else if (auto i = program->find_workflow(args.workflow)) {
    chosen.push_back(all[*i]);
  } else {
    std::string ids;
    for (const auto& w : all) {
      ids += ids.empty() ? w.id : ", " + w.id;
    }
    fmt::print(stderr, "{}: no workflow \"{}\" ({})\n", args.rules, args.workflow,
               ids.empty() ? std::string{"the file has none"} : "the workflows: " + ids);
    return exit_input;
  }
  if (chosen.empty()) {
    fmt::print(stderr, "{}: no workflows to draw\n", args.rules);
    return exit_input;
  }
  std::vector<nudge::workflow_stats> stats;
  if (!args.stats.empty()) {
    stats = read_stats(args.stats);
  }
  const auto format =
      args.format == "dot" ? nudge::graph_format::dot : nudge::graph_format::mermaid;
  fmt::print("{}", nudge::workflow_graph(chosen, format, stats));
  return exit_ok;
}

}  // namespace nudge_cli
