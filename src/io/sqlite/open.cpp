// Opening a nudge database: creating it whole (written beside, synced, renamed into place),
// taking the writer lock, checking its identity and program, preparing the statements.
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

#include "io/sqlite/impl.hpp"

namespace nudge {

namespace {

constexpr std::string_view create_tables =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL, sum INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE checkpoint(part INTEGER PRIMARY KEY, states BLOB NOT NULL,"
    " sum INTEGER NOT NULL);"
    "CREATE TABLE journal(batch INTEGER PRIMARY KEY, states BLOB NOT NULL, sum INTEGER NOT NULL);"
    "CREATE TABLE outbox(first_seq INTEGER PRIMARY KEY, count INTEGER NOT NULL,"
    " actions BLOB NOT NULL, sum INTEGER NOT NULL);";
// (and create_delivery_tables, schema.hpp)

// fsync(2) of a file or directory; false with errno set on failure.
bool sync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  const bool ok = ::fsync(fd) == 0;
  const int error = errno;
  ::close(fd);
  errno = error;
  return ok;
}

// Creates the database whole: written to "<path>.creating", synced, then renamed into place,
// so that no kill or power loss can leave a partial database at `path` for a later open to
// mistake for a new one. The caller holds the writer lock.
void create_database(const std::string& path, const std::string& fingerprint) {
  const std::string tmp = path + ".creating";
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    ::unlink((tmp + suffix).c_str());  // what a killed creation left
  }
  connection db;
  const auto fail = [&](std::string_view doing) {
    throw sqlite_error(fmt::format("{}: cannot create ({} {}): {}", path, doing, tmp,
                                   db.get() ? sqlite3_errmsg(db.get()) : "out of memory"));
  };
  if (sqlite3_open_v2(tmp.c_str(), &db.ref(), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      nullptr) != SQLITE_OK) {
    fail("open");
  }
  sqlite3_extended_result_codes(db.get(), 1);
  // 16 KiB pages: a batch appends a blob of some 100 KiB, in a quarter of the WAL frames (and
  // system calls) 4 KiB pages take. Only a new database takes the setting.
  const std::string setup = fmt::format(
      "PRAGMA page_size=16384; PRAGMA application_id={}; PRAGMA synchronous=FULL;", application_id);
  if (sqlite3_exec(db.get(), setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK ||
      sqlite3_exec(db.get(), std::string{create_tables}.c_str(), nullptr, nullptr, nullptr) !=
          SQLITE_OK ||
      sqlite3_exec(db.get(), std::string{create_delivery_tables}.c_str(), nullptr, nullptr,
                   nullptr) != SQLITE_OK) {
    fail("write");
  }
  sqlite3_stmt* insert = nullptr;
  if (sqlite3_prepare_v2(db.get(), "INSERT INTO meta(key, value, sum) VALUES(?1, ?2, ?3)", -1,
                         &insert, nullptr) != SQLITE_OK) {
    fail("write");
  }
  const std::pair<std::string_view, std::string> rows[] = {
      {"nudge.schema_version", std::string{schema_version}},
      {"nudge.program_fingerprint", fingerprint},
      {meta_rows, row_counts{}.text()}};
  bool ok = true;
  for (const auto& [key, value] : rows) {
    bind_text(insert, 1, key);
    bind_blob(insert, 2, value);
    sqlite3_bind_int64(insert, 3, row_sum(row_kind::meta, key, value));
    ok = ok && sqlite3_step(insert) == SQLITE_DONE;
    sqlite3_reset(insert);
  }
  sqlite3_finalize(insert);
  if (!ok || sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    fail("write");
  }
  if (sqlite3_close(db.release()) != SQLITE_OK) {
    throw sqlite_error(fmt::format("{}: cannot create (close {})", path, tmp));
  }
  auto dir = std::filesystem::path{path}.parent_path().string();
  if (dir.empty()) {
    dir = ".";
  }
  if (!sync_path(tmp, O_RDONLY) || ::rename(tmp.c_str(), path.c_str()) != 0 ||
      !sync_path(dir, O_RDONLY | O_DIRECTORY)) {
    throw sqlite_error(
        fmt::format("{}: cannot create (sync and rename {}): {}", path, tmp, std::strerror(errno)));
  }
}

}  // namespace

sqlite_store::sqlite_store(const std::string& path, const nudge::program& program,
                           sqlite_options options)
    : impl_(std::make_unique<impl>()), path_(path), program_(&program) {
  impl& d = *impl_;
  d.path = path;
  d.program = &program;
  d.options = options;
  d.fingerprint = program_fingerprint(program);
  const auto fingerprint = fmt::format("{:016x}", d.fingerprint);
  if (!options.read_only) {
    d.lock = writer_lock{path};  // before anything is written, the file's creation included
    std::error_code ec;
    if (!std::filesystem::exists(path, ec) && !ec) {
      create_database(path, fingerprint);
    }
  }
  const int flags = options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (sqlite3_open_v2(path.c_str(), &d.db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  sqlite3_busy_timeout(d.db, 5000);
  // SQLite then checks each B-tree cell's size as it reads it: damage to its own pages is
  // more often refused as "malformed" instead of read.
  d.exec("PRAGMA cell_size_check=ON", "open (set cell_size_check)");
  d.check_identity();
  if (auto theirs = d.meta("nudge.program_fingerprint"); theirs != fingerprint) {
    throw sqlite_error(fmt::format(
        "{}: database written for program fingerprint {}, the loaded rules have fingerprint {} "
        "(a database only opens with the rule program that wrote it)",
        path, theirs.value_or("(none)"), fingerprint));
  }
  const char* sync = options.synchronous == sqlite_sync::off      ? "PRAGMA synchronous=OFF"
                     : options.synchronous == sqlite_sync::normal ? "PRAGMA synchronous=NORMAL"
                                                                  : "PRAGMA synchronous=FULL";
  if (!options.read_only) {
    d.exec("PRAGMA journal_mode=WAL", "open (set WAL mode)");
    if (d.version_read == schema_version_7) {
      d.add_delivery_tables();  // schema 8: the deliverer's tables (delivery_log.hpp)
    }
    d.exec(sync, "open (set synchronous)");
    if (options.max_pages != 0) {
      d.exec(fmt::format("PRAGMA max_page_count={}", options.max_pages).c_str(),
             "open (set max_page_count)");
    }
    // The write-ahead log is checkpointed once it outgrows both wal_floor_bytes and the
    // database, or wal_ceiling_bytes (on_wal_commit, which replaces SQLite's fixed
    // autocheckpoint), and truncated back to wal_floor_bytes after a checkpoint: it stays within
    // about the database's size, at least 4 MiB and at most 64 MiB, plus a batch. Debian builds
    // SQLite with secure_delete on, which rewrites (and first reads) every page of a compacted
    // journal: "fast" zeroes only what costs no I/O. The cache keeps the pages a batch appends to
    // and reads back in memory.
    sqlite3_wal_hook(d.db, &impl::on_wal_commit, &d);
    d.exec(fmt::format("PRAGMA journal_size_limit={}; PRAGMA secure_delete=FAST; "
                       "PRAGMA cache_size=-32768",
                       wal_floor_bytes)
               .c_str(),
           "open (set the checkpoint policy)");
  }
  d.begin = d.prepare("BEGIN IMMEDIATE");
  d.commit = d.prepare("COMMIT");
  d.rollback = d.prepare("ROLLBACK");
  d.data_version = d.prepare("PRAGMA data_version");
  d.read_all_meta = d.prepare("SELECT key, value, sum FROM meta");
  d.count_meta = d.prepare("SELECT count(*) FROM meta");
  d.read_checkpoint = d.prepare("SELECT part, states, sum FROM checkpoint ORDER BY part");
  d.read_journal = d.prepare("SELECT batch, states, sum FROM journal ORDER BY batch");
  // Every row, delivered or not, so that each is checked (the outbox holds little).
  d.read_outbox = d.prepare("SELECT first_seq, count, actions, sum FROM outbox ORDER BY first_seq");
  if (!options.read_only) {
    d.put_meta = d.prepare("INSERT OR REPLACE INTO meta(key, value, sum) VALUES(?1, ?2, ?3)");
    d.add_journal = d.prepare("INSERT INTO journal(batch, states, sum) VALUES(?1, ?2, ?3)");
    d.clear_journal = d.prepare("DELETE FROM journal");
    d.clear_checkpoint = d.prepare("DELETE FROM checkpoint");
    d.add_checkpoint = d.prepare("INSERT INTO checkpoint(part, states, sum) VALUES(?1, ?2, ?3)");
    d.add_outbox =
        d.prepare("INSERT INTO outbox(first_seq, count, actions, sum) VALUES(?1, ?2, ?3, ?4)");
    d.trim_outbox = d.prepare("DELETE FROM outbox WHERE first_seq + count <= ?1 + 1");
    d.sync_normal = d.prepare("PRAGMA synchronous=NORMAL");
    d.sync_configured = d.prepare(sync);
    // A writer reads everything now, so that a damaged file is refused at open.
    d.load_all();
  }
}

sqlite_store::~sqlite_store() {
  if (in_transaction_) {
    rollback();
  }
  if (!impl_->options.read_only) {
    // Leave no write-ahead log behind, even when a reader keeps the file open (closing the
    // last connection would checkpoint it anyway). Best effort: the log is valid as it is.
    sqlite3_wal_checkpoint_v2(impl_->db, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  }
}

}  // namespace nudge
