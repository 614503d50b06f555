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
#define XXH_INLINE_ALL  // header-only: no library to link, for the host either
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>
#include <xxhash.h>

#include <nudge/error.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>

namespace nudge {
namespace {

// Outbox records: a workflow step's action sets this bit in its rule field.
constexpr std::uint32_t workflow_flag = 0x80000000U;

// 2 added a timeline to contact states (one row per contact); 3 keeps states in a journal;
// 4 codes zero runs in state records; 5: states carry the delivery policy's channel send logs
// and deferred timers; 6: states carry workflow completion counts and locations; 7: every row
// carries a checksum, the file an application id, and `nudge.rows` counts the rows.
constexpr std::string_view schema_version = "7";
constexpr std::string_view meta_delivered = "nudge.outbox_delivered";
constexpr std::string_view meta_rows = "nudge.rows";
// The write-ahead log is checkpointed past this size and the database's, and truncated back to
// it (see the writer's open).
constexpr std::uint64_t wal_floor_bytes = std::uint64_t{4} << 20;
// ... and always past this size (64 MiB: a large database is checkpointed as often as with
// SQLite's autocheckpoint at 4,096 pages of 16 KiB, which the live benchmarks were measured with).
constexpr std::uint64_t wal_ceiling_bytes = std::uint64_t{64} << 20;
// PRAGMA application_id of every nudge database ("nudg"): a file without it is not one.
constexpr std::int64_t application_id = 0x6E756467;
// Checkpoint rows hold about this many bytes of states each: large enough that a row costs
// little, small enough that loading never holds more than one such blob twice.
constexpr std::size_t checkpoint_part_bytes = 1U << 20;

class statement {
 public:
  statement() = default;
  statement(sqlite3* db, std::string_view sql, const std::string& path) {
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &stmt_, nullptr) != SQLITE_OK) {
      throw sqlite_error(
          fmt::format("{}: cannot prepare \"{}\": {}", path, sql, sqlite3_errmsg(db)));
    }
  }
  statement(statement&& o) noexcept : stmt_(std::exchange(o.stmt_, nullptr)) {}
  statement& operator=(statement&& o) noexcept {
    std::swap(stmt_, o.stmt_);
    return *this;
  }
  ~statement() { sqlite3_finalize(stmt_); }
  sqlite3_stmt* get() const noexcept { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// One writer per database: an exclusive flock(2) on "<db>.lock", held from before the database
// is opened (or created) until the store is destroyed. The kernel drops it when the process
// dies, however it dies, so there is never a stale lock to clean up; the file holds the
// holder's pid, host and start time only to name it in the refusal. (A lock file of its own
// rather than the database: closing any descriptor of the database would drop SQLite's own
// POSIX locks on it.)
class writer_lock {
 public:
  writer_lock() = default;
  explicit writer_lock(const std::string& db_path) {
    const std::string lock_path = db_path + ".lock";
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw sqlite_error(fmt::format("{}: cannot open the writer lock {}: {}", db_path, lock_path,
                                     std::strerror(errno)));
    }
    int rc;
    while ((rc = ::flock(fd_, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
      const int error = errno;
      std::string holder;
      if (error == EWOULDBLOCK) {
        char buf[512];
        const auto n = ::pread(fd_, buf, sizeof buf, 0);
        holder.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) {
          holder.pop_back();
        }
      }
      ::close(fd_);
      fd_ = -1;
      if (error == EWOULDBLOCK) {
        throw sqlite_error(fmt::format(
            "{}: refused: another writer has this database open ({}; lock file {}); one "
            "writer at a time: wait until it ends, or stop it (readers such as nudge outbox "
            "still work)",
            db_path, holder.empty() ? "it has not named itself yet" : holder, lock_path));
      }
      throw sqlite_error(
          fmt::format("{}: cannot lock {}: {}", db_path, lock_path, std::strerror(error)));
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
      std::strcpy(host, "?");
    }
    const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    const std::string me = fmt::format("pid {} on host {} since {}\n", ::getpid(), host,
                                       format_time(from_epoch(static_cast<std::int64_t>(now))));
    // Best effort: the lock itself is the flock, the text only names its holder.
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
      errno = 0;
    }
  }
  writer_lock(writer_lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  writer_lock& operator=(writer_lock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~writer_lock() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

 private:
  int fd_ = -1;
};

// A connection closed when it goes out of scope (unless released).
class connection {
 public:
  connection() = default;
  ~connection() { sqlite3_close_v2(db_); }
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  sqlite3* get() const noexcept { return db_; }
  sqlite3*& ref() noexcept { return db_; }
  sqlite3* release() noexcept { return std::exchange(db_, nullptr); }

 private:
  sqlite3* db_ = nullptr;
};

// Resets the statement when a use ends, however it ends.
class use {
 public:
  explicit use(const statement& s) : s_(s.get()) {}
  ~use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  sqlite3_stmt* operator*() const noexcept { return s_; }

 private:
  sqlite3_stmt* s_;
};

void bind_text(sqlite3_stmt* s, int i, std::string_view text) {
  sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

void bind_blob(sqlite3_stmt* s, int i, std::string_view bytes) {
  sqlite3_bind_blob(s, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
}

std::string_view column_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p == nullptr ? std::string_view{}
                      : std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))};
}

// ---- Checksums ------------------------------------------------------------------------------

// Every row carries XXH3-64 of its kind, its key columns and its blob, so that damage anywhere
// in it (a changed contact id in a state record, a changed sequence number, a row moved to
// another key or table) is refused on read instead of used. The kind is the seed.
enum class row_kind : std::uint64_t { meta = 1, checkpoint = 2, journal = 3, outbox = 4 };

std::string_view row_kind_name(row_kind k) {
  switch (k) {
    case row_kind::meta:
      return "meta";
    case row_kind::checkpoint:
      return "checkpoint part";
    case row_kind::journal:
      return "journal row";
    case row_kind::outbox:
      return "outbox row";
  }
  return "row";
}

std::int64_t row_sum(row_kind kind, std::string_view key, std::string_view blob) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);  // reset_withSeed reads the seed it had
  XXH3_64bits_reset_withSeed(&st, static_cast<XXH64_hash_t>(kind));
  const auto n = static_cast<std::uint32_t>(key.size());
  const unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                static_cast<unsigned char>(n >> 16),
                                static_cast<unsigned char>(n >> 24)};
  XXH3_64bits_update(&st, len, 4);
  XXH3_64bits_update(&st, key.data(), key.size());
  XXH3_64bits_update(&st, blob.data(), blob.size());
  return static_cast<std::int64_t>(XXH3_64bits_digest(&st));
}

// The key columns of a row with integer keys, as hashed.
std::string int_key(std::int64_t a, std::int64_t b = 0) {
  std::string k(16, '\0');
  for (int i = 0; i < 8; ++i) {
    k[static_cast<std::size_t>(i)] = static_cast<char>(static_cast<std::uint64_t>(a) >> (8 * i));
    k[static_cast<std::size_t>(8 + i)] =
        static_cast<char>(static_cast<std::uint64_t>(b) >> (8 * i));
  }
  return k;
}

// What the rows of a database should be, kept in meta `nudge.rows` and rewritten by every
// commit that changes them: a row that vanished (damage to SQLite's own pages can drop rows
// without SQLite noticing) is then refused too, not read as an older state.
struct row_counts {
  std::int64_t checkpoint = 0;   ///< parts 0 .. checkpoint-1
  std::int64_t journal = 0;      ///< rows 1 .. journal
  std::int64_t outbox_next = 1;  ///< the sequence of the next outbox entry
  std::int64_t meta = 3;         ///< meta rows, this one included
  std::string text() const {
    return fmt::format("checkpoint={} journal={} outbox_next={} meta={}", checkpoint, journal,
                       outbox_next, meta);
  }
  static std::optional<row_counts> parse(std::string_view text) {
    row_counts c;
    long long a = 0, b = 0, n = 0, m = 0;
    char tail = 0;
    if (std::sscanf(std::string{text}.c_str(),
                    "checkpoint=%lld journal=%lld outbox_next=%lld "
                    "meta=%lld%c",
                    &a, &b, &n, &m, &tail) != 4 ||
        a < 0 || b < 0 || n < 1 || m < 3) {
      return std::nullopt;
    }
    c.checkpoint = a, c.journal = b, c.outbox_next = n, c.meta = m;
    return c;
  }
};

// ---- Row payloads: little-endian, as the snapshot format -----------------------------------

void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 24)};
  out.append(b, 4);
}
void put_u64(std::string& out, std::uint64_t v) {
  put_u32(out, static_cast<std::uint32_t>(v));
  put_u32(out, static_cast<std::uint32_t>(v >> 32));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Zero runs: the snapshot codec writes fixed-width little-endian fields, so about half of a
// state record's bytes are zeros, most of them in runs. Coding each run as 0x00 and its length
// (1 to 255) halves the journal, and with it the WAL and the checkpoints (measured on W1
// medium: 46 % of the bytes). A non-zero byte stands for itself.
void put_zero_runs(std::string& out, std::string_view bytes) {
  const char* p = bytes.data();
  const char* const end = p + bytes.size();
  while (p != end) {
    const auto* zero =
        static_cast<const char*>(std::memchr(p, 0, static_cast<std::size_t>(end - p)));
    if (zero == nullptr) {
      out.append(p, end);
      return;
    }
    out.append(p, zero);
    p = zero;
    while (p != end && *p == 0) {
      const char* run_end = p;
      while (run_end != end && *run_end == 0 && run_end - p < 255) {
        ++run_end;
      }
      const char run[2] = {0, static_cast<char>(run_end - p)};
      out.append(run, 2);
      p = run_end;
    }
  }
}

// The bytes put_zero_runs coded, appended to `out`; false if the coding is broken.
bool get_zero_runs(std::string_view coded, std::string& out) {
  const char* p = coded.data();
  const char* const end = p + coded.size();
  while (p != end) {
    const auto* zero =
        static_cast<const char*>(std::memchr(p, 0, static_cast<std::size_t>(end - p)));
    if (zero == nullptr) {
      out.append(p, end);
      return true;
    }
    out.append(p, zero);
    if (end - zero < 2 || zero[1] == 0) {
      return false;
    }
    out.append(static_cast<std::size_t>(static_cast<unsigned char>(zero[1])), '\0');
    p = zero + 2;
  }
  return true;
}

// The contacts a damaged row names, read as far as its structure holds, for the error message:
// " (its records name contacts c1, c2 and 3 more, as far as they can be read)", or empty.
// State records start with the contact id (snapshot codec: u32 length, bytes); outbox entries
// hold it after 28 bytes of key, due time, rule, action and kind.
std::string contacts_named(bool outbox, std::string_view blob) {
  std::vector<std::string> ids;
  std::size_t more = 0;
  std::size_t pos = 0;
  std::string record;
  const auto u32_at = [](std::string_view b, std::size_t at, std::uint32_t& v) {
    if (b.size() < 4 || at > b.size() - 4) {
      return false;
    }
    v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(b[at + i])) << (8 * i);
    }
    return true;
  };
  const auto add = [&](std::string_view id) {
    const bool printable =
        !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
          return static_cast<unsigned char>(c) > 32 && static_cast<unsigned char>(c) < 127;
        });
    if (!printable) {
      return false;
    }
    if (std::find(ids.begin(), ids.end(), id) != ids.end()) {
      return true;  // (a contact saved twice in one batch: lent, then saved)
    }
    if (ids.size() < 5) {
      ids.emplace_back(id);
    } else {
      ++more;
    }
    return true;
  };
  while (pos < blob.size()) {
    std::uint32_t n = 0, id_len = 0;
    if (outbox) {
      if (!u32_at(blob, pos + 28, id_len) || id_len > blob.size() - pos - 32 ||
          !add(blob.substr(pos + 32, id_len))) {
        break;
      }
      std::uint32_t arg_len = 0;
      pos += 32 + id_len;
      if (!u32_at(blob, pos, arg_len) || arg_len > blob.size() - pos - 4) {
        break;
      }
      pos += 4 + arg_len;
      continue;
    }
    if (!u32_at(blob, pos, n) || n > blob.size() - pos - 4) {
      break;
    }
    record.clear();
    if (!get_zero_runs(blob.substr(pos + 4, n), record) || !u32_at(record, 0, id_len) ||
        id_len > record.size() - 4 || !add(std::string_view{record}.substr(4, id_len))) {
      break;
    }
    pos += 4 + n;
  }
  if (ids.empty()) {
    return {};
  }
  std::string list = ids.front();
  for (std::size_t i = 1; i < ids.size(); ++i) {
    list += (i + 1 == ids.size() && more == 0 ? " and " : ", ") + ids[i];
  }
  if (more > 0) {
    list += fmt::format(" and {} more", more);
  }
  return fmt::format(" (its {} name{} {}, as far as they can be read)",
                     outbox ? "entries" : "records",
                     ids.size() + more == 1 ? "s contact" : " contacts", list);
}

// Appends one state record (snapshot codec, zero runs coded), prefixed by its coded length.
// `record` is scratch space.
void put_state(std::string& out, const contact_state& s, std::string& record) {
  record.clear();
  encode_contact_state(s, record);
  const auto at = out.size();
  put_u32(out, 0);
  put_zero_runs(out, record);
  const auto n = static_cast<std::uint32_t>(out.size() - at - 4);
  for (int i = 0; i < 4; ++i) {
    out[at + static_cast<std::size_t>(i)] = static_cast<char>(n >> (8 * i));
  }
}

// Bounds-checked reading of a row payload; `fail` gets the byte offset and what was expected.
class payload {
 public:
  explicit payload(std::string_view bytes) : bytes_(bytes) {}
  bool done() const noexcept { return pos_ == bytes_.size(); }
  std::size_t pos() const noexcept { return pos_; }
  // nullptr if fewer than n bytes are left.
  const char* take(std::size_t n) {
    if (bytes_.size() - pos_ < n) {
      return nullptr;
    }
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  bool u32(std::uint32_t& v) {
    const char* p = take(4);
    if (p == nullptr) {
      return false;
    }
    v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return true;
  }
  bool u64(std::uint64_t& v) {
    std::uint32_t lo = 0, hi = 0;
    if (!u32(lo) || !u32(hi)) {
      return false;
    }
    v = lo | (static_cast<std::uint64_t>(hi) << 32);
    return true;
  }
  bool str(std::string_view& s) {
    std::uint32_t n = 0;
    if (!u32(n)) {
      return false;
    }
    const char* p = take(n);
    if (p == nullptr) {
      return false;
    }
    s = {p, n};
    return true;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

// The contact states in memory, changed in place by the open transaction, with an undo log that
// puts the previous states back on rollback. (Applying a batch where it lands, while its states
// are still in cache, halved the cost of a second pass over a pending copy.) States lent to the
// engine (store::lend) are evaluated where they lie, with no copy in the undo log: a rollback
// after lending cannot put them back from memory, and says so (the store then re-reads the
// database, which holds exactly the committed states).
class state_table {
 public:
  const contact_state* find(std::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &states_[it->second];
  }
  std::size_t size() const noexcept { return states_.size(); }
  const std::vector<contact_state>& states() const noexcept { return states_; }

  // The state of `id` for the engine to change in place, or nullptr if there is none. Until
  // finish_lent() its entry in the due index may be stale (its next due time may change).
  contact_state* lend(std::string_view id) {
    auto it = index_.find(id);
    if (it == index_.end()) {
      return nullptr;
    }
    if (lent_.size() == lent_.capacity()) {
      lent_.reserve(2 * lent_.capacity() + 64);
    }
    const std::uint32_t pos = it->second;
    contact_state& s = states_[pos];
    lent_.push_back({pos, !s.timers.empty(), s.next_due()});
    lent_since_commit_ = true;
    return &s;
  }
  struct lent_state {
    std::uint32_t pos;
    bool had_timers;  ///< as lent: whether the due index holds (due, pos)
    time_point due;
  };
  // The states lent since the last finish_lent(), in lending order.
  std::span<const lent_state> lent() const noexcept { return lent_; }
  const contact_state& at(std::uint32_t pos) const noexcept { return states_[pos]; }
  // The lent states are final: update their due index entries. (Most batches leave a
  // contact's next due time as it was: the ordered index is then not touched at all.)
  void finish_lent() {
    for (const auto& l : lent_) {
      const contact_state& s = states_[l.pos];
      const bool has_timers = !s.timers.empty();
      if (has_timers == l.had_timers && (!has_timers || s.next_due() == l.due)) {
        continue;
      }
      if (l.had_timers) {
        due_.erase({l.due, l.pos});
      }
      if (has_timers) {
        due_.emplace(s.next_due(), l.pos);
      }
    }
    lent_.clear();
  }

  void put(contact_state&& s) {
    if (replaced_.size() == replaced_.capacity()) {
      replaced_.reserve(2 * replaced_.capacity() + 64);
    }
    auto [it, fresh] = index_.try_emplace(s.contact.id, static_cast<std::uint32_t>(states_.size()));
    const std::uint32_t pos = it->second;
    if (fresh) {
      try {
        states_.push_back(std::move(s));
      } catch (...) {
        index_.erase(it);
        throw;
      }
    } else {
      contact_state& current = states_[pos];
      if (!current.timers.empty()) {
        due_.erase({current.next_due(), pos});
      }
      replaced_.emplace_back(pos, std::move(current));
      current = std::move(s);
    }
    if (!states_[pos].timers.empty()) {
      due_.emplace(states_[pos].next_due(), pos);
    }
  }

  std::vector<std::string> due(time_point t) const {
    std::vector<std::string> ids;
    for (auto it = due_.begin(); it != due_.end() && it->first <= t; ++it) {
      ids.push_back(states_[it->second].contact.id);
    }
    return ids;
  }

  // The open transaction's changes become permanent.
  void commit() noexcept {
    replaced_.clear();
    lent_since_commit_ = false;
    committed_size_ = states_.size();
  }
  // The open transaction's changes are undone, newest first. False if states were lent since
  // the last commit: then the table was emptied and must be read again from the database.
  [[nodiscard]] bool rollback() noexcept {
    if (lent_since_commit_) {
      clear();
      return false;
    }
    for (auto it = replaced_.rbegin(); it != replaced_.rend(); ++it) {
      contact_state& current = states_[it->first];
      if (!current.timers.empty()) {
        due_.erase({current.next_due(), it->first});
      }
      current = std::move(it->second);
      if (!current.timers.empty()) {
        due_.emplace(current.next_due(), it->first);
      }
    }
    replaced_.clear();
    while (states_.size() > committed_size_) {
      const auto pos = static_cast<std::uint32_t>(states_.size() - 1);
      if (!states_.back().timers.empty()) {
        due_.erase({states_.back().next_due(), pos});
      }
      index_.erase(states_.back().contact.id);
      states_.pop_back();
    }
    return true;
  }
  void clear() noexcept {
    states_.clear();
    index_.clear();
    due_.clear();
    replaced_.clear();
    lent_.clear();
    lent_since_commit_ = false;
    committed_size_ = 0;
  }

 private:
  std::vector<contact_state> states_;
  detail::string_map<std::uint32_t> index_;
  std::set<std::pair<time_point, std::uint32_t>> due_;  ///< (next_due, position) with timers
  std::vector<std::pair<std::uint32_t, contact_state>> replaced_;
  std::vector<lent_state> lent_;
  bool lent_since_commit_ = false;
  std::size_t committed_size_ = 0;
};

}  // namespace

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

  // Committed state, as of the last commit (or load).
  state_table states;
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
    if (*version != schema_version) {
      refuse_version(*version);
    }
  }
  [[noreturn]] void refuse_version(std::string_view version) const {
    // Checked before anything is written: an old database is left exactly as it was.
    throw sqlite_error(fmt::format(
        "{}: database schema version {}, this build reads version {} (versions 1 and 2 kept "
        "one row per contact, 3 stored state records uncoded, 4 states without the delivery "
        "policy, 5 states without workflow completion counts and locations, 6 rows without "
        "checksums; there is no conversion: replay the events into a new database)",
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
      e.due_at = from_epoch(static_cast<std::int64_t>(due));
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

namespace {

constexpr std::string_view create_tables =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL, sum INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE TABLE checkpoint(part INTEGER PRIMARY KEY, states BLOB NOT NULL,"
    " sum INTEGER NOT NULL);"
    "CREATE TABLE journal(batch INTEGER PRIMARY KEY, states BLOB NOT NULL, sum INTEGER NOT NULL);"
    "CREATE TABLE outbox(first_seq INTEGER PRIMARY KEY, count INTEGER NOT NULL,"
    " actions BLOB NOT NULL, sum INTEGER NOT NULL);";

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
          SQLITE_OK) {
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

void sqlite_store::ensure_current() {
  impl& d = *impl_;
  // Another connection may have committed since (a reader that loaded before the writer's
  // batch; writers are one at a time, see writer_lock): read the state again rather than work
  // on a stale copy.
  if (!d.loaded || d.current_data_version() != d.version_seen) {
    d.load_all();
    d.clear_pending();
  }
}

void sqlite_store::begin() {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot begin a transaction: the database is open read-only", path_));
  }
  {
    use s{d.begin};
    d.step_done(*s, "begin a transaction");
  }
  in_transaction_ = true;
  try {
    ensure_current();
  } catch (...) {
    rollback();
    throw;
  }
  d.clear_pending();
}

void sqlite_store::commit() {
  impl& d = *impl_;
  std::optional<std::size_t> new_checkpoint;
  try {
    check_not_abandoned();
    const std::size_t journal = d.journal_bytes + d.pending_journal_bytes;
    if (d.pending_program != nullptr ||
        (d.pending_journal_bytes > 0 &&
         journal > std::max(d.options.compact_after_bytes, 4 * d.checkpoint_bytes))) {
      new_checkpoint = d.write_checkpoint();
    }
    d.write_row_counts();
    use s{d.commit};
    if (sqlite3_step(*s) != SQLITE_DONE) {
      d.fail("commit");
    }
  } catch (...) {
    rollback();
    throw;
  }
  in_transaction_ = false;
  // Committed: fold the transaction into the in-memory state (nothing below throws but
  // allocation).
  if (new_checkpoint) {
    d.checkpoint_bytes = *new_checkpoint;
    d.journal_bytes = 0;
  } else {
    d.journal_bytes += d.pending_journal_bytes;
  }
  if (d.pending_rows) {
    d.rows = *d.pending_rows;
  }
  d.states.commit();
  if (d.pending_program != nullptr) {
    d.program = program_ = d.pending_program;
    d.fingerprint = program_fingerprint(*d.program);
  }
  d.next_seq = d.pending_next_seq;
  for (const auto& e : d.pending_outbox) {
    d.undelivered.push_back(e);
    d.undelivered_keys.emplace(e.second, 0);
  }
  if (d.pending_delivered) {
    while (d.undelivered_begin < d.undelivered.size() &&
           d.undelivered[d.undelivered_begin].first <= *d.pending_delivered) {
      d.undelivered_keys.erase(d.undelivered[d.undelivered_begin].second);
      ++d.undelivered_begin;
    }
    if (d.undelivered_begin == d.undelivered.size()) {
      d.undelivered.clear();
      d.undelivered_begin = 0;
    }
  }
  d.clear_pending();
}

void sqlite_store::rollback() noexcept {
  if (sqlite3_get_autocommit(impl_->db) == 0) {
    use s{impl_->rollback};
    sqlite3_step(*s);
  }
  if (!impl_->states.rollback()) {
    impl_->loaded = false;  // states were changed in place: read them again on next use
  }
  impl_->abandoned = false;
  impl_->clear_pending();
  in_transaction_ = false;
}

std::optional<contact_state> sqlite_store::load(std::string_view contact) {
  impl& d = *impl_;
  check_not_abandoned();
  if (!in_transaction_) {
    ensure_current();
  }
  const contact_state* found = d.states.find(contact);
  if (found == nullptr) {
    return std::nullopt;
  }
  return *found;
}

contact_state* sqlite_store::lend(std::string_view contact) {
  impl& d = *impl_;
  // Only inside a transaction, whose rollback can re-read what the engine changed; and never
  // from a read-only store, whose states must stay as read.
  if (!in_transaction_ || d.options.read_only || d.abandoned) {
    return nullptr;
  }
  return d.states.lend(contact);
}

void sqlite_store::abandon() noexcept {
  if (impl_->states.lent().empty()) {
    return;  // nothing lent since the last save: the undo log covers the rest
  }
  impl_->abandoned = true;
}

void sqlite_store::check_not_abandoned() const {
  if (impl_->abandoned) {
    throw sqlite_error(fmt::format(
        "{}: a batch failed after the engine evaluated states in place: roll the transaction "
        "back before using the store again",
        path_));
  }
}

void sqlite_store::save(std::span<contact_state> states) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(fmt::format("{}: cannot save: the database is open read-only", path_));
  }
  check_not_abandoned();
  const auto lent = d.states.lent();
  if (states.empty() && lent.empty()) {
    return;
  }
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    d.scratch.clear();
    for (const auto& l : lent) {
      put_state(d.scratch, d.states.at(l.pos), d.record_scratch);
    }
    for (const auto& st : states) {
      put_state(d.scratch, st, d.record_scratch);
    }
    {
      const std::int64_t batch = d.rows.journal + d.pending_journal_rows + 1;
      use s{d.add_journal};
      sqlite3_bind_int64(*s, 1, batch);
      bind_blob(*s, 2, d.scratch);
      sqlite3_bind_int64(*s, 3, row_sum(row_kind::journal, int_key(batch), d.scratch));
      d.step_done(*s, fmt::format("save {} contact states", lent.size() + states.size()));
    }
    d.pending_journal_bytes += d.scratch.size();
    ++d.pending_journal_rows;
    d.states.finish_lent();
    for (auto& st : states) {
      d.states.put(std::move(st));
    }
    if (own) {
      commit();
    }
  } catch (...) {
    if (own) {
      rollback();
    }
    throw;
  }
}

std::vector<std::string> sqlite_store::contacts() {
  impl& d = *impl_;
  if (!in_transaction_) {
    ensure_current();
  }
  std::vector<std::string> out;
  out.reserve(d.states.size());
  for (const auto& s : d.states.states()) {
    out.push_back(s.contact.id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void sqlite_store::change_program(const nudge::program& next) {
  if (!in_transaction_) {
    throw std::logic_error("sqlite_store::change_program: call it inside begin() / commit()");
  }
  put_meta("nudge.program_fingerprint", fmt::format("{:016x}", program_fingerprint(next)));
  impl_->pending_program = &next;
}

std::vector<std::string> sqlite_store::due(time_point t) {
  impl& d = *impl_;
  check_not_abandoned();
  if (!in_transaction_) {
    ensure_current();
  }
  return d.states.due(t);
}

void sqlite_store::add_to_outbox(std::span<const due_action> actions) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  check_not_abandoned();
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    d.scratch.clear();
    const auto first = d.pending_next_seq;
    std::int64_t count = 0;
    std::vector<std::pair<std::int64_t, std::uint64_t>> added;
    added.reserve(actions.size());
    for (const auto& a : actions) {
      if (d.undelivered_keys.contains(a.idempotency_key) ||
          !d.pending_keys.emplace(a.idempotency_key, 0).second) {
        continue;  // already waiting in the outbox
      }
      std::uint32_t rule_field = a.rule_index;
      std::ptrdiff_t action_index = 0;
      if (a.from_workflow()) {
        rule_field |= workflow_flag;
        // The step table index (kept older versions' steps follow the current ones).
        const auto& steps = program_->compiled().workflows[a.rule_index].steps;
        for (std::size_t j = 0; j < steps.size(); ++j) {
          if (&steps[j].def->act == a.definition ||
              (a.definition == nullptr && steps[j].def->id == a.step)) {
            action_index = static_cast<std::ptrdiff_t>(j);
            break;
          }
        }
      } else if (a.definition != nullptr) {
        action_index = a.definition - program_->rules().rules[a.rule_index].actions.data();
      }
      put_u64(d.scratch, a.idempotency_key);
      put_u64(d.scratch, static_cast<std::uint64_t>(to_epoch(a.due_at)));
      put_u32(d.scratch, rule_field);
      put_u32(d.scratch, static_cast<std::uint32_t>(action_index));
      put_u32(d.scratch, static_cast<std::uint32_t>(a.kind));
      put_str(d.scratch, a.contact);
      put_str(d.scratch, a.arg);
      added.emplace_back(first + count, a.idempotency_key);
      ++count;
    }
    if (count > 0) {
      use s{d.add_outbox};
      sqlite3_bind_int64(*s, 1, first);
      sqlite3_bind_int64(*s, 2, count);
      bind_blob(*s, 3, d.scratch);
      sqlite3_bind_int64(*s, 4, row_sum(row_kind::outbox, int_key(first, count), d.scratch));
      d.step_done(*s, "write the outbox");
      d.pending_next_seq = first + count;
      d.pending_outbox.insert(d.pending_outbox.end(), added.begin(), added.end());
    } else {
      for (const auto& e : added) {
        d.pending_keys.erase(e.second);
      }
    }
    if (own) {
      commit();
    }
  } catch (...) {
    if (own) {
      rollback();
    }
    throw;
  }
}

std::vector<outbox_entry> sqlite_store::outbox(std::size_t limit) {
  std::vector<outbox_entry> out;
  if (limit == 0) {
    return out;
  }
  const impl::read_scope snapshot{*impl_};
  impl_->scan_outbox(
      [&](outbox_entry&& e) {
        out.push_back(std::move(e));
        return out.size() < limit;
      },
      impl_->expected_outbox_next());
  return out;
}

std::size_t sqlite_store::outbox_size() {
  const impl::read_scope snapshot{*impl_};
  std::size_t n = 0;
  impl_->scan_outbox(
      [&](outbox_entry&&) {
        ++n;
        return true;
      },
      impl_->expected_outbox_next());
  return n;
}

std::size_t sqlite_store::size() {
  impl& d = *impl_;
  if (!in_transaction_) {
    ensure_current();
  }
  return d.states.size();
}

void sqlite_store::remove_from_outbox(std::int64_t last) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  check_not_abandoned();
  const bool own = !in_transaction_;
  // Losing this mark on power loss only means delivering again under the same keys, which
  // at-least-once allows: at synchronous=full it is committed without its own fsync (the next
  // batch's commit syncs the write-ahead log up to and including it).
  const bool relax = own && d.options.synchronous == sqlite_sync::full;
  if (relax) {
    use s{d.sync_normal};
    sqlite3_step(*s);
  }
  try {
    if (own) {
      begin();
    }
    try {
      // Never backwards: entries once marked delivered stay delivered.
      last = std::max(last, d.delivered_through());
      put_meta(meta_delivered, std::to_string(last));
      {
        use s{d.trim_outbox};
        sqlite3_bind_int64(*s, 1, last);
        d.step_done(*s, "delete delivered actions from the outbox");
      }
      d.pending_delivered = std::max(last, d.pending_delivered.value_or(last));
      if (own) {
        commit();
      }
    } catch (...) {
      if (own) {
        rollback();
      }
      throw;
    }
  } catch (...) {
    if (relax) {
      use s{d.sync_configured};
      sqlite3_step(*s);
    }
    throw;
  }
  if (relax) {
    use s{d.sync_configured};
    sqlite3_step(*s);
  }
}

std::optional<std::string> sqlite_store::get_meta(std::string_view key) {
  return impl_->meta(key);
}

void sqlite_store::put_meta(std::string_view key, std::string_view text) {
  if (impl_->put_meta.get() == nullptr) {
    throw sqlite_error(fmt::format("{}: cannot write: the database is open read-only", path_));
  }
  if (key == meta_rows) {
    throw std::logic_error("sqlite_store::put_meta: nudge.rows is the store's own");
  }
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    impl_->write_meta(key, text);
    impl_->pending_meta = true;
    if (own) {
      commit();
    }
  } catch (...) {
    if (own) {
      rollback();
    }
    throw;
  }
}

std::optional<std::string> sqlite_store::read_meta(const std::string& path, std::string_view key,
                                                   bool recover) {
  impl d;
  d.path = path;
  const int flags = recover ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(path.c_str(), &d.db, flags, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  d.check_identity();
  return d.meta(key);
}

sqlite_check_report sqlite_store::check(const std::string& path) {
  impl d;
  d.path = path;
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  d.exec("PRAGMA cell_size_check=ON", "open (set cell_size_check)");
  d.check_identity();
  sqlite_check_report report;
  report.schema_version = std::stoll(std::string{schema_version});
  auto& problems = report.problems;
  const impl::read_scope snapshot{d};
  {
    // SQLite's own structure first: damage there can hide rows from the scans below.
    statement s = d.prepare("PRAGMA integrity_check(20)");
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      const auto text = column_blob(s.get(), 0);
      if (text != "ok") {
        problems.push_back(fmt::format("SQLite integrity_check: {}", text));
      }
    }
    if (rc != SQLITE_DONE) {
      problems.push_back(fmt::format("SQLite integrity_check failed: {}", sqlite3_errmsg(d.db)));
    }
  }
  // Scans one table's rows (key columns, blob, checksum), checking each checksum; calls
  // `row(key, second key, sound)` for each. Stops at an error of SQLite's.
  const auto scan = [&](const char* sql, row_kind kind, int keys, std::size_t& counted,
                        auto&& row) {
    statement s = d.prepare(sql);
    int rc;
    while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
      ++counted;
      const std::int64_t a = sqlite3_column_int64(s.get(), 0);
      const std::int64_t b = keys == 2 ? sqlite3_column_int64(s.get(), 1) : 0;
      const auto name = kind == row_kind::meta ? fmt::format("\"{}\"", column_blob(s.get(), 0))
                                               : std::to_string(a);
      const auto key = kind == row_kind::meta ? std::string{column_blob(s.get(), 0)}
                       : keys == 2            ? int_key(a, b)
                                              : int_key(a);
      const auto blob = column_blob(s.get(), keys);
      if (row_sum(kind, key, blob) != sqlite3_column_int64(s.get(), keys + 1)) {
        problems.push_back(fmt::format("{} {} fails its checksum{}", row_kind_name(kind), name,
                                       kind == row_kind::meta
                                           ? std::string{}
                                           : contacts_named(kind == row_kind::outbox, blob)));
        row(a, b, false);
        continue;
      }
      row(a, b, true);
    }
    if (rc != SQLITE_DONE) {
      problems.push_back(
          fmt::format("cannot read the {} table: {}", row_kind_name(kind), sqlite3_errmsg(d.db)));
    }
  };
  std::optional<row_counts> counts;
  std::optional<std::int64_t> delivered;
  scan("SELECT key, value, sum FROM meta", row_kind::meta, 1, report.meta,
       [&](std::int64_t, std::int64_t, bool) {});
  {
    // The meta rows the checks below need, each read again only if its checksum held.
    statement s = d.prepare("SELECT key, value, sum FROM meta WHERE key IN (?1, ?2)");
    bind_text(s.get(), 1, meta_rows);
    bind_text(s.get(), 2, meta_delivered);
    while (sqlite3_step(s.get()) == SQLITE_ROW) {
      const auto key = column_blob(s.get(), 0);
      const auto text = column_blob(s.get(), 1);
      if (row_sum(row_kind::meta, key, text) != sqlite3_column_int64(s.get(), 2)) {
        continue;  // reported above
      }
      if (key == meta_rows) {
        counts = row_counts::parse(text);
        if (!counts) {
          problems.push_back(fmt::format("meta \"{}\" is unreadable: \"{}\"", meta_rows, text));
        }
      } else {
        try {
          delivered = std::stoll(std::string{text});
        } catch (const std::exception&) {
          problems.push_back(
              fmt::format("meta \"{}\" is unreadable: \"{}\"", meta_delivered, text));
        }
      }
    }
  }
  const bool have_counts = counts.has_value();
  if (!have_counts) {
    problems.push_back(
        fmt::format("meta \"{}\" (the row counts) is missing or damaged; the "
                    "checks of lost rows were skipped",
                    meta_rows));
  } else if (static_cast<std::int64_t>(report.meta) != counts->meta) {
    problems.push_back(
        fmt::format("the meta table has {} rows, {} were written", report.meta, counts->meta));
  }
  // Keys must run first, first + 1, ...: a gap is a lost row.
  const auto sequence = [&](row_kind kind, std::int64_t first) {
    return [&problems, kind, next = first](std::int64_t key, std::int64_t, bool sound) mutable {
      // (A damaged row's key may be the damage: no gap is counted before it.)
      if (sound && key > next) {
        problems.push_back(fmt::format("{} {} is missing", row_kind_name(kind), next));
      }
      next = key + 1;
    };
  };
  scan("SELECT part, states, sum FROM checkpoint ORDER BY part", row_kind::checkpoint, 1,
       report.checkpoint, sequence(row_kind::checkpoint, 0));
  scan("SELECT batch, states, sum FROM journal ORDER BY batch", row_kind::journal, 1,
       report.journal, sequence(row_kind::journal, 1));
  if (have_counts) {
    for (const auto& [kind, got, want] :
         {std::tuple{row_kind::checkpoint, report.checkpoint, counts->checkpoint},
          std::tuple{row_kind::journal, report.journal, counts->journal}}) {
      if (static_cast<std::int64_t>(got) != want) {
        problems.push_back(fmt::format("the {} table has {} rows, {} were written",
                                       kind == row_kind::checkpoint ? "checkpoint" : "journal", got,
                                       want));
      }
    }
  }
  const std::int64_t after = delivered.value_or(0);
  std::int64_t next = after + 1;
  bool first_row = true;
  bool resync = false;
  scan("SELECT first_seq, count, actions, sum FROM outbox ORDER BY first_seq", row_kind::outbox, 2,
       report.outbox, [&](std::int64_t first, std::int64_t count, bool sound) {
         if (!sound) {
           resync = true;  // its numbers may be the damage: resume at the next sound row
           return;
         }
         if (resync) {
           resync = false;
           first_row = false;
         } else if (first_row ? first > next : first != next) {
           problems.push_back(fmt::format("outbox entries {} to {} are missing", next, first - 1));
         }
         first_row = false;
         next = std::max(next, first + count);
         report.undelivered += static_cast<std::size_t>(first + count - std::max(first, after + 1));
       });
  if (have_counts && next < counts->outbox_next) {
    problems.push_back(
        fmt::format("outbox entries {} to {} are missing", next, counts->outbox_next - 1));
  }
  return report;
}

std::optional<std::pair<std::vector<rule_stats>, round_robin_counters>>
sqlite_store::engine_state() {
  auto bytes = get_meta("nudge.engine");
  if (!bytes) {
    return std::nullopt;
  }
  // Statistics and counters are kept as a snapshot without contacts.
  auto s = parse_snapshot(*bytes, program_, path_ + " (engine statistics)");
  return std::pair{std::move(s.stats), std::move(s.counters)};
}

std::vector<workflow_stats> sqlite_store::engine_workflow_stats() {
  auto bytes = get_meta("nudge.engine");
  if (!bytes) {
    return {};
  }
  return parse_snapshot(*bytes, program_, path_ + " (engine statistics)").workflows;
}

void sqlite_store::put_engine_state(const std::vector<rule_stats>& stats,
                                    const round_robin_counters& counters,
                                    const std::vector<workflow_stats>& workflows) {
  snapshot s;
  s.fingerprint = impl_->pending_program != nullptr ? program_fingerprint(*impl_->pending_program)
                                                    : impl_->fingerprint;
  s.stats = stats;
  s.counters = counters;
  s.workflows = workflows;
  std::ostringstream out;
  write_snapshot(out, s);
  put_meta("nudge.engine", out.str());
}
// ---- durable_engine -------------------------------------------------------------------------

durable_engine::durable_engine(std::shared_ptr<const nudge::program> program, sqlite_store& store,
                               nudge::sink* sink, engine_options options)
    : store_(store), sink_(sink), engine_(std::move(program), &store, nullptr, options) {
  store_.ensure_current();
  generation_ = store_.impl_->generation;
  if (auto saved = store_.engine_state()) {
    engine_.restore(std::move(saved->first), std::move(saved->second),
                    store_.engine_workflow_stats());
  }
}

void durable_engine::change_program(std::shared_ptr<const nudge::program> next, time_point at,
                                    std::span<const std::pair<std::string, std::string>> meta) {
  const nudge::program& target = *next;
  store_.begin();
  try {
    if (store_.impl_->generation != generation_) {
      if (auto saved = store_.engine_state()) {
        engine_.restore(saved->first, saved->second, store_.engine_workflow_stats());
      }
      generation_ = store_.impl_->generation;
    }
    engine_.change_program(std::move(next), at);
    store_.change_program(target);
    store_.put_engine_state(engine_.stats(), engine_.counters(), engine_.workflow_stats());
    for (const auto& [key, text] : meta) {
      store_.put_meta(key, text);
    }
    store_.commit();
  } catch (...) {
    store_.rollback();
    throw;
  }
}

std::size_t durable_engine::process(std::span<const event> events, time_point now,
                                    std::span<const std::pair<std::string, std::string>> meta) {
  return commit_batch([&] { return engine_.process(events, now); }, meta);
}

std::size_t durable_engine::upsert_contacts(
    std::span<const contact> contacts, time_point at,
    std::span<const std::pair<std::string, std::string>> meta) {
  return commit_batch([&] { return engine_.upsert_contacts(contacts, at); }, meta);
}

std::size_t durable_engine::commit_batch(
    const std::function<std::vector<due_action>()>& evaluate,
    std::span<const std::pair<std::string, std::string>> meta) {
  auto stats = engine_.stats();
  auto counters = engine_.counters();
  auto workflows = engine_.workflow_stats();
  std::vector<due_action> actions;
  // When nothing older waits in the outbox and every action went in, the outbox now holds
  // exactly `actions`, in order: hand them to the sink as they are rather than read them back.
  bool deliver_as_is = false;
  std::int64_t last_sequence = 0;
  store_.begin();
  try {
    if (store_.impl_->generation != generation_) {
      // Another connection committed batches since: continue from its statistics.
      if (auto saved = store_.engine_state()) {
        workflows = store_.engine_workflow_stats();
        engine_.restore(saved->first, saved->second, workflows);
        stats = std::move(saved->first);
        counters = std::move(saved->second);
      }
      generation_ = store_.impl_->generation;
    }
    actions = evaluate();
    const sqlite_store::impl& d = *store_.impl_;
    // Entries the sink already has (defer_trim) count as delivered here.
    const bool outbox_was_empty = d.undelivered_begin == d.undelivered.size() ||
                                  d.undelivered.back().first <= handed_through_;
    const auto first = d.pending_next_seq;
    store_.add_to_outbox(actions);
    last_sequence = d.pending_next_seq - 1;
    deliver_as_is =
        outbox_was_empty && d.pending_next_seq - first == static_cast<std::int64_t>(actions.size());
    store_.put_engine_state(engine_.stats(), engine_.counters(), engine_.workflow_stats());
    for (const auto& [key, text] : meta) {
      store_.put_meta(key, text);
    }
    store_.commit();
  } catch (...) {
    store_.rollback();
    // The engine folded the batch's statistics in before the commit failed: take them back.
    engine_.restore(std::move(stats), std::move(counters), std::move(workflows));
    throw;
  }
  if (!deliver_as_is) {
    deliver_pending();
  } else if (sink_ != nullptr && !actions.empty()) {
    deliver(actions, last_sequence);
  }
  return actions.size();
}

void durable_engine::deliver(std::span<const due_action> actions, std::int64_t last_sequence) {
  try {
    sink_->deliver(actions);
  } catch (...) {
    // (Counted from memory: the error path reads nothing from a store that may be failing.)
    const sqlite_store::impl& d = *store_.impl_;
    std::throw_with_nested(delivery_error(fmt::format(
        "sink.deliver failed: {} actions stay in the outbox of {} (the batch is committed; the "
        "next nudge run, or durable_engine::deliver_pending, delivers them first)",
        d.undelivered.size() - d.undelivered_begin, store_.path())));
  }
  if (defer_trim_) {
    handed_through_ = std::max(handed_through_, last_sequence);
    return;
  }
  try {
    store_.remove_from_outbox(last_sequence);
  } catch (...) {
    std::throw_with_nested(delivery_error(fmt::format(
        "{} actions were delivered but stay in the outbox of {}: they will be delivered again "
        "with the same idempotency keys (the batch is committed; the next nudge run, or "
        "durable_engine::deliver_pending, delivers them again)",
        actions.size(), store_.path())));
  }
}

void durable_engine::upsert_contacts(std::span<const contact> contacts) {
  store_.begin();
  try {
    engine_.upsert_contacts(contacts);
    store_.commit();
  } catch (...) {
    store_.rollback();
    throw;
  }
}

std::size_t durable_engine::deliver_pending(std::size_t batch) {
  if (sink_ == nullptr) {
    return 0;
  }
  const nudge::program& p = engine_.program();
  std::size_t delivered = 0;
  for (;;) {
    // Entries the sink already has (defer_trim) come first: read past them.
    const std::size_t handed = untrimmed();
    auto entries = store_.outbox(handed + batch);
    const bool last_page = entries.size() < handed + batch;
    entries.erase(entries.begin(),
                  std::partition_point(entries.begin(), entries.end(), [&](const outbox_entry& e) {
                    return e.sequence <= handed_through_;
                  }));
    if (entries.empty()) {
      return delivered;
    }
    std::vector<due_action> actions;
    actions.reserve(entries.size());
    for (const auto& e : entries) {
      due_action a;
      a.contact = e.contact;
      a.due_at = e.due_at;
      if (e.workflow) {
        const auto& w = p.rules().workflows[e.rule_index];
        const workflow_step& st = *p.compiled().workflows[e.rule_index].steps[e.action_index].def;
        a.rule = w.id;
        a.step = st.id;
        a.definition = &st.act;
      } else {
        const auto& rule = p.rules().rules[e.rule_index];
        a.rule = rule.id;
        a.definition = &rule.actions[e.action_index];
      }
      a.rule_index = e.rule_index;
      a.kind = e.kind;
      a.arg = e.arg;  // views into `entries`, alive during delivery
      a.idempotency_key = e.idempotency_key;
      actions.push_back(std::move(a));
    }
    deliver(actions, entries.back().sequence);
    delivered += entries.size();
    if (last_page) {
      return delivered;
    }
  }
}

void durable_engine::trim() {
  const std::size_t n = untrimmed();
  if (n == 0) {
    return;
  }
  try {
    store_.remove_from_outbox(handed_through_);
  } catch (...) {
    std::throw_with_nested(delivery_error(fmt::format(
        "{} actions were delivered but stay in the outbox of {}: they will be delivered again "
        "with the same idempotency keys (call trim to retry)",
        n, store_.path())));
  }
}

std::size_t durable_engine::untrimmed() const {
  const sqlite_store::impl& d = *store_.impl_;
  const auto begin = d.undelivered.begin() + static_cast<std::ptrdiff_t>(d.undelivered_begin);
  const auto end =
      std::upper_bound(begin, d.undelivered.end(), handed_through_,
                       [](std::int64_t last, const std::pair<std::int64_t, std::uint64_t>& e) {
                         return last < e.first;
                       });
  return static_cast<std::size_t>(end - begin);
}

}  // namespace nudge
