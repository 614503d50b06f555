// nudge: the command-line tool. `nudge check` validates rule files; `nudge replay` backtests an
// event log through them. Exit codes: 0 ok, 1 bad input or rules, 2 usage. This file wires the
// options and dispatches; each subcommand lives in its own file (commands.hpp).
#include <cstdint>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/explain.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/version.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "db_check.hpp"
#include "deliver.hpp"
#include "errors.hpp"
#include "follow.hpp"
#include "log.hpp"
#include "sort.hpp"

namespace {

#ifdef NUDGE_HAVE_PG
constexpr const char* NUDGE_PG_OPTION = " (or --pg URL)";
#else
constexpr const char* NUDGE_PG_OPTION = "";
#endif

using nudge_cli::exit_input;
using nudge_cli::exit_usage;

// --on-error and --rejects, the same for nudge replay and nudge run.
void add_error_options(CLI::App& command, std::string& on_error, std::string& rejects) {
  command
      .add_option("--on-error", on_error,
                  "A bad input line: stop (default) or skip (record it and go on)")
      ->check(CLI::IsMember({"stop", "skip"}));
  command.add_option("--rejects", rejects,
                     "With --on-error skip: write refused lines here (nudge run appends)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nudge: marketing-automation rules — validate rule files, replay event logs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string{"nudge "} + NUDGE_VERSION_STRING,
                       "Print the version (nudge/version.hpp) and exit");

  std::string check_path;
  auto* check = app.add_subcommand("check", "Validate a rule file; print every problem");
  check->add_option("RULES", check_path, "Rule file (JSON)")->required();

  nudge_cli::replay_args args;
  auto* replay = app.add_subcommand(
      "replay", "Replay an event log through the rules and print the due actions as CSV");
  replay->add_option("--rules", args.rules, "Rule file (JSON)")->required();
  replay->add_option("--contacts", args.contacts, "Contacts (.csv or .jsonl)");
  replay
      ->add_option("--events", args.events,
                   "Events (.csv or .jsonl, optionally .gz; - for standard input), sorted by time")
      ->required();
  replay->add_flag("--strict", args.strict,
                   "Refuse CSV event columns other than ts, contact, type, key, value (by default "
                   "they become props)");
  replay->add_option("--until", args.until,
                     "Fire timers up to this time (ISO-8601, epoch seconds, or now: the wall "
                     "clock at the start). Default: the "
                     "last event's time plus the rules' longest delay (a rule's delay plus its "
                     "longest action delay; a workflow's waits and timeouts summed, a "
                     "time-of-day wait counted as 7 days), then on to the latest pending timer "
                     "(delayed checks and actions, messages deferred by quiet hours, send "
                     "windows or caps, workflow waits, segment window edges) until none is "
                     "left, at most 1000 times; yearly dates and score decay do not extend it. "
                     "The timers still pending at the end are reported on standard error");
  replay->add_option("--out", args.out, "Write the actions here (default: standard output)");
  replay->add_option("--time-format", args.time_format, "Times in the output: iso or epoch")
      ->check(CLI::IsMember({"iso", "epoch"}));
  replay->add_flag("--stats", args.stats,
                   "Print per-rule and per-workflow-step tables on standard error at the end "
                   "(dropped: by the delivery policy for no consent, a cap or the hours; "
                   "deferred: postponements by a cap or the hours)");
  add_error_options(*replay, args.on_error, args.rejects);
  replay->add_option("--batch", args.batch,
                     "Events per engine batch (default 16384; 0: one batch, memory then grows with "
                     "the log; the output is the same)");
  replay->add_option("--save-snapshot", args.save_snapshot,
                     "At the end, save the engine state here (docs/snapshot.md)");
  replay->add_option("--load-snapshot", args.load_snapshot,
                     "Start from this snapshot (same rules) instead of an empty state");

  nudge_cli::run_args run_args;
  auto* run = app.add_subcommand(
      "run", "Live mode: process the events a database has not seen yet (docs/live.md)");
  run->add_option("--db", run_args.db, "State database (SQLite; created if missing)");
#ifdef NUDGE_HAVE_PG
  run->add_option("--pg", run_args.pg,
                  "Instead of --db: a PostgreSQL database (libpq URL) shared by many workers, "
                  "made by nudge pg init (docs/live.md, \"Many processes: PostgreSQL\")");
  run->add_option("--worker-id", run_args.worker_id,
                  "With --pg: this worker's name in the lease table (default: host:pid)");
  run->add_option("--lease", run_args.lease,
                  "With --pg: how long a partition lease lasts unrenewed (default 10s)");
#endif
  run->add_option("--rules", run_args.rules, "Rule file (JSON)")->required();
  run->add_option("--events", run_args.events,
                  "Events (.csv or .jsonl), appended over time; with --follow, - reads standard "
                  "input (spooled to STATE.db.stdin.csv)");
#ifdef NUDGE_HAVE_PG
  run->add_flag("--events-table", run_args.events_table,
                "With --pg, instead of --events: the rows hosts inserted into the database's "
                "nudge_events table (ts, contact, type, key, value), in seq order");
#endif
  run->add_option("--contacts", run_args.contacts, "Contacts, loaded on the first run");
  run->add_option("--until", run_args.until,
                  "Process events up to this time and fire timers due by then (default: the "
                  "last event's time; now: the wall clock at the start)");
  run->add_option("--out", run_args.out,
                  "Append delivered actions here as CSV lines without a header, columns ts, "
                  "contact, rule (workflow/step for a workflow's action), action, arg, "
                  "idempotency_key (default: standard output)");
  run->add_option("--time-format", run_args.time_format,
                  "Times in the output: epoch (default) or iso")
      ->check(CLI::IsMember({"iso", "epoch"}));
  run->add_option("--batch", run_args.batch, "Events per transaction (default 1000)");
  run->add_option("--sync", run_args.sync,
                  "Durability: off, normal (default) or full; SQLite's synchronous setting, and "
                  "whether --out and --rejects are fsynced (docs/live.md: what each survives)")
      ->check(CLI::IsMember({"off", "normal", "full"}));
  add_error_options(*run, run_args.on_error, run_args.rejects);
  run->add_flag("--from-start", run_args.from_start,
                "If the events file is not the one consumed so far (replaced, rotated or "
                "rewritten), read it from its first line instead of refusing it");
  run->add_option("--max-pages", run_args.max_pages,
                  "Cap the database at this many pages (a quota; past it a batch fails as on a "
                  "full disk and commits nothing; default: no cap)");
  run->add_option("--metrics-file", run_args.metrics_file,
                  "Write Prometheus metrics (text format 0.0.4) to this file after each batch "
                  "(to FILE.tmp, renamed over FILE; docs/live.md lists them)");
  run->add_option("--metrics", run_args.metrics,
                  "Serve GET /metrics on this address while the run lasts: HOST:PORT, :PORT or "
                  "PORT (host 127.0.0.1 by default; port 0 picks a free one, named on stderr)");
  run->add_option("--log-format", run_args.log_format,
                  "Standard error: plain (default: messages only), text (each line with a UTC "
                  "timestamp and a level, and one info line per batch) or json (the same as JSON "
                  "lines with ts, level, msg and fields)")
      ->check(CLI::IsMember({"plain", "text", "json"}));
  run->add_option("--log-level", run_args.log_level,
                  "Lowest level logged: info (default), warn (refused lines, notes) or error")
      ->check(CLI::IsMember({"info", "warn", "error"}));
  nudge_cli::add_follow_options(*run, run_args);

  nudge_cli::diff_args diff_args;
  auto* diff = app.add_subcommand(
      "diff",
      "Replay one event log through two versions of a rule file and report the actions added "
      "and removed, per rule and workflow step, per day, with a sample of contacts");
  diff->add_option("--rules", diff_args.rules,
                   "Rule file (JSON), given twice: --rules OLD.json --rules NEW.json")
      ->required();
  diff->add_option("--contacts", diff_args.contacts, "Contacts (.csv or .jsonl)");
  diff->add_option("--events", diff_args.events,
                   "Events (.csv or .jsonl, optionally .gz), sorted by time")
      ->required();
  diff->add_option("--until", diff_args.until,
                   "Fire timers up to this time (default: each replay's default end, as "
                   "nudge replay)");
  diff->add_option("--time-format", diff_args.time_format,
                   "Times in the rows shown and written: iso (default) or epoch")
      ->check(CLI::IsMember({"iso", "epoch"}));
  diff->add_flag("--strict", diff_args.strict,
                 "Refuse CSV event columns other than ts, contact, type, key, value");
  diff->add_option("--out", diff_args.out,
                   "Write DIR/added.csv, DIR/removed.csv (replay's columns and order) and "
                   "DIR/summary.csv (rule,added,removed,contacts)");

  nudge_cli::graph_args graph_args;
  auto* graph = app.add_subcommand(
      "graph",
      "Draw the workflows of a rule file (steps, waits, branches, splits, goals, exits) "
      "as a Mermaid or Graphviz DOT diagram");
  graph->add_option("RULES", graph_args.rules, "Rule file (JSON)")->required();
  graph->add_option("--workflow", graph_args.workflow, "Only this workflow (default: all)");
  graph->add_option("--format", graph_args.format, "mermaid or dot")
      ->required()
      ->check(CLI::IsMember({"mermaid", "dot"}));
  graph->add_option("--stats", graph_args.stats,
                    "Show step counts from this file: the standard error of nudge replay --stats "
                    "(its workflow/step table)");

  nudge_cli::explain_args explain_args;
  auto* explain = app.add_subcommand(
      "explain",
      "Replay an event log (or read a live database: --db) and print one contact's timeline: "
      "what the rules did, and why");
  explain->add_option("--contact", explain_args.contact, "The contact's id")->required();
  explain->add_option("--rules", explain_args.rules, "Rule file (JSON)");
  explain->add_option("--contacts", explain_args.contacts, "Contacts (.csv or .jsonl)");
  explain->add_option("--events", explain_args.events, "Events (.csv or .jsonl), sorted by time");
  explain->add_option("--db", explain_args.db,
                      "Read the contact from this live database (nudge run's) instead of "
                      "replaying: its timeline (as long as the stored rules' \"timeline\" "
                      "keeps), pending timers and undelivered actions; no --rules, --events, "
                      "--contacts, --until or --timeline-size");
  explain->add_option("--until", explain_args.until,
                      "Fire timers up to this time (now: the wall clock; default: as replay)");
  explain
      ->add_option("--timeline-size", explain_args.timeline_size,
                   "Timeline entries kept per contact (default 50; the rule file's is ignored)")
      ->check(CLI::Range(1, 100000));
  explain->add_flag("--json", explain_args.json, "Print the timeline as one JSON object");
  std::string outbox_db;
  bool outbox_dead = false;
  auto* outbox = app.add_subcommand("outbox", "List the undelivered actions of a database as CSV");
  outbox->add_option("--db", outbox_db, "State database written by nudge run");
#ifdef NUDGE_HAVE_PG
  std::string outbox_pg;
  std::size_t outbox_claim = 0;
  outbox->add_option("--pg", outbox_pg,
                     "Instead of --db: claim the undelivered actions of a PostgreSQL database "
                     "(SKIP LOCKED), print them and mark them delivered");
  outbox->add_option("--claim", outbox_claim, "With --pg: claim at most N actions (default: all)");
  std::string pg_url, pg_rules;
  std::uint32_t pg_partitions = 64;
  auto* pg = app.add_subcommand("pg", "PostgreSQL databases for nudge run --pg (docs/live.md)");
  pg->require_subcommand(1);
  auto* pg_init = pg->add_subcommand("init", "Create (or migrate) the schema");
  pg_init->add_option("URL", pg_url, "libpq URL, e.g. postgresql:///shop")->required();
  pg_init->add_option("--partitions", pg_partitions,
                      "Partitions the contacts hash into (fixed at creation; default 64)");
  auto* pg_stats = pg->add_subcommand(
      "stats", "Per-rule statistics summed over the partitions (as nudge replay --stats)");
  pg_stats->add_option("URL", pg_url, "libpq URL")->required();
  pg_stats->add_option("--rules", pg_rules, "The rule file the database runs")->required();
#endif
  outbox->add_flag("--dead", outbox_dead,
                   "List the dead letters instead: the actions nudge deliver gave up on");
  nudge_cli::deliver_args deliver_args;
  auto* deliver = nudge_cli::add_deliver_command(app, deliver_args);
  nudge_cli::sort_args sort_args;
  nudge_cli::add_sort_command(app, sort_args);

  std::string db_check_path;
  auto* db = app.add_subcommand("db", "Live databases (docs/live.md)");
  db->require_subcommand(1);
  auto* db_check = db->add_subcommand(
      "check", "Verify every record of a database written by nudge run; exit 1 on damage");
  db_check->add_option("FILE", db_check_path, "State database")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  try {
    if (check->parsed()) {
      return nudge_cli::run_check(check_path);
    }
    if (run->parsed()) {
      if (run_args.events_table && run_args.pg.empty()) {
        fmt::print(stderr, "--events-table needs --pg\n");
        return exit_usage;
      }
      if (run_args.events.empty() && !run_args.events_table) {
        fmt::print(stderr, "--events is required\n");
        return exit_usage;
      }
#ifdef NUDGE_HAVE_PG
      if (!run_args.pg.empty()) {
        return nudge_cli::run_live_pg(run_args);
      }
#endif
      if (run_args.db.empty()) {
        fmt::print(stderr, "--db is required{}\n", NUDGE_PG_OPTION);
        return exit_usage;
      }
      return nudge_cli::run_live(run_args);
    }
#ifdef NUDGE_HAVE_PG
    if (pg_init->parsed()) {
      return nudge_cli::run_pg_init(pg_url, pg_partitions);
    }
    if (pg_stats->parsed()) {
      return nudge_cli::run_pg_stats(pg_url, pg_rules);
    }
    if (outbox->parsed() && !outbox_pg.empty()) {
      return nudge_cli::run_outbox_pg(outbox_pg, outbox_claim);
    }
#endif
    if (outbox->parsed() && outbox_db.empty()) {
      fmt::print(stderr, "--db is required{}\n", NUDGE_PG_OPTION);
      return exit_usage;
    }
    if (db_check->parsed()) {
      return nudge_cli::run_db_check(db_check_path);
    }
    if (sort_args.command->parsed()) {
      return nudge_cli::run_sort(sort_args);
    }
    if (outbox->parsed()) {
      return outbox_dead ? nudge_cli::run_outbox_dead(outbox_db) : nudge_cli::run_outbox(outbox_db);
    }
    if (deliver->parsed()) {
      return nudge_cli::run_deliver(deliver_args);
    }
    if (graph->parsed()) {
      return nudge_cli::run_graph(graph_args);
    }
    if (diff->parsed()) {
      return nudge_cli::run_diff(diff_args);
    }
    if (explain->parsed()) {
      // Either a replay (--rules and --events) or a live database (--db), not both.
      const bool replay_options = !explain_args.rules.empty() || !explain_args.events.empty() ||
                                  !explain_args.contacts.empty() || !explain_args.until.empty() ||
                                  explain->count("--timeline-size") > 0;
      if (!explain_args.db.empty()) {
        if (replay_options) {
          fmt::print(stderr,
                     "--db reads the rules, timeline and state stored in the database: it takes "
                     "no --rules, --events, --contacts, --until or --timeline-size\n");
          return exit_usage;
        }
        return nudge_cli::run_explain_db(explain_args);
      }
      if (explain_args.rules.empty() || explain_args.events.empty()) {
        fmt::print(stderr, "nudge explain needs --rules and --events (a replay), or --db\n");
        return exit_usage;
      }
      return nudge_cli::run_explain(explain_args);
    }
    return nudge_cli::run_replay(args);
  } catch (const std::exception& e) {
    nudge_cli::log().error(nudge_cli::describe_error(e));
    return exit_input;
  }
}
