// nudge db check FILE: every row's checksum, the row counts and SQLite's integrity_check
// (sqlite_store::check, which needs no rules), then the states and the outbox read against the
// rules stored in the database, as `nudge run` would read them.
#include "db_check.hpp"

#include <string_view>

#include <fmt/format.h>

#include <nudge/error.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/sqlite_store.hpp>

namespace nudge_cli {
namespace {

std::string plural(std::size_t n, std::string_view one, std::string_view many) {
  return fmt::format("{} {}", n, n == 1 ? one : many);
}

}  // namespace

int run_db_check(const std::string& path) {
  nudge::sqlite_check_report report;
  try {
    report = nudge::sqlite_store::check(path);
  } catch (const nudge::sqlite_error& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  fmt::print("{}: schema version {}\n", path, report.schema_version);
  fmt::print("  meta: {} checked\n", plural(report.meta, "row", "rows"));
  fmt::print("  checkpoint: {} checked\n", plural(report.checkpoint, "part", "parts"));
  fmt::print("  journal: {} checked\n", plural(report.journal, "row", "rows"));
  fmt::print("  outbox: {} checked ({} undelivered)\n", plural(report.outbox, "row", "rows"),
             plural(report.undelivered, "action", "actions"));
  if (report.schema_version >= 8) {
    fmt::print("  delivery: {} checked, {}\n", plural(report.delivery, "row", "rows"),
               plural(report.dead_letters, "dead letter", "dead letters"));
  }
  if (report.problems.empty()) {
    // Sound rows: now decode them as a run would, against the rules the run stored.
    const std::string prefix = path + ": ";
    try {
      const auto rules = nudge::sqlite_store::read_meta(path, "run.rules");
      if (!rules) {
        fmt::print("  states: not decoded (no rules stored: not written by nudge run)\n");
      } else {
        const auto program = nudge::load_rules(*rules, {.file_name = path + " (stored rules)"});
        nudge::sqlite_store db{path, *program, {.read_only = true}};
        const auto contacts = db.size();
        const auto actions = db.outbox_size();
        fmt::print("  states: {} read against the stored rules, {} in the outbox\n",
                   plural(contacts, "contact", "contacts"), plural(actions, "action", "actions"));
      }
    } catch (const nudge::rule_error& e) {
      report.problems.push_back(fmt::format("the stored rules (run.rules) do not load: {}",
                                            e.diagnostics().front().to_string()));
    } catch (const nudge::sqlite_error& e) {
      std::string_view what = e.what();
      if (what.starts_with(prefix)) {
        what.remove_prefix(prefix.size());
      }
      report.problems.emplace_back(what);
    }
  }
  for (const auto& p : report.problems) {
    fmt::print("  damaged: {}\n", p);
  }
  if (!report.problems.empty()) {
    fmt::print(
        "{}: {} found: the database is damaged; nudge refuses to run on it (restore it "
        "from a backup, or replay the events into a new database)\n",
        path, plural(report.problems.size(), "problem", "problems"));
    return 1;
  }
  fmt::print("{}: ok, no damage found\n", path);
  return 0;
}

}  // namespace nudge_cli
