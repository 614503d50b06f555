// nudge run / nudge outbox: live mode on the SQLite store (include/nudge/sqlite_store.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include <nudge/time.hpp>

namespace nudge_cli {

struct run_args {
  std::string db, rules, contacts, events, until, out;
  std::string sync = "normal";
  std::string time_format = "epoch";  ///< --time-format: epoch (default) or iso
  std::size_t batch = 1000;
  std::uint32_t max_pages = 0;  ///< sqlite_options::max_pages (0: no cap)
};

/// Processes the events the database has not seen yet, in batches, each committed with the
/// file position it reached; delivers actions by appending them as CSV lines to `out`.
int run_live(const run_args& args);

/// Sets `until` from the text of --until (empty: not given, `until` unchanged). False after
/// printing to stderr why the text is not a time; the caller exits with the usage code.
bool parse_until(const std::string& text, std::optional<nudge::time_point>& until);

/// Prints the undelivered actions of a database as CSV.
int run_outbox(const std::string& db);

}  // namespace nudge_cli
