// nudge replay: an event log through the rules (nudge::replay), optionally from and to a snapshot
// (docs/snapshot.md); the due actions as CSV, the summary and --stats tables on stderr.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include <nudge/engine.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/memory_store.hpp>

#include "commands.hpp"
#include "common.hpp"

namespace nudge_cli {
namespace {

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

// The "dropped" and "deferred" columns of both tables: no consent + capped + off hours; each
// postponement by a cap or the hours.
std::uint64_t dropped(const nudge::delivery_counts& d) {
  return d.no_consent + d.capped + d.off_hours;
}
std::uint64_t deferred(const nudge::delivery_counts& d) {
  return d.deferred_cap + d.deferred_hours;
}

}  // namespace

// Per rule; "dropped" and "deferred" are the delivery policy's, as for workflows below (no
// consent + capped + off hours; each postponement by a cap or the hours counts). Outside the
// anonymous namespace: nudge pg stats prints the same table (pg.cpp).
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
               s.suppressed, s.emitted, dropped(s.delivery), deferred(s.delivery),
               time_or_dash(s.first), time_or_dash(s.last));
  }
}

namespace {

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

// `nudge replay` with --load-snapshot / --save-snapshot: nudge::replay on an engine whose store
// the snapshot files fill and read (docs/snapshot.md). With --load-snapshot the contacts come
// from the snapshot; events may create new ones.
nudge::replay_result replay_with_snapshots(std::shared_ptr<const nudge::program> program,
                                           const replay_args& args,
                                           const nudge::replay_options& options) {
  // Thrown away if a batch fails (the snapshot is saved only at the end): no undo log needed.
  nudge::memory_store store{{.undo = false}};
  nudge::engine engine{std::move(program), &store};
  if (!args.load_snapshot.empty()) {
    nudge::load_snapshot(args.load_snapshot, engine);
  }
  auto result = nudge::replay(engine, args.events, options);
  if (!args.save_snapshot.empty()) {
    nudge::save_snapshot(args.save_snapshot, engine, store);
  }
  return result;
}

// The contact states of a finished replay, kept until the process ends (reachable from here, so
// not a leak to LeakSanitizer): the process exits right after the summary, the kernel takes the
// pages back at once, and freeing 100,000 contacts' heap blocks one by one was 4 % of a W1
// medium replay (as compilers skip freeing their trees at exit).
nudge::memory_store* kept_store = nullptr;
nudge::engine* kept_engine = nullptr;

nudge::replay_result replay_and_keep_states(std::shared_ptr<const nudge::program> program,
                                            const replay_args& args,
                                            const nudge::replay_options& options) {
  // As nudge::replay(program, ...): the store is thrown away if a batch fails, no undo log.
  auto store = std::make_unique<nudge::memory_store>(nudge::memory_store_options{.undo = false});
  auto engine = std::make_unique<nudge::engine>(std::move(program), store.get());
  auto result = nudge::replay(*engine, args.events, options);
  kept_store = store.release();
  kept_engine = engine.release();
  return result;
}

}  // namespace

int run_replay(const replay_args& args) {
  nudge::replay_options options;
  if (!parse_until(args.until, options.until)) {
    return exit_usage;
  }
  if (!args.load_snapshot.empty() && !args.contacts.empty()) {
    // Upserting the file's profiles would undo what rules changed (status, tags, owner, ...).
    fmt::print(stderr,
               "--contacts cannot be combined with --load-snapshot: the snapshot holds the "
               "contacts\n");
    return exit_usage;
  }
  if (!check_error_options(args.on_error, args.rejects)) {
    return exit_usage;
  }
  options.on_error =
      args.on_error == "skip" ? nudge::error_policy::skip : nudge::error_policy::stop;
  options.rejects_path = args.rejects;
  options.batch_events = args.batch;
  options.strict_columns = args.strict;
  options.contacts_path = args.contacts;
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
  const auto format =
      args.time_format == "epoch" ? nudge::time_format::epoch : nudge::time_format::iso;
  // The actions are written batch by batch as the replay produces them, so memory stays bounded
  // by the contacts. A file is written under a temporary name and renamed at the end: a replay
  // that fails leaves no partial file (and an older file of that name untouched).
  const bool to_stdout = args.out.empty() || args.out == "-";
  const std::string part = to_stdout ? std::string{} : args.out + ".part";
  std::ofstream file;
  if (to_stdout) {
    std::ios::sync_with_stdio(false);
  } else {
    file.open(part, std::ios::binary | std::ios::trunc);
    if (!file) {
      fmt::print(stderr, "{}: cannot write the actions\n", part);
      return exit_input;
    }
  }
  std::ostream& out = to_stdout ? std::cout : file;
  nudge::replay_result result;
  try {
    nudge::actions_csv_writer writer{out, format};
    options.on_actions = [&](std::span<const nudge::due_action> actions) {
      writer.write(actions);
      if (!out) {
        throw std::runtime_error(to_stdout
                                     ? std::string{"cannot write the actions to standard output"}
                                     : fmt::format("{}: cannot write the actions", part));
      }
    };
    if (args.save_snapshot.empty() && args.load_snapshot.empty()) {
      result = replay_and_keep_states(program, args, options);
    } else {
      result = replay_with_snapshots(program, args, options);
    }
    out.flush();
    if (!to_stdout) {
      file.close();
    }
    if (!out) {
      throw std::runtime_error(to_stdout
                                   ? std::string{"cannot write the actions to standard output"}
                                   : fmt::format("{}: cannot write the actions", part));
    }
    if (!to_stdout) {
      std::filesystem::rename(part, args.out);
    }
  } catch (const std::exception& e) {
    bar.finish();
    if (!to_stdout) {
      file.close();
      std::error_code ignored;
      std::filesystem::remove(part, ignored);
    }
    fmt::print(stderr, "{}\n", e.what());
    return exit_input;
  }
  bar.finish();

  if (args.stats) {
    print_stats(result.stats);
    print_workflow_stats(result.workflow_stats);
  }
  fmt::print(stderr, "{} events read, {} rejected, {} actions (until {})\n", result.events_read,
             result.rejected, result.action_count, nudge::format_time(result.until));
  print_pending(result, options.until.has_value());
  return exit_ok;
}

}  // namespace nudge_cli
