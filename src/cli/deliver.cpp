// nudge deliver: the live database's outbox to a webhook or a command, each action at least once
// under its idempotency key, retried with exponential backoff and jitter, parked as a dead letter
// after --max-attempts; and nudge outbox --dead, which lists those.
//
// It runs beside `nudge run --outbox-only` without being a second writer: it reads the outbox
// through a read-only store and writes only its own tables (nudge/io/delivery_log.hpp); the run
// trims what it marked. Actions go out in outbox order, one at a time: a failing action holds the
// later ones back until it is delivered or parked.
#include "deliver.hpp"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/delivery_log.hpp>
#include <nudge/io/sqlite_store.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "follow.hpp"
#include "transport.hpp"

namespace nudge_cli {

namespace {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

// One action as posted: {"contact", "rule", "step" (a workflow's step, else null), "action",
// "arg", "params" (the action's params as written), "ts" (due, ISO-8601 UTC), "idempotency_key"
// (decimal, as a string: it does not fit a JSON number's exact range)}.
std::string action_json(const nudge::program& program, const nudge::outbox_entry& e) {
  std::string rule, step;
  const nudge::action* definition = nullptr;
  if (e.workflow) {
    rule = program.rules().workflows[e.rule_index].id;
    const auto* def = program.compiled().workflows[e.rule_index].steps[e.action_index].def;
    step = def->id;
    definition = &def->act;
  } else {
    const auto& r = program.rules().rules[e.rule_index];
    rule = r.id;
    definition = &r.actions[e.action_index];
  }
  std::string out = "{\"contact\":";
  append_json_string(out, e.contact);
  out += ",\"rule\":";
  append_json_string(out, rule);
  out += ",\"step\":";
  if (e.workflow) {
    append_json_string(out, step);
  } else {
    out += "null";
  }
  out += ",\"action\":";
  append_json_string(out, nudge::action_name(e.kind));
  out += ",\"arg\":";
  append_json_string(out, e.arg);
  out += ",\"params\":{";
  bool first = true;
  // The params as a sorted list, so the body is the same whatever the map's order.
  std::vector<std::pair<std::string_view, std::string_view>> params;
  for (const auto& [k, v] : definition->params) {
    params.emplace_back(k, v);
  }
  std::sort(params.begin(), params.end());
  for (const auto& [k, v] : params) {
    if (!first) {
      out += ',';
    }
    first = false;
    append_json_string(out, k);
    out += ':';
    append_json_string(out, v);
  }
  out += "},\"ts\":";
  append_json_string(out, nudge::format_time(e.ts));
  out += fmt::format(",\"idempotency_key\":\"{}\"}}", e.idempotency_key);
  return out;
}

// The delay before retry number `attempt` (1: the first retry): base * 2^(attempt-1), at most
// `cap`, times a jitter factor in [0.5, 1) drawn from the key and the attempt (splitmix64), so
// that deliverers retrying after one outage spread out, and a run is reproducible.
std::chrono::milliseconds backoff_delay(std::chrono::milliseconds base,
                                        std::chrono::milliseconds cap, std::uint64_t key,
                                        std::int64_t attempt) {
  double d = static_cast<double>(base.count());
  for (std::int64_t i = 1; i < attempt && d < static_cast<double>(cap.count()); ++i) {
    d *= 2;
  }
  d = std::min(d, static_cast<double>(cap.count()));
  std::uint64_t z = key + static_cast<std::uint64_t>(attempt) * 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  const double jitter = 0.5 + 0.5 * static_cast<double>(z >> 11) / 9007199254740992.0;
  return std::chrono::milliseconds{static_cast<std::int64_t>(d * jitter)};
}

// The store to read the outbox through, with the rules the database stores now (nudge run may
// move it to a changed rule file: reopened when its fingerprint changes).
struct outbox_reader {
  std::string path;
  std::string fingerprint;
  std::shared_ptr<const nudge::program> program;
  std::unique_ptr<nudge::sqlite_store> store;

  // False after printing why (no rules stored, or they do not load).
  bool open() {
    const auto fp = nudge::sqlite_store::read_meta(path, "nudge.program_fingerprint");
    if (store && fp && *fp == fingerprint) {
      return true;
    }
    const auto rules_text = nudge::sqlite_store::read_meta(path, meta_rules);
    if (!rules_text) {
      fmt::print(stderr, "{}: no rules stored (not written by nudge run)\n", path);
      return false;
    }
    auto p = load_rules_text(*rules_text, path + " (stored rules)");
    if (!p) {
      return false;
    }
    store.reset();
    program = std::move(p);
    store = std::make_unique<nudge::sqlite_store>(path, *program,
                                                  nudge::sqlite_options{.read_only = true});
    fingerprint = fp.value_or("");
    return true;
  }
};

struct deliver_totals {
  std::size_t delivered = 0, failed_attempts = 0, parked = 0;
};

}  // namespace

CLI::App* add_deliver_command(CLI::App& app, deliver_args& args) {
  auto* c = app.add_subcommand(
      "deliver",
      "Deliver the outbox of a database written by nudge run --outbox-only: POST each action as "
      "JSON to a webhook (or hand it to a command), retrying with backoff, parking it as a dead "
      "letter after --max-attempts (docs/live.md, \"Delivery\")");
  c->add_option("--db", args.db, "State database written by nudge run")->required();
  auto* hook = c->add_option(
      "--webhook", args.webhook,
      "POST each action here as JSON (contact, rule, step, action, arg, params, ts, "
      "idempotency_key) with an Idempotency-Key header; delivered only on a 2xx answer");
  auto* exec = c->add_option("--exec", args.exec,
                             "Instead: run this command (/bin/sh -c) with the action's JSON on "
                             "standard input and NUDGE_IDEMPOTENCY_KEY set; delivered if it "
                             "exits 0");
  hook->excludes(exec);
  c->add_option("--max-attempts", args.max_attempts,
                "Attempts per action before it is parked as a dead letter (default 8; nudge "
                "outbox --dead lists them)")
      ->check(CLI::Range(1U, 1000000U));
  c->add_option("--backoff", args.backoff,
                "Delay before the first retry, doubled for each next one, with jitter (x0.5 to "
                "x1, from the idempotency key) (default 1s)");
  c->add_option("--backoff-max", args.backoff_max, "Longest delay between retries (default 5m)");
  c->add_option("--timeout", args.timeout,
                "Longest time one attempt (request or command) may take (default 30s)");
  c->add_flag("--follow", args.follow,
              "Keep running: look at the outbox every --poll for new actions; stop on SIGTERM or "
              "SIGINT after the action in flight");
  c->add_option("--poll", args.poll, "With --follow: how often to look (default 1s)");
  return c;
}

int run_deliver(const deliver_args& args) {
  if (args.webhook.empty() == args.exec.empty()) {
    fmt::print(stderr, "nudge deliver needs --webhook URL or --exec COMMAND\n");
    return exit_usage;
  }
  if (!args.webhook.empty() && !args.webhook.starts_with("http://") &&
      !args.webhook.starts_with("https://")) {
    fmt::print(stderr, "--webhook {}: not an http:// or https:// URL\n", args.webhook);
    return exit_usage;
  }
  std::chrono::milliseconds backoff{}, backoff_max{}, timeout{}, poll{};
  if (!parse_duration("--backoff", args.backoff, backoff) ||
      !parse_duration("--backoff-max", args.backoff_max, backoff_max) ||
      !parse_duration("--timeout", args.timeout, timeout) ||
      !parse_duration("--poll", args.poll, poll)) {
    return exit_usage;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a command that does not read its input
  std::unique_ptr<webhook> hook;
  if (!args.webhook.empty()) {
    hook = std::make_unique<webhook>(args.webhook, timeout);
  }
  nudge::delivery_log log{args.db};
  outbox_reader reader{args.db, {}, {}, {}};
  if (!reader.open()) {
    return exit_input;
  }
  install_stop_handlers();
  deliver_totals totals;
  std::size_t waiting = 0;
  while (!stop_requested()) {
    if (!reader.open()) {
      return exit_input;
    }
    const std::int64_t through = log.through();
    std::vector<nudge::outbox_entry> entries;
    for (auto& e : reader.store->outbox()) {
      if (e.sequence > through) {
        entries.push_back(std::move(e));
      }
    }
    waiting = entries.size();
    for (const auto& e : entries) {
      const std::string body = action_json(*reader.program, e);
      const std::string key = std::to_string(e.idempotency_key);
      std::int64_t attempts = log.attempts(e.sequence);
      bool done = false;
      while (!done && !stop_requested()) {
        const attempt_result r =
            hook ? hook->post(body, key) : run_command(args.exec, body, key, timeout);
        ++attempts;
        if (r.delivered) {
          log.mark_delivered(e.sequence);
          ++totals.delivered;
          done = true;
        } else if (attempts >= static_cast<std::int64_t>(args.max_attempts)) {
          log.park({e.sequence, attempts, r.error, body});
          ++totals.failed_attempts;
          ++totals.parked;
          fmt::print(stderr, "{}: parked action {} (key {}) after {} attempts: {}\n", args.db,
                     e.sequence, key, attempts, r.error);
          done = true;
        } else {
          log.record_failure(e.sequence, attempts);
          ++totals.failed_attempts;
          sleep_unless_stopped(backoff_delay(backoff, backoff_max, e.idempotency_key, attempts));
        }
      }
      if (!done) {
        break;  // stopped: the attempts so far are recorded, the next start goes on from them
      }
      --waiting;
    }
    if (!args.follow) {
      break;
    }
    sleep_unless_stopped(poll);
  }
  fmt::print(stderr,
             "{}: {} actions delivered, {} failed attempts, {} parked as dead letters, {} "
             "waiting{}\n",
             args.db, totals.delivered, totals.failed_attempts, totals.parked, waiting,
             stop_requested() ? " (stopped)" : "");
  return exit_ok;
}

int run_outbox_dead(const std::string& db) {
  std::string out = "sequence,attempts,error,action\n";
  for (const auto& l : nudge::delivery_log::dead_letters(db)) {
    auto it = std::back_inserter(out);
    it = fmt::format_to(it, "{},{},", l.sequence, l.attempts);
    it = nudge::write_csv_field(it, l.error);
    *it++ = ',';
    it = nudge::write_csv_field(it, l.action);
    *it++ = '\n';
  }
  fmt::print("{}", out);
  return exit_ok;
}

}  // namespace nudge_cli
