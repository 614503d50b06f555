// W1 replay benchmark: events/s for evaluation alone (events in memory, one engine.process
// call), end to end (nudge::replay in batches, the actions CSV written batch by batch, as
// `nudge replay --out` does), or by stage (parse the events into memory, evaluate them in one
// batch, write the actions CSV), and peak memory.
//
//   nudge_replay_bench --rules R --contacts C --events E --mode eval|e2e|stages
//                      [--repeat N] [--verify EXPECTED.csv] [--out ACTIONS.csv] [--batch N]
//
// Each mode runs in its own process so that the peak resident set (getrusage ru_maxrss) is that
// mode's. The output is verified once against EXPECTED (e.g. the CLI's output) before timing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <sys/resource.h>
#include <time.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/nudge.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

struct args {
  std::string rules, contacts, events, mode = "e2e", verify, out = "bench_actions.csv";
  int repeat = 5;
  std::size_t batch = nudge::replay_options::default_batch_events;
};

[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: nudge_replay_bench --rules R --contacts C --events E --mode eval|e2e|stages "
               "[--repeat N] [--verify EXPECTED.csv] [--out ACTIONS.csv] [--batch N]\n");
  std::exit(2);
}

args parse(int argc, char** argv) {
  args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) {
      usage();
    }
    std::string v = argv[++i];
    if (k == "--rules")
      a.rules = v;
    else if (k == "--contacts")
      a.contacts = v;
    else if (k == "--events")
      a.events = v;
    else if (k == "--mode")
      a.mode = v;
    else if (k == "--verify")
      a.verify = v;
    else if (k == "--out")
      a.out = v;
    else if (k == "--repeat")
      a.repeat = std::stoi(v);
    else if (k == "--batch")
      a.batch = std::stoul(v);
    else
      usage();
  }
  if (a.rules.empty() || a.events.empty() ||
      (a.mode != "eval" && a.mode != "e2e" && a.mode != "stages")) {
    usage();
  }
  return a;
}

std::string slurp(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU time of this process: on a shared, loaded machine wall time overstates the cost.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  const args a = parse(argc, argv);
  auto program = nudge::load_rules_file(a.rules);
  std::vector<double> times, cpu_times;
  std::size_t events = 0, actions = 0;

  if (a.mode == "stages") {
    // CPU per stage, each the best of the runs: parse (the events file into memory), evaluate
    // (one engine.process call, its sort of the actions included), write (the actions CSV).
    std::vector<nudge::contact> contacts;
    if (!a.contacts.empty()) {
      contacts = nudge::read_contacts(a.contacts);
    }
    double parse = 1e9, eval = 1e9, write = 1e9;
    for (int r = 0; r < a.repeat; ++r) {
      // Parsing as a replay does: batch by batch into one reused vector. (read_events, which
      // gathers the whole log into one vector for the evaluate stage, costs three times more:
      // moves, reallocations and page faults of a 128 MB vector.)
      double c0 = cpu_seconds();
      {
        nudge::event_reader reader{a.events, {.program = program.get()}};
        std::vector<nudge::event> batch;
        while (reader.read(batch, nudge::replay_options::default_batch_events)) {
        }
      }
      parse = std::min(parse, cpu_seconds() - c0);
      const auto log = nudge::read_events(a.events, {.program = program.get()});
      events = log.size();
      nudge::engine engine{program};
      engine.upsert_contacts(contacts);
      c0 = cpu_seconds();
      auto due = engine.process(log, log.back().ts + program->longest_delay());
      eval = std::min(eval, cpu_seconds() - c0);
      actions = due.size();
      c0 = cpu_seconds();
      {
        std::ofstream out{a.out, std::ios::binary | std::ios::trunc};
        nudge::write_actions_csv(out, due, nudge::time_format::epoch);
      }
      write = std::min(write, cpu_seconds() - c0);
    }
    fmt::print(
        "mode=stages rules={} events={} actions={} parse={:.0f} ms evaluate={:.0f} ms "
        "write={:.0f} ms ({:.0f} ns/event evaluating) peak_rss={:.0f} MB\n",
        program->rule_count(), events, actions, parse * 1e3, eval * 1e3, write * 1e3,
        eval * 1e9 / static_cast<double>(events), peak_rss_mb());
    return 0;
  }
  if (a.mode == "eval") {
    // Inputs in memory, outside the timed region.
    std::vector<nudge::contact> contacts;
    if (!a.contacts.empty()) {
      contacts = nudge::read_contacts(a.contacts);
    }
    const auto log = nudge::read_events(a.events, {.program = program.get()});
    events = log.size();
    const auto until = log.back().ts + program->longest_delay();
    for (int r = 0; r < a.repeat + 1; ++r) {  // run 0 verifies and warms up
      nudge::engine engine{program};
      engine.upsert_contacts(contacts);
      const auto t0 = clock_type::now();
      const double c0 = cpu_seconds();
      auto due = engine.process(log, until);
      const double s = seconds_since(t0);
      const double cpu = cpu_seconds() - c0;
      actions = due.size();
      if (r == 0) {
        if (!a.verify.empty()) {
          std::ostringstream out;
          nudge::write_actions_csv(out, due, nudge::time_format::epoch);
          if (out.str() != slurp(a.verify)) {
            std::fprintf(stderr, "FAILED: actions differ from %s\n", a.verify.c_str());
            return 1;
          }
        }
        continue;
      }
      times.push_back(s);
      cpu_times.push_back(cpu);
    }
  } else {
    for (int r = 0; r < a.repeat + 1; ++r) {
      const auto t0 = clock_type::now();
      const double c0 = cpu_seconds();
      nudge::replay_result result;
      {
        std::ofstream out{a.out, std::ios::binary | std::ios::trunc};
        nudge::actions_csv_writer writer{out, nudge::time_format::epoch};
        nudge::replay_options options{.contacts_path = a.contacts, .batch_events = a.batch};
        options.on_actions = [&](std::span<const nudge::due_action> due) { writer.write(due); };
        result = nudge::replay(program, a.events, options);
      }
      const double s = seconds_since(t0);
      const double cpu = cpu_seconds() - c0;
      events = result.events_read;
      actions = result.action_count;
      if (r == 0) {
        if (!a.verify.empty() && slurp(a.out) != slurp(a.verify)) {
          std::fprintf(stderr, "FAILED: actions differ from %s\n", a.verify.c_str());
          return 1;
        }
        continue;
      }
      times.push_back(s);
      cpu_times.push_back(cpu);
    }
  }
  std::sort(times.begin(), times.end());
  std::sort(cpu_times.begin(), cpu_times.end());
  const double best = times.front();
  const double best_cpu = cpu_times.front();
  const double median_cpu = cpu_times[cpu_times.size() / 2];
  const auto rate = [&](double s) { return static_cast<double>(events) / s / 1e6; };
  fmt::print(
      "mode={} rules={} events={} actions={} wall_best={:.0f} ms cpu_best={:.0f} ms "
      "cpu_median={:.0f} ms rate_wall={:.2f} M/s rate_cpu={:.2f} M/s peak_rss={:.0f} MB{}\n",
      a.mode, program->rule_count(), events, actions, best * 1e3, best_cpu * 1e3, median_cpu * 1e3,
      rate(best), rate(best_cpu), peak_rss_mb(), a.verify.empty() ? "" : " verified");
  return 0;
}
