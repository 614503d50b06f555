// What `nudge run` tells the operator about each batch: the hook its loops call (run_observer),
// fanned out to the metrics (metrics.hpp) and the per-batch log lines (log.hpp).
//
// The hook is the seam between the run loops and the reporting: the events loop calls
// on_batch() after every committed batch, and a loop that only ticks the clock (a follow mode)
// calls it once per tick with events = 0. Actions are counted when the sink takes them
// (on_actions), so the counts are what reached --out.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <span>
#include <vector>

#include <nudge/due_action.hpp>
#include <nudge/time.hpp>

namespace nudge {
class program;
class sqlite_store;
}  // namespace nudge

namespace nudge_cli {

/// One committed batch (or clock tick), as the loop that ran it saw it.
struct batch_report {
  std::size_t events = 0;    ///< events the batch applied
  std::size_t rejected = 0;  ///< lines set aside (--on-error skip) up to this batch's commit
  std::size_t actions = 0;   ///< actions the batch added to the outbox
  /// Wall time of the batch (read, process, commit, hand to --out), measured by the CLI only:
  /// the engine has no clock of its own.
  std::chrono::duration<double> duration{};
  nudge::time_point engine_now = nudge::min_time;  ///< the time the batch advanced the engine to
};

/// The outbox as the metrics report it: actions committed but not yet handed to the sink.
struct outbox_report {
  std::size_t depth = 0;
  std::optional<nudge::time_point> oldest_due;  ///< due time of the oldest of them
};

/// Reads `db`'s outbox past the `handed` actions the sink already holds (nudge run trims in
/// groups: those are in --out, waiting for one fsync). Scans the outbox: call it only when
/// someone reads the result (metrics on).
outbox_report read_outbox(nudge::sqlite_store& db, std::size_t handed);

class run_observer;
/// With --outbox-only no sink takes a batch's actions (nudge deliver will): tells `observer`
/// of the `count` newest outbox entries, the batch's, as the sink's on_actions would have.
void observe_outbox_tail(run_observer& observer, nudge::sqlite_store& db,
                         const nudge::program& program, std::size_t count);

/// Told about every batch (see the header comment). Implementations must not throw out of a
/// hook for reasons of their own other than a failed write the operator asked for.
class run_observer {
 public:
  virtual ~run_observer() = default;
  /// The sink took these actions (they are in --out now), or with --outbox-only the batch
  /// committed them to the outbox for nudge deliver.
  virtual void on_actions(std::span<const nudge::due_action> actions) { (void)actions; }
  /// A batch was committed and its actions handed to the sink; `outbox` is set when
  /// wants_outbox() (reading it costs a scan).
  virtual void on_batch(const batch_report& batch, const std::optional<outbox_report>& outbox) = 0;
  /// The run ends normally (after the last delivery): a last chance to publish.
  virtual void on_end(const std::optional<outbox_report>& outbox) { (void)outbox; }
  virtual bool wants_outbox() const { return false; }
};

/// Several observers behind one (nudge run: the metrics and the log).
class observers final : public run_observer {
 public:
  void add(run_observer* o) {
    if (o != nullptr) {
      list_.push_back(o);
    }
  }
  void on_actions(std::span<const nudge::due_action> actions) override {
    for (auto* o : list_) {
      o->on_actions(actions);
    }
  }
  void on_batch(const batch_report& batch, const std::optional<outbox_report>& outbox) override {
    for (auto* o : list_) {
      o->on_batch(batch, outbox);
    }
  }
  void on_end(const std::optional<outbox_report>& outbox) override {
    for (auto* o : list_) {
      o->on_end(outbox);
    }
  }
  bool wants_outbox() const override {
    for (auto* o : list_) {
      if (o->wants_outbox()) {
        return true;
      }
    }
    return false;
  }

 private:
  std::vector<run_observer*> list_;
};

}  // namespace nudge_cli
