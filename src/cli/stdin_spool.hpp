// nudge run --follow --events -: standard input, spooled to a file beside the database that the
// run then follows like any events file (docs/live.md, "Follow mode").
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "out_file.hpp"

namespace nudge_cli {

/// Standard input appended, complete line by complete line, to the spool file
/// "<db>.stdin.csv" (or ".stdin.jsonl" when its first byte is '{'). The spool is what the database
/// records a position in, so a restarted run continues in it; a CSV header read again on
/// standard input after a restart must equal the spool's, and is not appended twice.
class stdin_spool {
 public:
  /// Opens the spool of `args.db` (creating it from the first line of standard input, which it
  /// waits for). nullopt after printing why (a header other than the spool's; standard input
  /// ended or a stop was requested before a first line).
  static std::unique_ptr<stdin_spool> open(const run_args& args);

  /// Reads what standard input has within `wait`, appending the complete lines to the spool
  /// (fsynced with `durable`). Returns false once standard input has ended.
  bool pump(std::chrono::milliseconds wait);
  const std::string& path() const noexcept { return path_; }

 private:
  stdin_spool(std::string path, bool durable, bool csv, std::string header, std::string pending);
  bool append_complete_lines();

  std::string path_;
  line_file out_;
  bool csv_ = false;
  std::string header_;   ///< the spool's header line (CSV), with its '\n'
  std::string pending_;  ///< read, not yet a complete line (or a header to check)
  bool header_checked_ = false;
  bool eof_ = false;
};

/// The spool of the running nudge run --follow --events - (nullptr otherwise): its follow loop
/// pumps standard input instead of sleeping.
stdin_spool* current_stdin_spool() noexcept;

/// nudge run --follow --events -: opens the spool and runs nudge run --follow on it.
int run_live_from_stdin(const run_args& args);

}  // namespace nudge_cli
