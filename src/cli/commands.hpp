// The nudge CLI's subcommands, one file each (check.cpp, replay.cpp, diff.cpp, graph.cpp,
// explain.cpp, run.cpp, outbox.cpp, sort.cpp, db_check.cpp); main.cpp wires their options and
// dispatches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nudge/io/replay.hpp>

namespace nudge_cli {

/// nudge check RULES: validates a rule file, printing every problem.
int run_check(const std::string& rules_path);

/// nudge replay's options.
struct replay_args {
  std::string rules, contacts, events, until, out, rejects;
  std::string time_format = "iso";
  std::string on_error = "stop";
  std::size_t batch = nudge::replay_options::default_batch_events;
  bool stats = false;
  bool strict = false;
  std::string save_snapshot, load_snapshot;
};

/// nudge replay: replays an event log through the rules (optionally from and to a snapshot) and
/// prints the due actions as CSV, then the summary (and --stats tables) on stderr.
int run_replay(const replay_args& args);

/// nudge diff's options.
struct diff_args {
  std::vector<std::string> rules;  ///< --rules OLD --rules NEW
  std::string contacts, events, until, out;
  std::string time_format = "iso";
  bool strict = false;
};

/// nudge diff: replays the events through the OLD and the NEW rule file and reports the actions
/// added and removed (each action is its whole output row; the outputs compared as multisets)
/// per rule and workflow step, per UTC day, and a sample of the contacts affected; --out DIR
/// writes added.csv, removed.csv and summary.csv there.
int run_diff(const diff_args& args);

/// nudge graph's options.
struct graph_args {
  std::string rules;
  std::string workflow;  ///< --workflow ID: only this one (default: every workflow)
  std::string format = "mermaid";
  std::string stats;  ///< --stats FILE: what nudge replay --stats printed on standard error
};

/// nudge graph: draws the rule file's workflows (nudge::workflow_graph) as Mermaid or DOT on
/// standard output, with the step counts of a replay when --stats is given.
int run_graph(const graph_args& args);

/// nudge explain's options.
struct explain_args {
  std::string contact;
  std::string rules;
  std::string contacts;
  std::string events;
  std::string until;
  std::uint32_t timeline_size = 50;
  bool json = false;
  std::string db;  ///< --db: read a live database (nudge run's) instead of replaying
};

/// nudge explain: replays with a timeline kept for every contact, then prints the one contact's
/// timeline.
int run_explain(const explain_args& args);

/// nudge explain --db: the contact's timeline, pending timers and undelivered actions as the
/// live database holds them, under the rules stored there (explain_db.cpp).
int run_explain_db(const explain_args& args);

/// nudge run's options.
struct run_args {
  std::string db, rules, contacts, events, until, out;
  std::string sync = "normal";
  std::string time_format = "epoch";  ///< --time-format: epoch (default) or iso
  std::string on_error = "stop";      ///< a refused event: stop, or skip (--rejects, stderr)
  std::string rejects;                ///< with skip: append refused lines here
  std::size_t batch = 1000;
  std::uint32_t max_pages = 0;  ///< sqlite_options::max_pages (0: no cap)
  bool from_start = false;      ///< read the events file from its first line (a new file)
  std::string metrics_file;     ///< --metrics-file: Prometheus text, rewritten after each batch
  std::string metrics;          ///< --metrics ADDR: serve GET /metrics there
  std::string log_format = "plain";  ///< --log-format: plain, text or json (log.hpp)
  std::string log_level = "info";    ///< --log-level: info, warn or error
  bool follow = false;               ///< --follow: wait for new lines, tick on the wall clock
  std::string tick = "10s";          ///< --follow: advance the clock at least this often
  std::string lag = "0s";            ///< --follow: keep the clock this far behind the wall clock
  bool tick_given = false, lag_given = false;
  bool outbox_only = false;   ///< --outbox-only: leave the actions in the outbox (nudge deliver)
  std::string pg;             ///< --pg URL: the PostgreSQL store instead of --db (pg.cpp)
  std::string worker_id;      ///< --worker-id: this worker's name in the lease table
  std::string lease = "10s";  ///< --lease: how long a partition lease lasts unrenewed
  bool events_table = false;  ///< --events-table: with --pg, events from nudge_events
};

/// Processes the events the database has not seen yet, in batches, each committed with the
/// file position it reached; delivers actions by appending them as CSV lines to `out`.
int run_live(const run_args& args);

/// nudge run --pg: one worker of many on a PostgreSQL database (pg.cpp).
int run_live_pg(const run_args& args);
/// nudge pg init URL: creates or migrates the schema with `partitions` partitions.
int run_pg_init(const std::string& url, std::uint32_t partitions);
/// nudge outbox --pg URL: claims, prints and marks delivered up to `claim` actions (0: all).
int run_outbox_pg(const std::string& url, std::size_t claim);
/// nudge pg stats URL --rules R: the per-rule statistics summed over the partitions.
int run_pg_stats(const std::string& url, const std::string& rules);
/// The per-rule table of nudge replay --stats, on standard error (replay.cpp).
void print_stats(const std::vector<nudge::rule_stats>& stats);

/// Prints the undelivered actions of a database as CSV.
int run_outbox(const std::string& db);
/// nudge outbox --dead: prints the dead letters of a database (nudge deliver) as CSV.
int run_outbox_dead(const std::string& db);

}  // namespace nudge_cli
