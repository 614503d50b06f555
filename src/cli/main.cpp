// nudge: the command-line tool. `nudge check` validates rule files; `nudge replay` backtests an
// event log through them. Exit codes: 0 ok, 1 bad input or rules, 2 usage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/explain.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/read_events.hpp>
#include <nudge/replay.hpp>
#include <nudge/snapshot.hpp>

#include "db_check.hpp"
#include "errors.hpp"
#include "live.hpp"
#include "sort.hpp"

namespace {

constexpr int exit_ok = 0;
constexpr int exit_input = 1;
constexpr int exit_usage = 2;

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

int run_check(const std::string& rules_path) {
  auto program = load_or_report(rules_path);
  if (!program) {
    return exit_input;
  }
  fmt::print("ok: {} rules\n", program->rule_count());
  return exit_ok;
}

// A one-line progress bar on stderr, redrawn at most ten times a second, shown only once a
// replay has run for half a second (short ones stay quiet).
class progress_bar {
 public:
  using clock = std::chrono::steady_clock;

  void update(const nudge::replay_progress& p) {
    const auto now = clock::now();
    if (now - start_ < std::chrono::milliseconds(500) ||
        (shown_ && now - drawn_ < std::chrono::milliseconds(100) && !p.evaluating)) {
      return;
    }
    drawn_ = now;
    shown_ = true;
    constexpr int width = 30;
    const double fraction =
        p.bytes_total == 0 ? 1.0
                           : static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total);
    const int filled = static_cast<int>(fraction * width);
    fmt::print(stderr, "\r[{:=<{}}{:<{}}] {:3.0f}% {} events{}", "", filled, "", width - filled,
               fraction * 100, p.events_read, p.evaluating ? ", evaluating..." : "");
    std::fflush(stderr);
  }
  void finish() {
    if (shown_) {
      fmt::print(stderr, "\r{:<80}\r", "");
    }
  }

 private:
  clock::time_point start_ = clock::now();
  clock::time_point drawn_{};
  bool shown_ = false;
};

std::string time_or_dash(const std::optional<nudge::time_point>& t) {
  return t ? nudge::format_time(*t) : "-";
}

// Per rule; "dropped" and "deferred" are the delivery policy's, as for workflows below (no
// consent + capped + off hours; each postponement by a cap or the hours counts).
void print_stats(const std::vector<nudge::rule_stats>& stats) {
  std::size_t width = 4;
  for (const auto& s : stats) {
    width = std::max(width, s.rule.size());
  }
  const auto row = "{:<{}} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  {:<20}  {}\n";
  fmt::print(stderr, fmt::runtime(row), "rule", width, "triggered", "passed", "failed",
             "suppressed", "emitted", "dropped", "deferred", "first", "last");
  for (const auto& s : stats) {
    fmt::print(stderr, fmt::runtime(row), s.rule, width, s.triggered, s.passed, s.failed,
               s.suppressed, s.emitted, s.no_consent + s.capped + s.off_hours,
               s.deferred_cap + s.deferred_hours, time_or_dash(s.first), time_or_dash(s.last));
  }
}

// Per workflow, then per step: "entered" is runs started (reached, for a step); "inside" is runs
// inside now (waiting at the step, for a step); "dropped" and "deferred" are the delivery
// policy's (no consent, caps, hours; each postponement counts).
void print_workflow_stats(const std::vector<nudge::workflow_stats>& stats) {
  if (stats.empty()) {
    return;
  }
  std::size_t width = 13;
  for (const auto& w : stats) {
    for (const auto& st : w.steps) {
      width = std::max(width, w.workflow.size() + 1 + st.step.size());
    }
  }
  const auto row = "{:<{}} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<20}  {}\n";
  fmt::print(stderr, fmt::runtime(row), "workflow/step", width, "entered", "completed", "exited",
             "sent", "dropped", "deferred", "opened", "clicked", "inside", "first", "last");
  auto dropped = [](const nudge::delivery_counts& d) {
    return d.no_consent + d.capped + d.off_hours;
  };
  auto deferred = [](const nudge::delivery_counts& d) { return d.deferred_cap + d.deferred_hours; };
  for (const auto& w : stats) {
    fmt::print(stderr, fmt::runtime(row), w.workflow, width, w.entered, w.completed, w.exited,
               w.sent, dropped(w.delivery), deferred(w.delivery), w.opened, w.clicked, w.active,
               time_or_dash(w.first), time_or_dash(w.last));
    for (const auto& st : w.steps) {
      fmt::print(stderr, fmt::runtime(row), w.workflow + "/" + st.step, width, st.reached, "-", "-",
                 st.sent, dropped(st.delivery), deferred(st.delivery), st.opened, st.clicked,
                 st.waiting, time_or_dash(st.first), time_or_dash(st.last));
    }
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

struct replay_args {
  std::string rules, contacts, events, until, out, rejects;
  std::string time_format = "iso";
  std::string on_error = "stop";
  std::size_t batch = 0;
  bool stats = false;
  bool strict = false;
  std::string save_snapshot, load_snapshot;
};

// `nudge replay` with --load-snapshot / --save-snapshot: nudge::replay on an engine whose store
// the snapshot files fill and read (docs/snapshot.md). With --load-snapshot the contacts come
// from the snapshot; events may create new ones.
nudge::replay_result replay_with_snapshots(std::shared_ptr<const nudge::program> program,
                                           const replay_args& args,
                                           const nudge::replay_options& options) {
  nudge::memory_store store;
  nudge::engine engine{std::move(program), &store};
  if (!args.load_snapshot.empty()) {
    nudge::load_snapshot(args.load_snapshot, engine);
  }
  auto result = nudge::replay(engine, args.contacts, args.events, options);
  if (!args.save_snapshot.empty()) {
    nudge::save_snapshot(args.save_snapshot, engine, store);
  }
  return result;
}

int run_replay(const replay_args& args) {
  nudge::replay_options options;
  if (!nudge_cli::parse_until(args.until, options.until)) {
    return exit_usage;
  }
  if (!args.load_snapshot.empty() && !args.contacts.empty()) {
    // Upserting the file's profiles would undo what rules changed (status, tags, owner, ...).
    fmt::print(stderr,
               "--contacts cannot be combined with --load-snapshot: the snapshot holds the "
               "contacts\n");
    return exit_usage;
  }
  if (!nudge_cli::check_error_options(args.on_error, args.rejects)) {
    return exit_usage;
  }
  options.on_error =
      args.on_error == "skip" ? nudge::error_policy::skip : nudge::error_policy::stop;
  options.rejects_path = args.rejects;
  options.batch_events = args.batch;
  options.strict_columns = args.strict;
  if (options.on_error == nudge::error_policy::skip && args.rejects.empty()) {
    // Nothing is dropped silently: without a rejects file each refused line goes to stderr.
    options.on_reject = [](const nudge::input_problem& p) {
      fmt::print(stderr, "rejected: {}\n", p.to_string());
    };
  }
  progress_bar bar;
  if (::isatty(STDERR_FILENO) != 0) {
    options.on_progress = [&bar](const nudge::replay_progress& p) { bar.update(p); };
  }

  auto program = load_or_report(args.rules);
  if (!program) {
    return exit_input;
  }
  nudge::replay_result result;
  try {
    if (args.save_snapshot.empty() && args.load_snapshot.empty()) {
      result = nudge::replay(program, args.contacts, args.events, options);
    } else {
      result = replay_with_snapshots(program, args, options);
    }
  } catch (const std::exception& e) {
    bar.finish();
    fmt::print(stderr, "{}\n", e.what());
    return exit_input;
  }
  bar.finish();

  const auto format =
      args.time_format == "epoch" ? nudge::time_format::epoch : nudge::time_format::iso;
  if (args.out.empty() || args.out == "-") {
    std::ios::sync_with_stdio(false);
    nudge::write_actions_csv(std::cout, result.actions, format);
    std::cout.flush();
    if (!std::cout) {
      fmt::print(stderr, "cannot write the actions to standard output\n");
      return exit_input;
    }
  } else {
    std::ofstream out{args.out, std::ios::binary | std::ios::trunc};
    if (out) {
      nudge::write_actions_csv(out, result.actions, format);
      out.close();
    }
    if (!out) {
      fmt::print(stderr, "{}: cannot write the actions\n", args.out);
      return exit_input;
    }
  }
  if (args.stats) {
    print_stats(result.stats);
    print_workflow_stats(result.workflow_stats);
  }
  fmt::print(stderr, "{} events read, {} rejected, {} actions (until {})\n", result.events_read,
             result.rejected, result.actions.size(), nudge::format_time(result.until));
  print_pending(result, options.until.has_value());
  return exit_ok;
}

struct explain_args {
  std::string contact;
  std::string rules;
  std::string contacts;
  std::string events;
  std::string until;
  std::uint32_t timeline_size = 50;
  bool json = false;
};

// Replays with a timeline kept for every contact, then prints the one contact's timeline.
int run_explain(const explain_args& args) {
  nudge::replay_options options;
  if (!nudge_cli::parse_until(args.until, options.until)) {
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
    program = nudge::program::compile(std::move(rules));
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
    print_pending(nudge::replay(program, args.contacts, args.events, options),
                  options.until.has_value());
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

  std::string check_path;
  auto* check = app.add_subcommand("check", "Validate a rule file; print every problem");
  check->add_option("RULES", check_path, "Rule file (JSON)")->required();

  replay_args args;
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
                     "Fire timers up to this time (ISO-8601 or epoch seconds). Default: the "
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
                     "Events per engine batch (0: one batch; the output is the same)");
  replay->add_option("--save-snapshot", args.save_snapshot,
                     "At the end, save the engine state here (docs/snapshot.md)");
  replay->add_option("--load-snapshot", args.load_snapshot,
                     "Start from this snapshot (same rules) instead of an empty state");

  nudge_cli::run_args run_args;
  auto* run = app.add_subcommand(
      "run", "Live mode: process the events a database has not seen yet (docs/live.md)");
  run->add_option("--db", run_args.db, "State database (SQLite; created if missing)")->required();
  run->add_option("--rules", run_args.rules, "Rule file (JSON)")->required();
  run->add_option("--events", run_args.events, "Events (.csv or .jsonl), appended over time")
      ->required();
  run->add_option("--contacts", run_args.contacts, "Contacts, loaded on the first run");
  run->add_option("--until", run_args.until,
                  "Process events up to this time and fire timers due by then (default: the "
                  "last event's time)");
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

  explain_args explain_args;
  auto* explain = app.add_subcommand(
      "explain",
      "Replay an event log and print one contact's timeline: what the rules did, and why");
  explain->add_option("--contact", explain_args.contact, "The contact's id")->required();
  explain->add_option("--rules", explain_args.rules, "Rule file (JSON)")->required();
  explain->add_option("--contacts", explain_args.contacts, "Contacts (.csv or .jsonl)");
  explain->add_option("--events", explain_args.events, "Events (.csv or .jsonl), sorted by time")
      ->required();
  explain->add_option("--until", explain_args.until,
                      "Fire timers up to this time (default: as replay)");
  explain
      ->add_option("--timeline-size", explain_args.timeline_size,
                   "Timeline entries kept per contact (default 50; the rule file's is ignored)")
      ->check(CLI::Range(1, 100000));
  explain->add_flag("--json", explain_args.json, "Print the timeline as one JSON object");
  std::string outbox_db;
  auto* outbox = app.add_subcommand("outbox", "List the undelivered actions of a database as CSV");
  outbox->add_option("--db", outbox_db, "State database written by nudge run")->required();
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
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_usage;
  }
  try {
    if (check->parsed()) {
      return run_check(check_path);
    }
    if (run->parsed()) {
      return nudge_cli::run_live(run_args);
    }
    if (db_check->parsed()) {
      return nudge_cli::run_db_check(db_check_path);
    }
    if (sort_args.command->parsed()) {
      return nudge_cli::run_sort(sort_args);
    }
    if (outbox->parsed()) {
      return nudge_cli::run_outbox(outbox_db);
    }
    if (explain->parsed()) {
      return run_explain(explain_args);
    }
    return run_replay(args);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", nudge_cli::describe_error(e));
    return exit_input;
  }
}
