// nudge deliver: posts the live database's outbox to a webhook (libcurl) or hands it to a command,
// with retries, backoff and dead letters (docs/live.md, "Delivery").
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace nudge_cli {

/// nudge deliver's options.
struct deliver_args {
  std::string db;
  std::string webhook;  ///< POST each action here, or
  std::string exec;     ///< run this command (/bin/sh -c) with the action on standard input
  std::uint32_t max_attempts = 8;
  std::string backoff = "1s";      ///< the first retry's delay, doubled for each next one
  std::string backoff_max = "5m";  ///< no retry waits longer
  std::string timeout = "30s";     ///< one attempt (HTTP request or command) at most
  std::string poll = "1s";         ///< --follow: look at the outbox this often
  bool follow = false;
};

/// Adds the `deliver` subcommand to `app`; returns it.
CLI::App* add_deliver_command(CLI::App& app, deliver_args& args);

/// Delivers the outbox once (or, with --follow, until SIGTERM or SIGINT); returns the exit code.
int run_deliver(const deliver_args& args);

}  // namespace nudge_cli
