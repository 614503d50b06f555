// nudge/io/sqlite_store.hpp: the embedded store for live use: contact states, their timers and an
// outbox of due actions in one SQLite database (WAL mode), and durable_engine, which commits each
// batch's states and actions in one transaction and feeds the host's sink from the outbox.
//
// Example:
//
//     nudge::sqlite_store db{"state.db", *program};
//     my_sink sink;                                      // the host's delivery
//     nudge::durable_engine engine{program, db, &sink};
//     engine.process(events, now);   // one transaction: states + outbox; then delivery
//
// Delivery is at least once: an action leaves the outbox only after the sink accepted it, so a
// crash between delivery and marking it delivered delivers it again with the same idempotency
// key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/due_action.hpp>
#include <nudge/engine.hpp>
#include <nudge/event.hpp>
#include <nudge/program.hpp>
#include <nudge/sink.hpp>
#include <nudge/stats.hpp>
#include <nudge/store.hpp>

namespace nudge {

/// A database that cannot be opened, read or written; what() names the file and SQLite's
/// reason, e.g. "state.db: cannot open (read the header): file is not a database". Also: a
/// second writer ("state.db: refused: another writer has this database open (pid 4242 on host
/// box since 2026-12-07T12:00:00Z; lock file state.db.lock); ..."), and damage ("state.db:
/// journal row 12 fails its checksum: the database is damaged and was not used (...)").
class sqlite_error : public std::runtime_error {
 public:
  explicit sqlite_error(const std::string& what) : std::runtime_error(what) {}
};

/// SQLite's PRAGMA synchronous. In WAL mode `normal` survives a crash of the process at any
/// point but may lose the last transactions on power loss; `full` survives power loss too.
enum class sqlite_sync : std::uint8_t { off, normal, full };

struct sqlite_options {
  sqlite_sync synchronous = sqlite_sync::normal;
  /// Open without writing (e.g. to list the outbox); any write then throws sqlite_error.
  bool read_only = false;
  /// Largest size of the database in pages (SQLite's PRAGMA max_page_count, for this
  /// connection only; 0: SQLite's default, no practical cap; a value below the current size
  /// acts as the current size). A batch that would grow the database past it fails exactly as
  /// on a full disk, with nothing of it committed: sqlite_error "state.db: cannot save 120 contact
  /// states: database or disk is full" (from durable_engine::process, wrapped in a callback_error
  /// "store.save failed: ..." when the engine's save hit it). For hosts that want a quota, and
  /// for tests (docs/limits.md).
  std::uint32_t max_pages = 0;

  /// The journal is folded into a new checkpoint (see sqlite_store) once it holds more than
  /// both this many bytes and four times the checkpoint's size. Smaller values bound the time to
  /// open the database; larger ones write less. Tests set 0 to compact often.
  std::size_t compact_after_bytes = std::size_t{64} << 20;
};

/// One undelivered action as the outbox keeps it.
struct outbox_entry {
  std::int64_t sequence = 0;  ///< outbox order (commit order, then the batch's action order)
  std::string contact;
  time_point ts;
  std::uint32_t rule_index = 0;    ///< the rule's index (the workflow's, if `workflow`)
  std::uint32_t action_index = 0;  ///< index of the action in its rule (the step's index)
  bool workflow = false;           ///< produced by a workflow step
  action_kind kind = action_kind::send_email;
  std::string arg;  ///< as delivered (the owner picked for assign_owner)
  std::uint64_t idempotency_key = 0;
  friend bool operator==(const outbox_entry&, const outbox_entry&) = default;
};

/// What sqlite_store::check found in a database.
struct sqlite_check_report {
  std::int64_t schema_version = 0;
  /// Rows read and checked, per kind.
  std::size_t meta = 0, checkpoint = 0, journal = 0, outbox = 0;
  std::size_t undelivered = 0;  ///< outbox entries not yet delivered
  /// The deliverer's rows (schema version 8, delivery_log.hpp): `delivery` and `dead_letter`.
  std::size_t delivery = 0, dead_letters = 0;
  /// Every problem found, each naming the record (e.g. "journal row 3 fails its checksum",
  /// "outbox entries 9 to 12 are missing", "SQLite integrity_check: ..."); empty if sound.
  std::vector<std::string> problems;
};

/// A nudge::store over one SQLite database file.
///
/// Layout (schema version 7). The contact states live in memory, as in memory_store: load()
/// and due() never touch the disk. The database is their durable journal:
///
/// - `journal(batch, states)`: one row per save() (per batch), the saved states as
///   length-prefixed records of the snapshot codec (docs/snapshot.md), zero runs coded
///   (docs/live.md). Appending one row
///   writes a few sequential pages at the end of the file, whatever contacts changed.
/// - `checkpoint(part, states)`: every state as of some commit, in rows of about 1 MiB. When
///   the journal outgrows sqlite_options::compact_after_bytes and four times the checkpoint, the
///   committing transaction rewrites the checkpoint from memory and empties the journal.
/// - `outbox(first_seq, count, actions)`: one row per add_to_outbox (per batch) with its
///   actions, numbered first_seq, first_seq + 1, ...; the meta entry
///   `nudge.outbox_delivered` says up to which sequence the sink accepted, and rows wholly
///   delivered are deleted in the same transaction.
/// - `meta(key, value)`: format version, program fingerprint, statistics and counters
///   (`nudge.engine`), the row counts (`nudge.rows`), and host entries.
///
/// Integrity: every row carries a checksum (XXH3-64 of its kind, key columns and blob) checked
/// whenever it is read, and `nudge.rows` says how many checkpoint parts, journal rows, outbox
/// entries and meta rows were written: a damaged, renumbered or lost row throws sqlite_error
/// naming it and is never used. The file carries PRAGMA application_id 0x6e756467; a file
/// without it (another application's, an empty file) is refused. A new database is written
/// beside its place ("<path>.creating"), synced and renamed there: no kill leaves a partial one.
///
/// One writer per database: a store opened for writing holds an exclusive flock(2) on
/// "<path>.lock" (created beside the database, kept afterwards) until it is destroyed; a second
/// writer, in this process or another, is refused at once naming the holder's pid, host and
/// start time, which the lock file holds. The kernel drops the lock when the holder exits,
/// however it exits. Read-only stores take no lock; each of their reads of several statements
/// (opening, the outbox) runs in one read transaction, so it never sees half of a batch.
///
/// Opening reads the checkpoint and then the journal in order (the last record of a contact
/// wins) and checks every record against the program: time and memory grow with the states
/// (W1 medium, 100,000 contacts, after a whole run: about 1.3 s of CPU for a 25 MB checkpoint
/// and a 73 MB journal; the states take what memory_store takes). A database belongs to one
/// program: opening it with other rules throws sqlite_error naming both fingerprints ("reject,
/// never guess"); a database of an older schema version (1 and 2: one row per contact; 3:
/// uncoded records; 4: states without the delivery policy; 5: without workflow completion
/// counts and locations; 6: rows without checksums) is
/// refused, unchanged.
///
/// Transactions: outside begin()/commit() each save, add_to_outbox and remove_from_outbox is
/// its own transaction. Inside one, changes are visible to this store at once; rollback() (or
/// a failed commit) undoes them in memory too.
/// A read-only store reads the state on first use, and again (at any read outside a
/// transaction) when another connection committed since (SQLite's data_version). Methods are
/// virtual so that a test can inject faults.
///
/// Thread-safety: none; one thread per store.
class sqlite_store : public store {
 public:
  /// Opens or creates the database (a writer first takes the writer lock, see above).
  /// @throws sqlite_error (another writer holds it, cannot open, not a nudge database, damaged,
  ///   another program or schema version).
  sqlite_store(const std::string& path, const program& program, sqlite_options options = {});
  ~sqlite_store() override;
  sqlite_store(const sqlite_store&) = delete;
  sqlite_store& operator=(const sqlite_store&) = delete;

  std::optional<contact_state> load(std::string_view contact) override;
  void save(std::span<contact_state> states) override;
  /// Lends states only inside an explicit transaction (durable_engine's), never read-only:
  /// the engine then evaluates them in place. If the batch fails, abandon() marks the
  /// transaction as failed (every call but rollback() then throws sqlite_error) and
  /// rollback() empties the in-memory table, which the next use reads again from the database
  /// (the committed states; a second or so per 100 MB of database, only after a failure).
  contact_state* lend(std::string_view contact) override;
  void abandon() noexcept override;
  std::vector<std::string> due(time_point t) override;
  std::vector<std::string> contacts() override;
  /// Moves the database to `next` (engine::change_program has migrated the states; call it in
  /// the same transaction): records its fingerprint, and reads records against it from now on.
  /// `next` must outlive the store.
  void change_program(const nudge::program& next);

  /// Explicit transactions (not nested). rollback() never throws.
  virtual void begin();
  virtual void commit();
  void rollback() noexcept;
  bool in_transaction() const noexcept { return in_transaction_; }

  /// Appends external (and notify) actions to the outbox; a key already there is kept once.
  virtual void add_to_outbox(std::span<const due_action> actions);
  /// Up to `limit` undelivered actions, oldest first.
  std::vector<outbox_entry> outbox(std::size_t limit = SIZE_MAX);
  std::size_t outbox_size();
  /// Marks every entry with sequence <= `last` delivered (they leave the outbox).
  virtual void remove_from_outbox(std::int64_t last);

  /// The deliverer's mark (delivery_log::through, nudge deliver): every outbox entry up to this
  /// sequence was delivered or parked by it; 0 if none.
  std::int64_t delivery_mark();
  /// Writers: removes from the outbox every entry up to delivery_mark() (one transaction, as
  /// remove_from_outbox). Returns how many entries that mark delivered since the last trim.
  std::size_t trim_delivered();

  /// Host entries in the meta table (e.g. how far an events file was read).
  std::optional<std::string> get_meta(std::string_view key);
  void put_meta(std::string_view key, std::string_view text);

  /// Reads one meta entry of the database at `path`, without a program (e.g. the rule file a
  /// host stored there), its checksum checked. nullopt if the entry is absent. Refuses a file
  /// that is not a nudge database of this schema version. Read-only unless `recover`: then the
  /// connection may write, so that SQLite can roll back a transaction a killed process left
  /// behind (a read-only connection reports such a database as locked); it writes nothing else.
  /// @throws sqlite_error if the database cannot be opened or read.
  static std::optional<std::string> read_meta(const std::string& path, std::string_view key,
                                              bool recover = false);

  /// Checks the database at `path` without a program and without writing: SQLite's
  /// integrity_check, every row against its checksum, and the rows against `nudge.rows`;
  /// reports every problem rather than stopping at the first. (State and outbox records are
  /// checked against the rules only by opening a store with them.)
  /// @throws sqlite_error if the file cannot be opened or is not a nudge database of this
  ///   schema version (the message says which).
  static sqlite_check_report check(const std::string& path);

  /// Engine statistics and counters as of the last commit (empty before the first).
  std::optional<std::pair<std::vector<rule_stats>, round_robin_counters>> engine_state();
  /// Workflow statistics as of the last commit (empty before the first).
  std::vector<workflow_stats> engine_workflow_stats();
  void put_engine_state(const std::vector<rule_stats>& stats, const round_robin_counters& counters,
                        const std::vector<workflow_stats>& workflows = {});

  /// Number of contacts stored.
  std::size_t size();
  const std::string& path() const noexcept { return path_; }
  const nudge::program& program() const noexcept { return *program_; }

 private:
  friend class durable_engine;
  friend class delivery_log;  // opens the database with the store's checks (delivery_log.hpp)
  void check_not_abandoned() const;
  void ensure_current();

  struct impl;
  std::unique_ptr<impl> impl_;
  std::string path_;
  const nudge::program* program_;
  bool in_transaction_ = false;
};

/// The sink failed after the batch was committed: its state and actions are safe in the
/// database, the actions wait in the outbox. Call durable_engine::deliver_pending to retry;
/// do not process the batch again. nested_exception holds the sink's exception.
class delivery_error : public std::runtime_error, public std::nested_exception {
 public:
  explicit delivery_error(const std::string& what) : std::runtime_error(what) {}
};

/// An engine on a sqlite_store whose batches are durable: each process() runs the engine inside
/// one transaction that also writes the due actions to the outbox, the statistics and counters,
/// and any `meta` entries; then delivers the outbox to the sink and deletes what it accepted.
///
/// Failures: if the store fails, the transaction is rolled back and the engine is as before
/// (process the batch again). If the sink fails, process throws delivery_error after the commit
/// (call deliver_pending later). Either way nothing is lost and nothing is applied twice.
class durable_engine {
 public:
  /// Restores statistics and counters from the database. `sink` may be null (actions then stay
  /// in the outbox until a sink takes them through deliver_pending).
  durable_engine(std::shared_ptr<const nudge::program> program, sqlite_store& store,
                 nudge::sink* sink, engine_options options = {});

  /// Processes one batch durably (see the class comment); returns the number of actions the
  /// batch added to the outbox.
  /// @throws what engine::process throws (nothing committed), sqlite_error (nothing committed),
  ///   delivery_error (committed, not delivered).
  std::size_t process(std::span<const event> events, time_point now,
                      std::span<const std::pair<std::string, std::string>> meta = {});
  std::size_t advance(time_point now) { return process({}, now); }
  /// engine::change_program in one transaction that also moves the database to `next` (its
  /// fingerprint, a checkpoint of the migrated states), the statistics and any `meta` entries.
  /// Deliver the outbox first (deliver_pending): its entries name workflow steps by position.
  /// @throws what engine::change_program throws (nothing changed), sqlite_error (the database is
  ///   unchanged; if the engine had already taken `next`, open a new durable_engine).
  void change_program(std::shared_ptr<const nudge::program> next, time_point at,
                      std::span<const std::pair<std::string, std::string>> meta = {});
  /// Creates or replaces profiles in one transaction, without evaluating them
  /// (engine::upsert_contacts).
  void upsert_contacts(std::span<const contact> contacts);
  /// engine::upsert_contacts at instant `at`, durably as process() is: the new states, the due
  /// actions into the outbox, statistics and `meta` in one transaction, then delivered. Returns
  /// the number of actions added to the outbox; throws as process().
  std::size_t upsert_contacts(std::span<const contact> contacts, time_point at,
                              std::span<const std::pair<std::string, std::string>> meta = {});

  /// Delivers the outbox to the sink in batches of up to `batch` actions, deleting each batch
  /// once the sink accepted it. Returns the number delivered.
  /// @throws delivery_error if the sink throws, or the outbox cannot be cleared after it
  ///   accepted (those actions are delivered again later, with their idempotency keys).
  std::size_t deliver_pending(std::size_t batch = 10'000);

  /// With `on`, delivery hands actions to the sink but leaves them in the outbox until trim():
  /// for a sink that makes its output durable in groups (nudge run fsyncs --out once per group of
  /// batches rather than per batch). This engine remembers what the sink accepted and never hands
  /// it again; a crash before trim() delivers it again, with the same idempotency keys, from the
  /// next engine on the database. Trim before change_program (outbox entries name workflow
  /// steps by position). Off by default: each delivery trims at once.
  void defer_trim(bool on) noexcept { defer_trim_ = on; }
  /// Marks delivered (deletes from the outbox, in one transaction) every action the sink accepted
  /// so far. Make the sink's output durable first: a trimmed action is never delivered again.
  /// @throws delivery_error (nested: the store's error) if the outbox cannot be written; the
  ///   actions stay in it and untrimmed() still counts them.
  void trim();
  /// Actions the sink accepted that are still in the outbox (waiting for trim()).
  std::size_t untrimmed() const;

  nudge::engine& engine() noexcept { return engine_; }
  sqlite_store& store() noexcept { return store_; }

 private:
  // One durable batch around `evaluate` (an engine call returning the due actions).
  std::size_t commit_batch(const std::function<std::vector<due_action>()>& evaluate,
                           std::span<const std::pair<std::string, std::string>> meta);
  // Hands `actions` to the sink, then marks the outbox delivered through `last_sequence` (or,
  // with defer_trim, remembers that the sink has them).
  void deliver(std::span<const due_action> actions, std::int64_t last_sequence);

  sqlite_store& store_;
  nudge::sink* sink_;
  nudge::engine engine_;
  std::uint64_t generation_ = 0;  ///< the store's state generation the statistics are from
  bool defer_trim_ = false;
  std::int64_t handed_through_ = 0;  ///< the sink accepted the outbox up to this sequence
};

}  // namespace nudge
