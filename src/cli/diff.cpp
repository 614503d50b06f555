// nudge diff --rules OLD --rules NEW --events E: the same history replayed through two versions of
// a rule file (nudge::replay, twice), and what changes: actions added and removed, per rule and
// workflow step, per UTC day, and a sample of the contacts affected.
//
// The definition, shared with Python's nudge.diff: an action is its full output row (ts, contact,
// rule, action, arg: the columns nudge replay writes, a workflow step's rule as "workflow/step");
// the two outputs are compared as multisets. A row in NEW's output and not in OLD's is "added",
// in OLD's and not in NEW's "removed"; a contact is "affected" if it has any added or removed row.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/replay.hpp>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {
namespace {

constexpr std::size_t sample_size = 5;

// One output row and what the report groups it by.
struct row {
  std::string line;  // the CSV line as nudge replay writes it, without '\n'
  std::string contact;
  std::string rule;      // the rule column as written ("workflow/step" for a step)
  std::int64_t day = 0;  // UTC days since the epoch of the action's ts
};

struct replayed {
  std::vector<row> rows;  // in replay output order
  nudge::replay_result result;
};

// Replays through `program` and keeps every action as its output row.
replayed replay_rows(std::shared_ptr<const nudge::program> program, const diff_args& args,
                     nudge::replay_options options) {
  replayed out;
  std::ostringstream text;
  const auto format =
      args.time_format == "epoch" ? nudge::time_format::epoch : nudge::time_format::iso;
  nudge::actions_csv_writer writer{text, format};
  options.on_actions = [&](std::span<const nudge::due_action> actions) {
    for (const auto& a : actions) {
      text.str({});
      writer.write({&a, 1});
      std::string line = text.str();
      line.pop_back();  // '\n'
      const auto seconds = nudge::to_epoch(a.ts);
      out.rows.push_back(
          {std::move(line), a.contact,
           a.from_workflow() ? fmt::format("{}/{}", a.rule, a.step) : std::string{a.rule},
           seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400});
    }
  };
  out.result = nudge::replay(std::move(program), args.events, options);
  return out;
}

// The rows of `from` that `other` lacks, as a multiset difference, in `from`'s order.
std::vector<const row*> missing_from(const std::vector<row>& from, const std::vector<row>& other) {
  std::unordered_map<std::string_view, std::size_t> count;
  for (const auto& r : other) {
    ++count[r.line];
  }
  std::vector<const row*> out;
  for (const auto& r : from) {
    auto it = count.find(r.line);
    if (it != count.end() && it->second > 0) {
      --it->second;
    } else {
      out.push_back(&r);
    }
  }
  return out;
}

std::string day_text(std::int64_t day) {
  return nudge::format_time(nudge::from_epoch(day * 86400)).substr(0, 10);
}

struct tally {
  std::size_t added = 0, removed = 0;
  std::set<std::string> contacts;
};

void write_rows(const std::string& path, const std::vector<const row*>& rows) {
  std::ofstream f{path, std::ios::binary | std::ios::trunc};
  f << "ts,contact,rule,action,arg\n";
  for (const auto* r : rows) {
    f << r->line << '\n';
  }
  if (!f.flush()) {
    throw std::runtime_error(fmt::format("{}: cannot write", path));
  }
}

}  // namespace

int run_diff(const diff_args& args) {
  if (args.rules.size() != 2) {
    fmt::print(stderr, "--rules must be given twice: --rules OLD.json --rules NEW.json\n");
    return exit_usage;
  }
  nudge::replay_options options;
  if (!parse_until(args.until, options.until)) {
    return exit_usage;
  }
  options.contacts_path = args.contacts;
  options.strict_columns = args.strict;
  auto old_program = load_or_report(args.rules[0]);
  auto new_program = load_or_report(args.rules[1]);
  if (!old_program || !new_program) {
    return exit_input;
  }
  replayed before = replay_rows(old_program, args, options);
  replayed after = replay_rows(new_program, args, options);
  if (!options.until && before.result.until != after.result.until) {
    // Both to the later default end (as Python's nudge.diff): a longer delay in one version
    // must not show as removed actions only because that version's replay stopped earlier.
    options.until = std::max(before.result.until, after.result.until);
    if (before.result.until < *options.until) {
      before = replay_rows(old_program, args, options);
    } else {
      after = replay_rows(new_program, args, options);
    }
  }
  const auto added = missing_from(after.rows, before.rows);
  const auto removed = missing_from(before.rows, after.rows);

  std::map<std::string, tally> by_rule;
  std::map<std::int64_t, std::pair<std::size_t, std::size_t>> by_day;
  std::map<std::string, std::pair<std::vector<const row*>, std::vector<const row*>>> by_contact;
  for (const auto* r : added) {
    auto& t = by_rule[r->rule];
    ++t.added;
    t.contacts.insert(r->contact);
    ++by_day[r->day].first;
    by_contact[r->contact].first.push_back(r);
  }
  for (const auto* r : removed) {
    auto& t = by_rule[r->rule];
    ++t.removed;
    t.contacts.insert(r->contact);
    ++by_day[r->day].second;
    by_contact[r->contact].second.push_back(r);
  }

  if (!args.out.empty()) {
    std::filesystem::create_directories(args.out);
    const auto dir = std::filesystem::path{args.out};
    write_rows((dir / "added.csv").string(), added);
    write_rows((dir / "removed.csv").string(), removed);
    std::ofstream f{dir / "summary.csv", std::ios::binary | std::ios::trunc};
    f << "rule,added,removed,contacts\n";
    for (const auto& [rule, t] : by_rule) {
      std::string field;
      nudge::write_csv_field(std::back_inserter(field), rule);
      f << fmt::format("{},{},{},{}\n", field, t.added, t.removed, t.contacts.size());
    }
    if (!f.flush()) {
      throw std::runtime_error(fmt::format("{}: cannot write", (dir / "summary.csv").string()));
    }
  }

  fmt::print("old: {}: {} actions (until {})\n", args.rules[0], before.rows.size(),
             nudge::format_time(before.result.until));
  fmt::print("new: {}: {} actions (until {})\n", args.rules[1], after.rows.size(),
             nudge::format_time(after.result.until));
  if (added.empty() && removed.empty()) {
    fmt::print("no differences\n");
    return exit_ok;
  }
  fmt::print("{} added, {} removed, {} contacts affected\n", added.size(), removed.size(),
             by_contact.size());

  std::size_t width = 4;
  for (const auto& [rule, t] : by_rule) {
    width = std::max(width, rule.size());
  }
  fmt::print("\n{:<{}}  {:>8}  {:>8}  {:>8}\n", "rule", width, "added", "removed", "contacts");
  for (const auto& [rule, t] : by_rule) {
    fmt::print("{:<{}}  {:>8}  {:>8}  {:>8}\n", rule, width, t.added, t.removed, t.contacts.size());
  }
  fmt::print("\n{:<10}  {:>8}  {:>8}\n", "day (UTC)", "added", "removed");
  for (const auto& [day, n] : by_day) {
    fmt::print("{:<10}  {:>8}  {:>8}\n", day_text(day), n.first, n.second);
  }

  // A sample of each kind of change: the first contacts by id, with their rows.
  struct kind {
    const char* name;
    bool wants_added, wants_removed;
  };
  for (const kind k : {kind{"added and removed", true, true}, kind{"only added", true, false},
                       kind{"only removed", false, true}}) {
    std::vector<const std::string*> ids;
    for (const auto& [contact, rows] : by_contact) {
      if (!rows.first.empty() == k.wants_added && !rows.second.empty() == k.wants_removed) {
        ids.push_back(&contact);
      }
    }
    if (ids.empty()) {
      continue;
    }
    fmt::print("\ncontacts with actions {}: {}{}\n", k.name, ids.size(),
               ids.size() > sample_size ? fmt::format(" (the first {} by id)", sample_size)
                                        : std::string{});
    for (std::size_t i = 0; i < std::min(ids.size(), sample_size); ++i) {
      const auto& rows = by_contact[*ids[i]];
      fmt::print("  {}\n", *ids[i]);
      for (const auto* r : rows.second) {
        fmt::print("    - {}\n", r->line);
      }
      for (const auto* r : rows.first) {
        fmt::print("    + {}\n", r->line);
      }
    }
  }
  return exit_ok;
}

}  // namespace nudge_cli
