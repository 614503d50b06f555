// nudge/io/pg_store.hpp: live mode on many processes: contact states, their timers and an outbox in
// one PostgreSQL database shared by workers that split the contacts by partition (docs/live.md,
// "Many processes: PostgreSQL").
//
// Example (one worker; run as many as you like against the same database):
//
//     nudge::pg_init("postgresql:///shop", 64);              // once: schema and partitions
//     nudge::pg_store db{"postgresql:///shop", program, {.worker_id = "w1"}};
//     db.keep_leases();                                      // renew, balance, acquire
//     db.process([&](std::span<const nudge::pg_progress> held) {
//       return plan;   // each held partition's events of this batch and its `now`
//     });                                                    // one transaction, fenced
//
// Ownership: a contact belongs to partition XXH3-64(id) % P (pg_partition_of, as nudge.distributed
// cuts; docs/scale.md). A worker holds partitions by lease (a row with owner, generation and
// expiry, renewed by keep_leases); a lease that expires may be taken by another worker, which
// increments its generation. Every batch's transaction locks the lease rows of its partitions
// (SELECT ... FOR UPDATE) and compares their generations with the ones this worker acquired: a
// worker that lost a lease (paused, partitioned off) commits nothing (pg_lease_lost).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/contact.hpp>
#include <nudge/event.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/program.hpp>
#include <nudge/stats.hpp>
#include <nudge/store.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// A database that cannot be reached, read or written, or refuses this program; what() names
/// the database (its URL, password hidden) and the reason, e.g. "postgresql:///shop: cannot
/// connect: ...", "postgresql:///shop: schema version 2, this build reads version 1".
class pg_error : public std::runtime_error {
 public:
  explicit pg_error(const std::string& what) : std::runtime_error(what) {}
};

/// The batch's transaction found that another worker holds (or held since) one of its
/// partitions: nothing was committed; the partitions named are no longer this worker's.
class pg_lease_lost : public pg_error {
 public:
  pg_lease_lost(const std::string& what, std::vector<std::uint32_t> partitions)
      : pg_error(what), partitions_(std::move(partitions)) {}
  const std::vector<std::uint32_t>& partitions() const noexcept { return partitions_; }

 private:
  std::vector<std::uint32_t> partitions_;
};

/// The schema version this build creates and reads.
/// Version 1: partitions, leases, states, outbox; 2: the events table (pg_read_events).
inline constexpr std::int64_t pg_schema_version = 2;

/// The partition of a contact id: XXH3-64 of its bytes modulo `partitions` (the same on every
/// machine, as nudge.distributed's partition_of).
std::uint32_t pg_partition_of(std::string_view id, std::uint32_t partitions);

/// Creates the schema (version pg_schema_version) with `partitions` partitions, or migrates an
/// older one, in one transaction; returns what it did ("created schema version 1 with 64
/// partitions" / "schema version 1 already, 64 partitions"). Refuses a database whose partition
/// count differs (contacts would change partition) or whose version is newer than this build's.
/// @throws pg_error
std::string pg_init(const std::string& url, std::uint32_t partitions);

/// The rows of the events table `nudge_events(seq, ts, contact, type, key, value)` that hosts
/// insert into, in `seq` order, read as the same columns of an events CSV file would be (the
/// reader's checks; `options.format` is ignored). A problem names `name` and the row's seq
/// ("nudge_events: row seq 12: ..."). Rows become visible in `seq` order (a trigger serialises the
/// inserting transactions), so a row's index in this list never changes.
/// @throws pg_error, read_error
std::vector<event> pg_read_events(const std::string& url, const std::string& name,
                                  event_read_options options = {});

struct pg_options {
  /// This worker's name in the lease table (default: host:pid).
  std::string worker_id;
  /// How long a lease lasts without renewal; keep_leases renews it. A worker paused longer
  /// loses its partitions to the others.
  std::chrono::milliseconds lease{10'000};
  /// Only to read (stats()): not counted as a live worker, takes no leases.
  bool reader = false;
};

/// A partition's committed progress, as the batch's transaction read it (under its lease lock).
struct pg_progress {
  std::uint32_t partition = 0;
  std::int64_t next_event = 0;    ///< events of the file this partition is past
  std::optional<time_point> now;  ///< the time it was processed up to
  bool contacts_loaded = false;   ///< the contacts file was upserted
};

/// One partition's share of a batch (plan).
struct pg_partition_batch {
  std::uint32_t partition = 0;
  std::vector<event> events;    ///< the partition's events of the batch, in file order
  time_point now;               ///< process up to here
  std::int64_t next_event = 0;  ///< the partition's position after the batch
  /// Upserted at `contacts_at` before the events (the partition's first batch).
  std::vector<contact> contacts;
  std::optional<time_point> contacts_at;
};

/// One outbox row.
struct pg_outbox_entry {
  std::int64_t sequence = 0;
  std::uint64_t idempotency_key = 0;
  time_point ts;
  std::string contact, rule, action, arg;  ///< rule: "workflow/step" for a workflow's action
};

/// A nudge::store over PostgreSQL for one worker, and the worker's leases and batches.
///
/// Tables (schema version 2; prefixed nudge_ so they can share a database): nudge_meta (schema
/// version, partitions, program fingerprint, rules), nudge_leases(part, owner, generation,
/// expires_at), nudge_workers(id, expires_at) (live workers, for balancing), nudge_progress(part,
/// next_event, now, contacts_loaded, engine) (a partition's position, time and statistics),
/// nudge_contacts(id, part, next_due, state) (state: the SQLite store's record codec, indexed
/// on (part, next_due)), nudge_outbox(seq, idempotency_key UNIQUE, part, ts, contact, rule,
/// action, arg, delivered_at), nudge_events(seq, ts, contact, type, key, value) (pg_read_events).
///
/// As a nudge::store it serves the engine evaluating one partition of the open batch: load and
/// due read what the batch fetched for that partition in one query (the events' contacts and
/// those with next_due <= now, found through the index), save queues the states for the
/// batch's commit. Thread-safety: none; one thread per store.
class pg_store : public store {
 public:
  /// Connects, checks the schema version and the program's fingerprint (a database belongs to
  /// one program: other rules are refused naming both fingerprints) and records this worker.
  /// @throws pg_error
  pg_store(const std::string& url, std::shared_ptr<const nudge::program> program,
           pg_options options = {});
  ~pg_store() override;
  pg_store(const pg_store&) = delete;
  pg_store& operator=(const pg_store&) = delete;

  std::optional<contact_state> load(std::string_view contact) override;
  void save(std::span<contact_state> states) override;
  std::vector<std::string> due(time_point t) override;

  std::uint32_t partitions() const noexcept;
  const std::string& worker_id() const noexcept;
  const std::string& name() const noexcept;  ///< the URL, password hidden

  /// Renews this worker's leases and heartbeat, gives up partitions above its share
  /// (ceil(P / live workers), live: an unexpired heartbeat) and acquires free or expired ones
  /// up to it (SKIP LOCKED). Returns the partitions held, ascending. Call between batches,
  /// more often than the lease lasts.
  std::vector<std::uint32_t> keep_leases();
  /// The partitions the last keep_leases found taken over by another worker (this one did not
  /// renew them in time: it was paused, or cut off), ascending.
  const std::vector<std::uint32_t>& taken_over() const noexcept;
  /// The partitions this worker holds as of the last keep_leases or batch, ascending.
  std::vector<std::uint32_t> held() const;
  /// Gives every lease up (at a clean exit), so others take over at once. Returns how many of
  /// the partitions it thought it held were still its own (fewer: others took some over since
  /// the last keep_leases; if the database cannot be reached, the leases expire on their own
  /// and all count as its own).
  std::size_t release_leases() noexcept;

  /// One batch over the held partitions, in one transaction: locks their lease rows and checks
  /// their generations (else pg_lease_lost, nothing committed), reads their progress, asks
  /// `plan` for each partition's share, evaluates each with an engine of its own (statistics
  /// per partition), and writes the states, the actions into the outbox (a key already there is
  /// kept once), the progress and statistics. Returns the number of actions.
  /// @throws pg_lease_lost, pg_error, or what the engine throws; nothing committed then.
  std::size_t process(
      const std::function<std::vector<pg_partition_batch>(std::span<const pg_progress>)>& plan);

  /// True once every partition is past `events` events of the file and processed up to `end`.
  bool finished(std::int64_t events, time_point end);
  /// Statistics summed over the partitions (first / last: earliest / latest).
  std::vector<rule_stats> stats();
  /// Batches this store committed.
  std::size_t commits() const noexcept;
  /// The server closed the connection (e.g. it ended a session left idle inside a transaction
  /// for longer than the lease: a worker paused mid-batch). Open a new store to go on.
  bool connection_lost() const noexcept;

  /// Claims up to `limit` undelivered actions (FOR UPDATE SKIP LOCKED: concurrent claimers get
  /// disjoint sets), hands them to `deliver`, and marks them delivered in the same transaction;
  /// if `deliver` throws, nothing is marked. Returns how many were claimed.
  static std::size_t claim_outbox(
      const std::string& url, std::size_t limit,
      const std::function<void(std::span<const pg_outbox_entry>)>& deliver);

 protected:
  /// Called inside the batch's transaction just before COMMIT (a test hook: a throw here rolls
  /// the batch back).
  virtual void before_commit() {}

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace nudge
