// Follow mode (nudge run --follow, nudge deliver --follow): the wall clock, stopping on SIGTERM or
// SIGINT between batches, and the loop that waits for lines appended to the events file.
// The wall clock is read here only, in the CLI: the engine gets `now` explicitly.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include <nudge/io/sqlite_store.hpp>
#include <nudge/time.hpp>

#include "commands.hpp"

namespace CLI {
class App;
}

namespace nudge_cli {

/// nudge run's --follow, --tick, --lag and --outbox-only options.
void add_follow_options(CLI::App& run, run_args& args);

/// The wall clock, in whole seconds. For tests, the environment variable NUDGE_CLOCK_FILE may
/// name a file holding the time instead (epoch seconds or ISO-8601, read at each call), so that
/// a test drives the clock beside the events it appends (docs/live.md, "Follow mode").
/// @throws std::runtime_error if that file cannot be read or does not hold a time.
nudge::time_point wall_now();

/// Parses a duration option ("10s", "250ms", "5m", "1h", "2d"; a plain number is seconds).
/// False after printing "--NAME: ..." to stderr; the caller exits with the usage code.
bool parse_duration(const std::string& option, const std::string& text,
                    std::chrono::milliseconds& out);

/// SIGTERM and SIGINT set a flag instead of ending the process: stop_requested() then says so,
/// and the command ends after the batch (or delivery) in flight, committed. A second signal of
/// either kind ends the process at once (at-least-once delivery keeps that safe too).
void install_stop_handlers();
bool stop_requested() noexcept;
/// Sleeps `d`, or less if a stop is requested meanwhile.
void sleep_unless_stopped(std::chrono::milliseconds d);

/// What the batches of a follow run added up to (the closing summary line).
struct run_totals {
  std::size_t processed = 0;  ///< events processed
  std::size_t rejected = 0;   ///< lines refused (--on-error skip)
  std::size_t lines = 0;      ///< non-blank lines of the file consumed so far
};

/// nudge run --follow: calls `step(until)` whenever the events file grew (checked every
/// `poll`) and at least every `tick`, with `until` the wall clock minus `lag`; `step` processes
/// the complete lines up to it, fires the timers due by then, and returns an exit code (non-zero
/// ends the loop with it). Between steps `between()` runs (the deliverer's marks are trimmed
/// there), then `wait(poll)`, which returns false when the input has ended (standard input): one
/// more step then ends the loop. Returns 0 once a stop was requested (after the step in flight)
/// or the input ended.
int follow_loop(const std::string& events_path, std::chrono::milliseconds tick,
                std::chrono::milliseconds lag, std::chrono::milliseconds poll,
                const std::function<int(nudge::time_point until)>& step,
                const std::function<void()>& between,
                const std::function<bool(std::chrono::milliseconds)>& wait);

/// With --outbox-only, actions may still wait for nudge deliver when the rule file changed; their
/// outbox entries name workflow steps of the stored rules by position, so the rules cannot change
/// under them. False after printing why (the caller exits 1); true if the outbox is empty.
bool outbox_empty_for_rule_change(const run_args& args, nudge::sqlite_store& db);

/// nudge run's follow options (--tick, --lag; --until is refused beside --follow): false after
/// printing why; the caller exits with the usage code.
bool check_follow_options(const run_args& args);

/// nudge run --follow around `step(until, totals)` (one nudge run up to `until`): the loop above,
/// with --outbox-only trimming what nudge deliver marked between steps; prints the summary line
/// once stopped. `delivered` counts the actions written to --out.
int follow_run(const run_args& args, nudge::sqlite_store& db, const std::size_t& delivered,
               const std::function<int(nudge::time_point, run_totals&)>& step);

}  // namespace nudge_cli
