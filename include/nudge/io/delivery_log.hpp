// nudge/io/delivery_log.hpp: what a deliverer beside `nudge run` (nudge deliver) records in the
// live database: how far the outbox was delivered, the attempts at the action in flight, and the
// actions parked after too many attempts (the dead letters).
//
// The database has one writer of its states and outbox (sqlite_store, which holds "<db>.lock").
// A delivery_log never writes those: it holds its own lock, "<db>.deliver.lock" (one deliverer at
// a time), and writes only its own two tables, `delivery` and `dead_letter` (schema version 8),
// each change in one short transaction (SQLite WAL: the writer's batches wait at most the busy
// timeout for it, and it for them). The writer reads the `delivery` table's mark and trims the
// outbox up to it (sqlite_store::trim_delivered), so delivered actions leave the outbox without
// the deliverer ever writing it.
//
// Example:
//
//     nudge::delivery_log log{"state.db"};
//     nudge::sqlite_store db{"state.db", *program, {.read_only = true}};
//     for (const auto& e : db.outbox(100)) {
//       if (e.sequence <= log.through()) continue;   // delivered, not yet trimmed
//       if (post(e)) log.mark_delivered(e.sequence); else log.record_failure(e.sequence, ...);
//     }
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace nudge {

/// An action parked after its last failed attempt (`nudge outbox --dead`).
struct dead_letter {
  std::int64_t sequence = 0;  ///< its outbox sequence
  std::int64_t attempts = 0;  ///< attempts made
  std::string error;          ///< the last attempt's failure, e.g. "HTTP 503"
  std::string action;         ///< the action as it was delivered (one JSON object)
};

/// The deliverer's records in a live database (see the file comment).
///
/// Every row carries a checksum (XXH3-64, as the store's rows: kind 5 for `delivery`, 6 for
/// `dead_letter`), checked when read; a damaged row throws sqlite_error naming it.
/// Thread-safety: none; one thread per object.
class delivery_log {
 public:
  /// Takes "<path>.deliver.lock" (a second deliverer is refused at once, naming the holder),
  /// opens the database read-write (a database of schema version 7 gets the two tables, and
  /// version 8, in one transaction).
  /// @throws sqlite_error (the lock is held, the file is missing or not a nudge database).
  explicit delivery_log(const std::string& path);
  ~delivery_log();
  delivery_log(const delivery_log&) = delete;
  delivery_log& operator=(const delivery_log&) = delete;

  /// Every outbox entry with a sequence up to this is delivered or parked (0: none).
  std::int64_t through();
  /// Failed attempts recorded for the entry `sequence` (0 if none: the mark names one entry, the
  /// first not yet delivered).
  std::int64_t attempts(std::int64_t sequence);
  /// Entry `sequence` was delivered: through() becomes `sequence`, its attempts are dropped.
  void mark_delivered(std::int64_t sequence);
  /// Entry `sequence` failed again; `attempts` failures so far.
  void record_failure(std::int64_t sequence, std::int64_t attempts);
  /// Entry `sequence` is given up: parked in `dead_letter` and through() becomes `sequence`, in
  /// one transaction.
  void park(const dead_letter& letter);

  /// The dead letters of the database at `path`, oldest first, read-only (none for a database of
  /// schema version 7).
  /// @throws sqlite_error (cannot open, not a nudge database, a damaged row).
  static std::vector<dead_letter> dead_letters(const std::string& path);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nudge
