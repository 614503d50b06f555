// Follow mode: the wall clock, SIGTERM/SIGINT, and nudge run --follow's loop (follow.hpp).
#include "follow.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/stat.h>

#include "stdin_spool.hpp"

namespace nudge_cli {

namespace {

std::atomic<int> stop_signals{0};

extern "C" void on_stop_signal(int sig) {
  if (stop_signals.fetch_add(1) > 0) {
    // A second signal: the operator insists. Default action (the outbox makes it safe).
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

}  // namespace

nudge::time_point wall_now() {
  if (const char* path = std::getenv("NUDGE_CLOCK_FILE"); path != nullptr && *path != '\0') {
    std::ifstream in{path};
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) {
      s.pop_back();
    }
    auto t = nudge::parse_time(s);
    if (!in || !t) {
      throw std::runtime_error(
          fmt::format("NUDGE_CLOCK_FILE {}: cannot read a time from it (\"{}\")", path, s));
    }
    return *t;
  }
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return nudge::from_epoch(std::chrono::duration_cast<std::chrono::seconds>(now).count());
}

bool parse_duration(const std::string& option, const std::string& text,
                    std::chrono::milliseconds& out) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double ms_per = 0;
  if (unit.empty() || unit == "s") {
    ms_per = 1000;
  } else if (unit == "ms") {
    ms_per = 1;
  } else if (unit == "m") {
    ms_per = 60'000;
  } else if (unit == "h") {
    ms_per = 3'600'000;
  } else if (unit == "d") {
    ms_per = 86'400'000;
  }
  if (used == 0 || ms_per == 0 || !(value >= 0) || value * ms_per > 1e12) {
    fmt::print(stderr, "{}: \"{}\" is not a duration (a number with ms, s, m, h or d, e.g. 10s)\n",
               option, text);
    return false;
  }
  out = std::chrono::milliseconds{static_cast<std::int64_t>(value * ms_per)};
  return true;
}

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a sleeping poll() or read() returns at once
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
}

bool stop_requested() noexcept {
  return stop_signals.load() > 0;
}

void sleep_unless_stopped(std::chrono::milliseconds d) {
  // Short naps: the flag is read at least every 50 ms.
  const auto end = std::chrono::steady_clock::now() + d;
  while (!stop_requested()) {
    const auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      return;
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds{50}));
  }
}

int follow_loop(const std::string& events_path, std::chrono::milliseconds tick,
                std::chrono::milliseconds lag, std::chrono::milliseconds poll,
                const std::function<int(nudge::time_point until)>& step,
                const std::function<void()>& between,
                const std::function<bool(std::chrono::milliseconds)>& wait) {
  struct stat last {};
  bool first = true;
  bool input_open = true;
  auto next_tick = std::chrono::steady_clock::now();
  while (!stop_requested()) {
    struct stat st {};
    if (::stat(events_path.c_str(), &st) != 0) {
      throw std::runtime_error(
          fmt::format("{}: cannot stat: {}", events_path, std::strerror(errno)));
    }
    const auto steady = std::chrono::steady_clock::now();
    const bool grew = first || st.st_size != last.st_size || st.st_ino != last.st_ino ||
                      st.st_mtim.tv_sec != last.st_mtim.tv_sec ||
                      st.st_mtim.tv_nsec != last.st_mtim.tv_nsec;
    if (grew || steady >= next_tick) {
      const auto until = wall_now() - std::chrono::duration_cast<nudge::duration>(lag);
      if (const int rc = step(until); rc != 0) {
        return rc;
      }
      between();
      last = st;
      first = false;
      if (steady >= next_tick) {
        next_tick = steady + tick;
      }
    }
    if (!input_open) {
      break;  // the step after the input's end took its last lines
    }
    input_open = wait(poll);
  }
  return 0;
}

}  // namespace nudge_cli

namespace nudge_cli {

void add_follow_options(CLI::App& run, run_args& args) {
  run.add_flag("--follow", args.follow,
               "Keep running: wait for lines appended to --events, advance the clock from the "
               "wall clock (timers fire on time without events), stop on SIGTERM or SIGINT after "
               "the batch in flight (docs/live.md, \"Follow mode\")");
  auto* tick = run.add_option("--tick", args.tick,
                              "With --follow: advance the clock to the wall clock at least this "
                              "often (default 10s; ms, s, m, h)");
  auto* lag = run.add_option("--lag", args.lag,
                             "With --follow: keep the clock this far behind the wall clock, so "
                             "that events stamped up to that long ago are still on time "
                             "(default 0s)");
  // CLI11 runs the callbacks at parse time: whether the options were given at all.
  tick->each([&args](const std::string&) { args.tick_given = true; });
  lag->each([&args](const std::string&) { args.lag_given = true; });
  run.add_flag("--outbox-only", args.outbox_only,
               "Leave the due actions in the outbox for nudge deliver instead of writing them to "
               "--out; what nudge deliver marked delivered is trimmed from it");
}

bool check_follow_options(const run_args& args) {
  std::chrono::milliseconds d{};
  if (!args.follow) {
    if (args.tick_given || args.lag_given) {
      fmt::print(stderr, "--tick and --lag need --follow\n");
      return false;
    }
    return true;
  }
  if (!args.until.empty()) {
    fmt::print(stderr,
               "--until cannot be combined with --follow (it follows the wall clock; "
               "--until now is the wall clock at the start)\n");
    return false;
  }
  if (!parse_duration("--lag", args.lag, d) || !parse_duration("--tick", args.tick, d)) {
    return false;
  }
  if (d < std::chrono::milliseconds{1}) {
    fmt::print(stderr, "--tick must be at least 1ms\n");
    return false;
  }
  return true;
}

bool outbox_empty_for_rule_change(const run_args& args, nudge::sqlite_store& db) {
  const std::size_t waiting = db.outbox_size();
  if (waiting == 0) {
    return true;
  }
  fmt::print(stderr,
             "{}: the rules changed ({}), but {} actions of the stored rules wait in the outbox "
             "for nudge deliver; the database stays on the stored rules until they are delivered "
             "(nudge outbox --db {} lists them): run again once nudge deliver has emptied it\n",
             args.db, args.rules, waiting, args.db);
  return false;
}

int follow_run(const run_args& args, nudge::sqlite_store& db, const std::size_t& delivered,
               const std::function<int(nudge::time_point, run_totals&)>& step) {
  std::chrono::milliseconds tick{}, lag{};
  parse_duration("--tick", args.tick, tick);  // checked by check_follow_options
  parse_duration("--lag", args.lag, lag);
  install_stop_handlers();
  run_totals totals;
  // New lines are looked for every 200 ms (one stat), or more often for a shorter tick.
  const auto poll = std::min(tick, std::chrono::milliseconds{200});
  stdin_spool* spool = current_stdin_spool();
  const int rc = follow_loop(
      args.events, tick, lag, poll, [&](nudge::time_point until) { return step(until, totals); },
      [&] {
        if (args.outbox_only) {
          db.trim_delivered();
        }
      },
      [&](std::chrono::milliseconds d) {
        if (spool != nullptr) {
          return spool->pump(d);  // false once standard input ended: the run then ends
        }
        sleep_unless_stopped(d);
        return true;
      });
  if (rc != 0) {
    return rc;
  }
  const auto at = db.get_meta("run.now");
  fmt::print(stderr,
             "stopped: {} events processed, {} rejected ({} lines of {} so far), {} actions "
             "delivered, {} in the outbox, clock at {}\n",
             totals.processed, totals.rejected, totals.lines, args.events, delivered,
             db.outbox_size(),
             at ? nudge::format_time(nudge::from_epoch(std::stoll(*at))) : std::string{"-"});
  return 0;
}

}  // namespace nudge_cli
