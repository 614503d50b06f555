// nudge sort: an event log put in time order in bounded memory (src/cli/sort.cpp).
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace nudge_cli {

struct sort_args {
  CLI::App* command = nullptr;
  std::string in, out, temp_dir, format;
  std::string memory = "256M";
};

/// Adds the `sort` subcommand to `app`, filling `args` when parsed.
void add_sort_command(CLI::App& app, sort_args& args);

/// Runs `nudge sort`; returns the exit code (0 ok, 1 bad input or I/O error, 2 usage).
int run_sort(const sort_args& args);

}  // namespace nudge_cli
