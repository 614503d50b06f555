// nudge run / nudge outbox: live mode on the SQLite store (include/nudge/io/sqlite_store.hpp).
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
  std::string on_error = "stop";      ///< a refused event: stop, or skip (--rejects, stderr)
  std::string rejects;                ///< with skip: append refused lines here
  std::size_t batch = 1000;
  std::uint32_t max_pages = 0;  ///< sqlite_options::max_pages (0: no cap)
  bool from_start = false;      ///< read the events file from its first line (a new file)
};

/// Processes the events the database has not seen yet, in batches, each committed with the
/// file position it reached; delivers actions by appending them as CSV lines to `out`.
int run_live(const run_args& args);

/// Sets `until` from the text of --until (empty: not given, `until` unchanged). False after
/// printing to stderr why the text is not a time; the caller exits with the usage code.
bool parse_until(const std::string& text, std::optional<nudge::time_point>& until);

/// The rule of --on-error and --rejects (nudge replay, nudge run): false after printing
/// "--rejects needs --on-error skip" to stderr; the caller exits with the usage code.
bool check_error_options(const std::string& on_error, const std::string& rejects);

/// Prints the undelivered actions of a database as CSV.
int run_outbox(const std::string& db);

}  // namespace nudge_cli
