// sqlite_store::impl: the open database, its prepared statements, the in-memory states and
// the open transaction's pending changes, with the reads and writes the store's parts share
// (open.cpp, sqlite_store.cpp, outbox.cpp, check.cpp). Private: not installed.
// The SQLite store, its outbox, and durable_engine.
//
// Layout (schema version 7, docs/live.md): the authoritative contact states live in memory (a
// memory_store); the database is their durable journal. A save appends ONE row to `journal`
// holding every state of the call (snapshot codec records, zero runs coded), so a batch writes a
// few sequential pages at the end of the file instead of one random B-tree page per contact. When
// the journal outgrows the checkpoint, a commit rewrites `checkpoint` from memory and empties
// `journal` in the same transaction. Opening reads the checkpoint, then the journal in order.
// Every row carries a checksum and meta `nudge.rows` counts the rows (docs/live.md,
// "Integrity"); one writer at a time holds an flock on "<db>.lock".
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>

#include <boost/unordered/unordered_flat_map.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <nudge/error.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>

#include "core/engine/state_table.hpp"
#include "io/sqlite/handles.hpp"
#include "io/sqlite/row_codec.hpp"
#include "io/sqlite/schema.hpp"
#include "io/sqlite/writer_lock.hpp"

namespace nudge {

// The store's parts were one file: its helpers are used unqualified, as they were there.
using namespace sqlite_detail;  // NOLINT(google-build-using-namespace)

struct sqlite_store::impl {
  writer_lock lock;  ///< held by a writer (closed after the connection: declared first)
  sqlite3* db = nullptr;
  std::string path;
  const nudge::program* program = nullptr;
  sqlite_options options;
  std::uint64_t fingerprint = 0;
  statement begin, commit, rollback, get_meta, put_meta, read_all_meta, count_meta, data_version,
      read_checkpoint, read_journal, add_journal, clear_journal, clear_checkpoint, add_checkpoint,
      read_outbox, add_outbox, trim_outbox, sync_normal, sync_configured;
  row_counts rows;  ///< as of the last commit (or load)
  /// nudge.schema_version as opened: 7 (no deliverer's tables: a writer adds them at open) or 8.
  std::string version_read;

  // Committed state, as of the last commit (or load). Lent states are not backed up: a
  // rollback after lending re-reads the database, which holds exactly the committed states.
  detail::state_table states{{.back_up_lent = false, .index_segments = false}};
  bool loaded = false;
  /// A batch failed after states were lent (store::abandon): the open transaction must be
  /// rolled back before anything else.
  bool abandoned = false;
  std::uint64_t generation = 0;  ///< counts load_all() calls (durable_engine re-reads statistics)
  /// change_program in the open transaction: the program it takes on commit. The commit then
  /// also writes a checkpoint, so no journal record of the old program is read against the new.
  const nudge::program* pending_program = nullptr;
  std::int64_t version_seen = -1;  ///< PRAGMA data_version when `states` was last in sync
  std::size_t checkpoint_bytes = 0;
  std::size_t journal_bytes = 0;
  std::int64_t next_seq = 1;  ///< sequence of the next outbox entry
  /// Keys of committed, undelivered outbox entries by sequence (for "a key is kept once").
  std::vector<std::pair<std::int64_t, std::uint64_t>> undelivered;
  std::size_t undelivered_begin = 0;
  boost::unordered_flat_map<std::uint64_t, char> undelivered_keys;

  // The open transaction's changes, applied to the members above on commit.
  std::size_t pending_journal_bytes = 0;
  std::int64_t pending_journal_rows = 0;
  std::optional<std::int64_t> pending_checkpoint_parts;  ///< a new checkpoint of this many parts
  bool pending_meta = false;                             ///< meta rows written
  std::optional<row_counts> pending_rows;                ///< `nudge.rows` as written by commit
  std::int64_t pending_next_seq = 1;
  std::vector<std::pair<std::int64_t, std::uint64_t>> pending_outbox;
  boost::unordered_flat_map<std::uint64_t, char> pending_keys;
  std::optional<std::int64_t> pending_delivered;
  std::string scratch;
  std::string record_scratch;  ///< one state record, encoded or decoded

  ~impl() {
    // Statements must be finalized before the connection closes.
    begin = {}, commit = {}, rollback = {}, get_meta = {}, put_meta = {}, read_all_meta = {},
    count_meta = {}, data_version = {}, read_checkpoint = {}, read_journal = {}, add_journal = {},
    clear_journal = {}, clear_checkpoint = {}, add_checkpoint = {}, read_outbox = {},
    add_outbox = {}, trim_outbox = {}, sync_normal = {}, sync_configured = {};
    sqlite3_close_v2(db);
  }

  [[noreturn]] void fail(std::string_view doing) const {
    throw sqlite_error(
        fmt::format("{}: cannot {}: {}{}", path, doing, sqlite3_errmsg(db), system_reason()));
  }
  // The operating system's reason behind an I/O failure, e.g. " (Permission denied)", after
  // SQLite's own ("disk I/O error" says nothing of it); empty for other failures. (SQLite
  // reports a full disk as SQLITE_FULL, "database or disk is full", without an errno.)
  std::string system_reason() const {
    const int code = sqlite3_errcode(db) & 0xff;
    const int error = sqlite3_system_errno(db);
    if (error == 0 || (code != SQLITE_IOERR && code != SQLITE_CANTOPEN && code != SQLITE_FULL &&
                       code != SQLITE_READONLY && code != SQLITE_PERM)) {
      return {};
    }
    return fmt::format(" ({})", std::strerror(error));
  }
  // Damage found by a checksum or by the row counts: refused, never used.
  [[noreturn]] void damaged(std::string_view what) const {
    throw sqlite_error(fmt::format(
        "{}: {}: the database is damaged and was not used (nudge db check {} lists every "
        "damaged record; restore the file from a backup, or replay the events into a new "
        "database)",
        path, what, path));
  }
  void verify(row_kind kind, std::string_view row, std::string_view key, std::string_view blob,
              std::int64_t sum) const {
    if (row_sum(kind, key, blob) != sum) {
      damaged(fmt::format(
          "{} {} fails its checksum{}", row_kind_name(kind), row,
          kind == row_kind::meta ? std::string{} : contacts_named(kind == row_kind::outbox, blob)));
    }
  }
  void exec(const char* sql, std::string_view doing) const {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
      fail(doing);
    }
  }
  void step_done(sqlite3_stmt* s, std::string_view doing) const {
    if (sqlite3_step(s) != SQLITE_DONE) {
      fail(doing);
    }
  }
  statement prepare(std::string_view sql) const { return statement{db, sql, path}; }

  // Several reads as one: inside the open transaction, or else inside a read transaction of
  // their own, so that they all see the same commit, never part of one batch and part of the
  // next (a reader beside a writing process). Declare it before the statements' `use`s.
  class read_scope {
   public:
    explicit read_scope(const impl& d) : d_(d), own_(sqlite3_get_autocommit(d.db) != 0) {
      if (own_) {
        d.exec("BEGIN", "begin a read transaction");
      }
    }
    ~read_scope() {
      if (own_) {
        sqlite3_exec(d_.db, "ROLLBACK", nullptr, nullptr, nullptr);  // it wrote nothing
      }
    }
    read_scope(const read_scope&) = delete;
    read_scope& operator=(const read_scope&) = delete;

   private:
    const impl& d_;
    bool own_;
  };

  std::optional<std::string> meta(std::string_view key) const {
    use s{get_meta};
    bind_text(*s, 1, key);
    const int rc = sqlite3_step(*s);
    if (rc == SQLITE_DONE) {
      return std::nullopt;
    }
    if (rc != SQLITE_ROW) {
      fail(fmt::format("read meta \"{}\"", key));
    }
    const auto text = column_blob(*s, 0);
    verify(row_kind::meta, fmt::format("\"{}\"", key), key, text, sqlite3_column_int64(*s, 1));
    return std::string{text};
  }
  void write_meta(std::string_view key, std::string_view text) {
    use s{put_meta};
    bind_text(*s, 1, key);
    bind_blob(*s, 2, text);
    sqlite3_bind_int64(*s, 3, row_sum(row_kind::meta, key, text));
    step_done(*s, fmt::format("write meta \"{}\"", key));
  }

  // SQLite's WAL hook, after each commit: checkpoints (without waiting for readers) once the
  // log holds more than both wal_floor_bytes and the database file, or wal_ceiling_bytes.
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int frames) {
    const auto& d = *static_cast<const impl*>(self);
    const auto bytes = static_cast<std::uint64_t>(frames) * (16384 + 24);
    if (bytes < wal_floor_bytes) {
      return SQLITE_OK;
    }
    std::error_code ec;
    const auto size = std::filesystem::file_size(d.path, ec);
    if (ec || bytes >= size || bytes >= wal_ceiling_bytes) {
      // A failed checkpoint is retried at the next commit; the log stays valid meanwhile.
      sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    }
    return SQLITE_OK;
  }

  // One integer from `sql`, a query of one row.
  std::int64_t query_int(const char* sql, std::string_view doing) const {
    statement s{db, sql, path};
    if (sqlite3_step(s.get()) != SQLITE_ROW) {
      fail(doing);
    }
    return sqlite3_column_int64(s.get(), 0);
  }

  // Refuses, before anything is written, a file that is not a nudge database of this schema
  // version: another application's database, an empty file, an older or newer schema. Then
  // prepares get_meta.
  void check_identity() {
    // The first read of the file: a file that is not SQLite's fails here.
    const auto id = query_int("PRAGMA application_id", "open (read the header)");
    if (id != application_id) {
      const auto tables = query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                                    "open (read the "
                                    "schema)");
      if (id == 0 && tables == 0) {
        std::error_code ec;
        const auto size = std::filesystem::file_size(path, ec);
        throw sqlite_error(fmt::format(
            "{}: not a nudge database: {}. nudge writes a new database beside its place and then "
            "renames it there, so such a file is none of its own (an older nudge killed while "
            "creating one left it): remove the file to start a new database",
            path, !ec && size == 0 ? "the file is empty (0 bytes)" : "it has no tables"));
      }
      std::optional<std::string> version;
      if (id == 0 && query_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                               "name = 'meta'",
                               "open (read the schema)") == 1) {
        // Versions 1 to 5 had no application id; their meta table had no checksums.
        statement v{db, "SELECT value FROM meta WHERE key = 'nudge.schema_version'", path};
        if (sqlite3_step(v.get()) == SQLITE_ROW) {
          version = std::string{column_blob(v.get(), 0)};
        }
      }
      if (!version) {
        throw sqlite_error(fmt::format(
            "{}: not a nudge database (its application id is {:#x}, nudge's {:#x}): refused, "
            "left as it was",
            path, id, application_id));
      }
      refuse_version(*version);
    }
    get_meta = prepare("SELECT value, sum FROM meta WHERE key = ?1");
    const auto version = meta("nudge.schema_version");
    if (!version) {
      damaged("meta \"nudge.schema_version\" is missing");
    }
    if (*version != schema_version && *version != schema_version_7) {
      refuse_version(*version);
    }
    version_read = *version;
  }
  // Schema version 7 to 8 in one transaction: the deliverer's tables and the version (an
  // existing meta row, so `nudge.rows` stays right). Idempotent; any writer may run it (the
  // store's writer at open, or a deliverer).
  void add_delivery_tables() {
    exec("BEGIN IMMEDIATE", "upgrade to schema version 8 (begin)");
    try {
      exec(std::string{create_delivery_tables}.c_str(), "upgrade to schema version 8");
      statement s = prepare("INSERT OR REPLACE INTO meta(key, value, sum) VALUES(?1, ?2, ?3)");
      constexpr std::string_view key = "nudge.schema_version";
      bind_text(s.get(), 1, key);
      bind_blob(s.get(), 2, schema_version);
      sqlite3_bind_int64(s.get(), 3, row_sum(row_kind::meta, key, schema_version));
      step_done(s.get(), "upgrade to schema version 8");
      exec("COMMIT", "upgrade to schema version 8 (commit)");
    } catch (...) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
    version_read = schema_version;
  }
  [[noreturn]] void refuse_version(std::string_view version) const {
    // Checked before anything is written: an old database is left exactly as it was.
    throw sqlite_error(fmt::format(
        "{}: database schema version {}, this build reads versions 7 and {} (versions 1 and 2 "
        "kept one row per contact, 3 stored state records uncoded, 4 states without the "
        "delivery policy, 5 states without workflow completion counts and locations, 6 rows "
        "without checksums; there is no conversion: replay the events into a new database)",
        path, version, schema_version));
  }

  // `nudge.rows`, and every meta row checked against its checksum and counted.
  row_counts read_row_counts() const {
    const auto text = meta(meta_rows);
    if (!text) {
      damaged(fmt::format("meta \"{}\" (the row counts) is missing", meta_rows));
    }
    const auto counts = row_counts::parse(*text);
    if (!counts) {
      damaged(fmt::format("meta \"{}\" is unreadable: \"{}\"", meta_rows, *text));
    }
    std::int64_t n = 0;
    use s{read_all_meta};
    int rc;
    while ((rc = sqlite3_step(*s)) == SQLITE_ROW) {
      const auto key = column_blob(*s, 0);
      verify(row_kind::meta, fmt::format("\"{}\"", key), key, column_blob(*s, 1),
             sqlite3_column_int64(*s, 2));
      ++n;
    }
    if (rc != SQLITE_DONE) {
      fail("read the meta table");
    }
    if (n != counts->meta) {
      damaged(fmt::format("the meta table has {} rows, {} were written", n, counts->meta));
    }
    return *counts;
  }

  // The sequence the outbox rows must end at, outside a transaction (inside one, `nudge.rows`
  // is rewritten only at commit).
  std::optional<std::int64_t> expected_outbox_next() const {
    if (sqlite3_get_autocommit(db) == 0) {
      return std::nullopt;
    }
    return read_row_counts().outbox_next;
  }

  std::int64_t current_data_version() const {
    use s{data_version};
    if (sqlite3_step(*s) != SQLITE_ROW) {
      fail("read the data version");
    }
    return sqlite3_column_int64(*s, 0);
  }

  std::int64_t delivered_through() const {
    const auto text = meta(meta_delivered);
    if (!text) {
      return 0;
    }
    try {
      return std::stoll(*text);
    } catch (const std::exception&) {
      throw sqlite_error(
          fmt::format("{}: meta \"{}\" is corrupt: \"{}\"", path, meta_delivered, *text));
    }
  }

  // Decodes a row of length-prefixed state records and saves them into `states`.
  void load_states(std::string_view bytes, std::string_view row) {
    payload p{bytes};
    while (!p.done()) {
      const auto at = p.pos();
      std::string_view record;
      if (!p.str(record)) {
        throw sqlite_error(
            fmt::format("{}: {} is corrupt: truncated state record at byte {}", path, row, at));
      }
      record_scratch.clear();
      if (!get_zero_runs(record, record_scratch)) {
        throw sqlite_error(fmt::format(
            "{}: {} is corrupt: broken zero run in the state record at byte {}", path, row, at));
      }
      try {
        states.put(decode_contact_state(record_scratch, program));
      } catch (const snapshot_error& e) {
        throw sqlite_error(
            fmt::format("{}: {}, state record at byte {}: {}", path, row, at, e.what()));
      }
    }
    states.commit();  // drops the replaced versions
  }

  // Decodes one outbox row (its checksum checked); calls visit(entry) for each entry with a
  // sequence > `after`, until visit returns false.
  template <class Visit>
  bool decode_outbox(std::int64_t first, std::int64_t count, std::string_view bytes,
                     std::int64_t after, Visit&& visit) const {
    payload p{bytes};
    for (std::int64_t i = 0; i < count; ++i) {
      outbox_entry e;
      e.sequence = first + i;
      std::uint64_t key = 0, due = 0;
      std::uint32_t rule = 0, action = 0, kind = 0;
      std::string_view contact, arg;
      if (!p.u64(key) || !p.u64(due) || !p.u32(rule) || !p.u32(action) || !p.u32(kind) ||
          !p.str(contact) || !p.str(arg)) {
        throw sqlite_error(fmt::format("{}: outbox entry {} is corrupt (truncated at byte {})",
                                       path, e.sequence, p.pos()));
      }
      // A workflow step's action has the top bit of `rule` set: workflow index, step index.
      const bool from_workflow = (rule & workflow_flag) != 0;
      const std::uint32_t index = rule & ~workflow_flag;
      const auto& rs = program->rules();
      const bool fits =
          from_workflow ? index < rs.workflows.size() &&
                              action < program->compiled().workflows[index].steps.size()
                        : index < program->rule_count() && action < rs.rules[index].actions.size();
      if (!fits || kind > static_cast<std::uint32_t>(action_kind::remove_from_group)) {
        throw sqlite_error(
            fmt::format("{}: outbox entry {} is corrupt (rule {}, action {}, kind {})", path,
                        e.sequence, rule, action, kind));
      }
      // The range the snapshot codec checks for the states' times (nudge/time.hpp).
      if (const auto t = from_epoch(static_cast<std::int64_t>(due)); t < min_time || t > max_time) {
        throw sqlite_error(
            fmt::format("{}: outbox entry {} is corrupt (due time {} is outside the supported "
                        "range)",
                        path, e.sequence, static_cast<std::int64_t>(due)));
      }
      if (e.sequence <= after) {
        continue;
      }
      e.contact = contact;
      e.ts = from_epoch(static_cast<std::int64_t>(due));
      e.rule_index = index;
      e.action_index = action;
      e.workflow = from_workflow;
      e.kind = static_cast<action_kind>(kind);
      e.arg = arg;
      e.idempotency_key = key;
      if (!visit(std::move(e))) {
        return false;
      }
    }
    if (!p.done()) {
      throw sqlite_error(fmt::format("{}: outbox row {} is corrupt ({} bytes after its {} entries)",
                                     path, first, bytes.size() - p.pos(), count));
    }
    return true;
  }

  // Visits undelivered entries in sequence order (see decode_outbox); returns the sequence of
  // the next entry (if visit never stopped the scan). Every row's checksum is checked, and that
  // the rows follow each other from the first undelivered entry; `expected_next`, if given, is
  // the sequence the rows must end at (`nudge.rows`).
  template <class Visit>
  std::int64_t scan_outbox(Visit&& visit, std::optional<std::int64_t> expected_next) const {
    const auto delivered = delivered_through();
    use s{read_outbox};
    std::int64_t next = delivered + 1;
    bool first_row = true;
    int rc;
    while ((rc = sqlite3_step(*s)) == SQLITE_ROW) {
      const std::int64_t first = sqlite3_column_int64(*s, 0);
      const std::int64_t count = sqlite3_column_int64(*s, 1);
      const auto bytes = column_blob(*s, 2);
      verify(row_kind::outbox, std::to_string(first), int_key(first, count), bytes,
             sqlite3_column_int64(*s, 3));
      if (first_row ? first > next : first != next) {
        damaged(fmt::format("outbox entries {} to {} are missing", next, first - 1));
      }
      first_row = false;
      next = std::max(next, first + count);
      if (first + count <= delivered + 1) {
        continue;  // wholly delivered (kept only by a database written before trimming)
      }
      if (!decode_outbox(first, count, bytes, delivered, visit)) {
        return -1;
      }
    }
    if (rc != SQLITE_DONE) {
      fail("read the outbox");
    }
    if (expected_next && next != *expected_next) {
      damaged(next < *expected_next
                  ? fmt::format("outbox entries {} to {} are missing", next, *expected_next - 1)
                  : fmt::format("the outbox goes to entry {}, {} were written", next - 1,
                                *expected_next - 1));
    }
    return next;
  }

  // Loads the states of every row `query` returns (key, states blob, checksum), in order, after
  // checking its checksum and that the keys run first_key, first_key + 1, ... for `rows` rows;
  // returns the bytes read. Errors name the row as "<kind> <key>".
  std::size_t read_state_rows(const statement& query, row_kind kind, std::int64_t first_key,
                              std::int64_t rows_written, std::string_view doing) {
    std::size_t total = 0;
    std::int64_t next = first_key;
    use s{query};
    int rc;
    while ((rc = sqlite3_step(*s)) == SQLITE_ROW) {
      const std::int64_t key = sqlite3_column_int64(*s, 0);
      const auto bytes = column_blob(*s, 1);
      const auto row = fmt::format("{} {}", row_kind_name(kind), key);
      verify(kind, std::to_string(key), int_key(key), bytes, sqlite3_column_int64(*s, 2));
      if (key != next) {
        damaged(fmt::format("{} {} is missing", row_kind_name(kind), next));
      }
      ++next;
      total += bytes.size();
      load_states(bytes, row);
    }
    if (rc != SQLITE_DONE) {
      fail(doing);
    }
    if (next - first_key < rows_written) {
      damaged(fmt::format("{} {} is missing", row_kind_name(kind), next));
    }
    if (next - first_key > rows_written) {
      damaged(fmt::format("{} {} is beyond the {} written", row_kind_name(kind), next - 1,
                          rows_written));
    }
    return total;
  }

  // (Re)reads the committed state: checkpoint, then journal, then the outbox's position.
  void load_all() {
    const read_scope snapshot{*this};
    states.clear();
    loaded = false;
    checkpoint_bytes = 0;
    journal_bytes = 0;
    rows = read_row_counts();
    checkpoint_bytes = read_state_rows(read_checkpoint, row_kind::checkpoint, 0, rows.checkpoint,
                                       "read the checkpoint");
    journal_bytes =
        read_state_rows(read_journal, row_kind::journal, 1, rows.journal, "read the journal");
    undelivered.clear();
    undelivered_begin = 0;
    undelivered_keys.clear();
    next_seq = scan_outbox(
        [&](outbox_entry&& e) {
          undelivered.emplace_back(e.sequence, e.idempotency_key);
          undelivered_keys.emplace(e.idempotency_key, 0);
          return true;
        },
        rows.outbox_next);
    version_seen = current_data_version();
    loaded = true;
    ++generation;
  }

  void clear_pending() noexcept {
    pending_program = nullptr;
    // (clear() on an empty open-addressing map still sweeps its slots)
    pending_journal_bytes = 0;
    pending_journal_rows = 0;
    pending_checkpoint_parts.reset();
    pending_meta = false;
    pending_rows.reset();
    pending_next_seq = next_seq;
    pending_outbox.clear();
    if (!pending_keys.empty()) {
      pending_keys.clear();
    }
    pending_delivered.reset();
  }

  // Rewrites `nudge.rows` in the open transaction if its changes change the counts.
  void write_row_counts() {
    if (pending_journal_rows == 0 && !pending_checkpoint_parts && pending_next_seq == next_seq &&
        !pending_meta) {
      return;
    }
    row_counts c = rows;
    if (pending_checkpoint_parts) {
      c.checkpoint = *pending_checkpoint_parts;
      c.journal = 0;
    } else {
      c.journal += pending_journal_rows;
    }
    c.outbox_next = pending_next_seq;
    if (pending_meta) {
      use s{count_meta};
      if (sqlite3_step(*s) != SQLITE_ROW) {
        fail("count the meta rows");
      }
      c.meta = sqlite3_column_int64(*s, 0);
    }
    if (c.checkpoint != rows.checkpoint || c.journal != rows.journal ||
        c.outbox_next != rows.outbox_next || c.meta != rows.meta) {
      write_meta(meta_rows, c.text());
      pending_rows = c;
    }
  }

  // Writes a new checkpoint of the states (the open transaction's included) and empties the
  // journal, inside the open transaction. Returns the checkpoint's size in bytes.
  std::size_t write_checkpoint() {
    {
      use s{clear_journal};
      step_done(*s, "compact the journal");
    }
    {
      use s{clear_checkpoint};
      step_done(*s, "compact the journal (drop the old checkpoint)");
    }
    std::size_t total = 0;
    std::int64_t part = 0;
    scratch.clear();
    const auto flush = [&] {
      use s{add_checkpoint};
      sqlite3_bind_int64(*s, 1, part);
      bind_blob(*s, 2, scratch);
      sqlite3_bind_int64(*s, 3, row_sum(row_kind::checkpoint, int_key(part), scratch));
      ++part;
      step_done(*s, "compact the journal (write the checkpoint)");
      total += scratch.size();
      scratch.clear();
    };
    const auto add = [&](const contact_state& st) {
      put_state(scratch, st, record_scratch);
      if (scratch.size() >= checkpoint_part_bytes) {
        flush();
      }
    };
    for (const auto& st : states.states()) {
      add(st);
    }
    if (!scratch.empty()) {
      flush();
    }
    pending_checkpoint_parts = part;
    return total;
  }
};

}  // namespace nudge
