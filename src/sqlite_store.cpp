// The SQLite store, its outbox, and durable_engine.
#include <exception>
#include <sstream>

#include <fmt/format.h>
#include <sqlite3.h>

#include <nudge/error.hpp>
#include <nudge/snapshot.hpp>
#include <nudge/sqlite_store.hpp>

namespace nudge {
namespace {

constexpr std::string_view schema_version = "2";  // 2: states carry a timeline

std::int64_t to_db(std::uint64_t v) noexcept {
  return static_cast<std::int64_t>(v);
}
std::uint64_t from_db(std::int64_t v) noexcept {
  return static_cast<std::uint64_t>(v);
}

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

std::string_view column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p == nullptr ? std::string_view{}
                      : std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))};
}

std::string_view column_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p == nullptr ? std::string_view{}
                      : std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))};
}

}  // namespace

struct sqlite_store::impl {
  sqlite3* db = nullptr;
  std::string path;
  statement load, save, due, begin, commit, rollback, add_outbox, read_outbox, count_outbox,
      remove_outbox, get_meta, put_meta, count_contacts;
  std::string scratch;
  bool read_only = false;

  ~impl() {
    // Statements must be finalized before the connection closes.
    load = {}, save = {}, due = {}, begin = {}, commit = {}, rollback = {}, add_outbox = {},
    read_outbox = {}, count_outbox = {}, remove_outbox = {}, get_meta = {}, put_meta = {},
    count_contacts = {};
    sqlite3_close_v2(db);
  }

  [[noreturn]] void fail(std::string_view doing) const {
    throw sqlite_error(fmt::format("{}: cannot {}: {}", path, doing, sqlite3_errmsg(db)));
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
};

sqlite_store::sqlite_store(const std::string& path, const nudge::program& program,
                           sqlite_options options)
    : impl_(std::make_unique<impl>()), path_(path), program_(&program) {
  impl& d = *impl_;
  d.path = path;
  d.read_only = options.read_only;
  const int flags =
      options.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), &d.db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  sqlite3_busy_timeout(d.db, 5000);
  // Reading the schema is the first access to the file: a corrupt file fails here.
  if (!options.read_only) {
    d.exec("PRAGMA journal_mode=WAL", "open (set WAL mode)");
    const char* sync = options.synchronous == sqlite_sync::off      ? "PRAGMA synchronous=OFF"
                       : options.synchronous == sqlite_sync::normal ? "PRAGMA synchronous=NORMAL"
                                                                    : "PRAGMA synchronous=FULL";
    d.exec(sync, "open (set synchronous)");
    if (options.max_pages != 0) {
      d.exec(fmt::format("PRAGMA max_page_count={}", options.max_pages).c_str(),
             "open (set max_page_count)");
    }
    // Contact states are read back at random: a 64 MiB page cache and memory-mapped reads keep
    // them out of read(2) calls.
    // A batch rewrites one page per changed contact: checkpoint every 16,384 pages (64 MiB of
    // WAL) rather than every 1,000, so a page written by many batches is copied back once.
    d.exec("PRAGMA cache_size=-65536; PRAGMA mmap_size=268435456; PRAGMA wal_autocheckpoint=16384",
           "open (set the cache size)");
    d.exec(
        "BEGIN IMMEDIATE;"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
        "CREATE TABLE IF NOT EXISTS contacts(id TEXT PRIMARY KEY, state BLOB NOT NULL,"
        " next_due INTEGER) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS contacts_next_due ON contacts(next_due)"
        " WHERE next_due IS NOT NULL;"
        "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY, idempotency_key INTEGER NOT"
        " NULL UNIQUE, contact TEXT NOT NULL, due_at INTEGER NOT NULL, rule_index INTEGER NOT"
        " NULL, action_index INTEGER NOT NULL, kind INTEGER NOT NULL, arg TEXT NOT NULL);"
        "COMMIT;",
        "open (create the tables)");
  }
  d.get_meta = d.prepare("SELECT value FROM meta WHERE key = ?1");
  d.begin = d.prepare("BEGIN IMMEDIATE");
  d.commit = d.prepare("COMMIT");
  d.rollback = d.prepare("ROLLBACK");
  const auto version = get_meta("nudge.schema_version");
  const auto fingerprint = fmt::format("{:016x}", program_fingerprint(program));
  if (!version) {
    if (options.read_only) {
      throw sqlite_error(fmt::format("{}: not a nudge database (no schema version)", path));
    }
    d.put_meta = d.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
    begin();
    put_meta("nudge.schema_version", schema_version);
    put_meta("nudge.program_fingerprint", fingerprint);
    commit();
  } else if (*version != schema_version) {
    throw sqlite_error(fmt::format("{}: database schema version {}, this build reads version {}",
                                   path, *version, schema_version));
  } else if (auto theirs = get_meta("nudge.program_fingerprint"); theirs != fingerprint) {
    throw sqlite_error(fmt::format(
        "{}: database written for program fingerprint {}, the loaded rules have fingerprint {} "
        "(a database only opens with the rule program that wrote it)",
        path, theirs.value_or("(none)"), fingerprint));
  }
  if (!d.put_meta.get() && !options.read_only) {
    d.put_meta = d.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)");
  }
  d.load = d.prepare("SELECT state FROM contacts WHERE id = ?1");
  d.due = d.prepare(
      "SELECT id FROM contacts WHERE next_due IS NOT NULL AND next_due <= ?1 ORDER BY next_due, "
      "id");
  d.read_outbox = d.prepare(
      "SELECT seq, contact, due_at, rule_index, action_index, kind, arg, idempotency_key FROM "
      "outbox ORDER BY seq LIMIT ?1");
  d.count_outbox = d.prepare("SELECT count(*) FROM outbox");
  d.count_contacts = d.prepare("SELECT count(*) FROM contacts");
  if (!options.read_only) {
    d.save = d.prepare("INSERT OR REPLACE INTO contacts(id, state, next_due) VALUES(?1, ?2, ?3)");
    d.add_outbox = d.prepare(
        "INSERT OR IGNORE INTO outbox(idempotency_key, contact, due_at, rule_index, action_index,"
        " kind, arg) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    d.remove_outbox = d.prepare("DELETE FROM outbox WHERE seq <= ?1");
  }
}

sqlite_store::~sqlite_store() {
  if (in_transaction_) {
    rollback();
  }
}

void sqlite_store::begin() {
  if (impl_->read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot begin a transaction: the database is open read-only", path_));
  }
  use s{impl_->begin};
  impl_->step_done(*s, "begin a transaction");
  in_transaction_ = true;
}

void sqlite_store::commit() {
  use s{impl_->commit};
  if (sqlite3_step(*s) != SQLITE_DONE) {
    const std::string reason = sqlite3_errmsg(impl_->db);
    rollback();
    throw sqlite_error(fmt::format("{}: cannot commit: {}", path_, reason));
  }
  in_transaction_ = false;
}

void sqlite_store::rollback() noexcept {
  if (sqlite3_get_autocommit(impl_->db) == 0) {
    use s{impl_->rollback};
    sqlite3_step(*s);
  }
  in_transaction_ = false;
}

std::optional<contact_state> sqlite_store::load(std::string_view contact) {
  use s{impl_->load};
  bind_text(*s, 1, contact);
  const int rc = sqlite3_step(*s);
  if (rc == SQLITE_DONE) {
    return std::nullopt;
  }
  if (rc != SQLITE_ROW) {
    impl_->fail(fmt::format("load contact \"{}\"", contact));
  }
  try {
    return decode_contact_state(column_blob(*s, 0), program_);
  } catch (const snapshot_error& e) {
    throw sqlite_error(fmt::format("{}: contact \"{}\": {}", path_, contact, e.what()));
  }
}

void sqlite_store::save(std::span<contact_state> states) {
  if (impl_->save.get() == nullptr) {
    throw sqlite_error(fmt::format("{}: cannot save: the database is open read-only", path_));
  }
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    for (const auto& st : states) {
      use s{impl_->save};
      impl_->scratch.clear();
      encode_contact_state(st, impl_->scratch);
      bind_text(*s, 1, st.contact.id);
      sqlite3_bind_blob(*s, 2, impl_->scratch.data(), static_cast<int>(impl_->scratch.size()),
                        SQLITE_STATIC);
      if (st.timers.empty()) {
        sqlite3_bind_null(*s, 3);
      } else {
        sqlite3_bind_int64(*s, 3, to_epoch(st.next_due()));
      }
      impl_->step_done(*s, fmt::format("save contact \"{}\"", st.contact.id));
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

std::vector<std::string> sqlite_store::due(time_point t) {
  use s{impl_->due};
  sqlite3_bind_int64(*s, 1, to_epoch(t));
  std::vector<std::string> ids;
  int rc;
  while ((rc = sqlite3_step(*s)) == SQLITE_ROW) {
    ids.emplace_back(column_text(*s, 0));
  }
  if (rc != SQLITE_DONE) {
    impl_->fail("read due contacts");
  }
  return ids;
}

void sqlite_store::add_to_outbox(std::span<const due_action> actions) {
  if (impl_->add_outbox.get() == nullptr) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  for (const auto& a : actions) {
    const auto& rule = program_->rules().rules[a.rule_index];
    const auto action_index = a.definition == nullptr ? 0 : a.definition - rule.actions.data();
    use s{impl_->add_outbox};
    sqlite3_bind_int64(*s, 1, to_db(a.idempotency_key));
    bind_text(*s, 2, a.contact);
    sqlite3_bind_int64(*s, 3, to_epoch(a.due_at));
    sqlite3_bind_int64(*s, 4, a.rule_index);
    sqlite3_bind_int64(*s, 5, action_index);
    sqlite3_bind_int64(*s, 6, static_cast<std::int64_t>(a.kind));
    bind_text(*s, 7, a.arg);
    impl_->step_done(*s, "write the outbox");
  }
}

std::vector<outbox_entry> sqlite_store::outbox(std::size_t limit) {
  use s{impl_->read_outbox};
  sqlite3_bind_int64(*s, 1, limit > INT64_MAX ? INT64_MAX : static_cast<std::int64_t>(limit));
  std::vector<outbox_entry> out;
  int rc;
  while ((rc = sqlite3_step(*s)) == SQLITE_ROW) {
    outbox_entry e;
    e.sequence = sqlite3_column_int64(*s, 0);
    e.contact = column_text(*s, 1);
    e.due_at = from_epoch(sqlite3_column_int64(*s, 2));
    const auto rule = sqlite3_column_int64(*s, 3);
    const auto action = sqlite3_column_int64(*s, 4);
    const auto kind = sqlite3_column_int64(*s, 5);
    if (rule < 0 || static_cast<std::size_t>(rule) >= program_->rule_count() || action < 0 ||
        static_cast<std::size_t>(action) >=
            program_->rules().rules[static_cast<std::size_t>(rule)].actions.size() ||
        kind < 0 || kind > static_cast<std::int64_t>(action_kind::remove_from_group)) {
      throw sqlite_error(fmt::format("{}: outbox entry {} is corrupt (rule {}, action {}, kind {})",
                                     path_, e.sequence, rule, action, kind));
    }
    e.rule_index = static_cast<std::uint32_t>(rule);
    e.action_index = static_cast<std::uint32_t>(action);
    e.kind = static_cast<action_kind>(kind);
    e.arg = column_text(*s, 6);
    e.idempotency_key = from_db(sqlite3_column_int64(*s, 7));
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) {
    impl_->fail("read the outbox");
  }
  return out;
}

std::size_t sqlite_store::outbox_size() {
  use s{impl_->count_outbox};
  if (sqlite3_step(*s) != SQLITE_ROW) {
    impl_->fail("count the outbox");
  }
  return static_cast<std::size_t>(sqlite3_column_int64(*s, 0));
}

std::size_t sqlite_store::size() {
  use s{impl_->count_contacts};
  if (sqlite3_step(*s) != SQLITE_ROW) {
    impl_->fail("count the contacts");
  }
  return static_cast<std::size_t>(sqlite3_column_int64(*s, 0));
}

void sqlite_store::remove_from_outbox(std::int64_t last) {
  if (impl_->remove_outbox.get() == nullptr) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  use s{impl_->remove_outbox};
  sqlite3_bind_int64(*s, 1, last);
  impl_->step_done(*s, "delete delivered actions from the outbox");
}

std::optional<std::string> sqlite_store::get_meta(std::string_view key) {
  use s{impl_->get_meta};
  bind_text(*s, 1, key);
  const int rc = sqlite3_step(*s);
  if (rc == SQLITE_DONE) {
    return std::nullopt;
  }
  if (rc != SQLITE_ROW) {
    impl_->fail(fmt::format("read meta \"{}\"", key));
  }
  return std::string{column_blob(*s, 0)};
}

void sqlite_store::put_meta(std::string_view key, std::string_view text) {
  if (impl_->put_meta.get() == nullptr) {
    throw sqlite_error(fmt::format("{}: cannot write: the database is open read-only", path_));
  }
  use s{impl_->put_meta};
  bind_text(*s, 1, key);
  sqlite3_bind_blob(*s, 2, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  impl_->step_done(*s, fmt::format("write meta \"{}\"", key));
}

std::optional<std::string> sqlite_store::read_meta(const std::string& path, std::string_view key) {
  impl d;
  d.path = path;
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  d.get_meta = d.prepare("SELECT value FROM meta WHERE key = ?1");
  use s{d.get_meta};
  bind_text(*s, 1, key);
  const int rc = sqlite3_step(*s);
  if (rc == SQLITE_DONE) {
    return std::nullopt;
  }
  if (rc != SQLITE_ROW) {
    d.fail(fmt::format("read meta \"{}\"", key));
  }
  return std::string{column_blob(*s, 0)};
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

void sqlite_store::put_engine_state(const std::vector<rule_stats>& stats,
                                    const round_robin_counters& counters) {
  snapshot s;
  s.fingerprint = program_fingerprint(*program_);
  s.stats = stats;
  s.counters = counters;
  std::ostringstream out;
  write_snapshot(out, s);
  put_meta("nudge.engine", out.str());
}

// ---- durable_engine -------------------------------------------------------------------------

durable_engine::durable_engine(std::shared_ptr<const nudge::program> program, sqlite_store& store,
                               nudge::sink* sink, engine_options options)
    : store_(store), sink_(sink), engine_(std::move(program), &store, nullptr, options) {
  if (auto saved = store_.engine_state()) {
    engine_.restore(std::move(saved->first), std::move(saved->second));
  }
}

std::size_t durable_engine::process(std::span<const event> events, time_point now,
                                    std::span<const std::pair<std::string, std::string>> meta) {
  std::size_t added = 0;
  auto stats = engine_.stats();
  auto counters = engine_.counters();
  store_.begin();
  try {
    auto actions = engine_.process(events, now);
    added = actions.size();
    store_.add_to_outbox(actions);
    store_.put_engine_state(engine_.stats(), engine_.counters());
    for (const auto& [key, text] : meta) {
      store_.put_meta(key, text);
    }
    store_.commit();
  } catch (...) {
    store_.rollback();
    // The engine folded the batch's statistics in before the commit failed: take them back.
    engine_.restore(std::move(stats), std::move(counters));
    throw;
  }
  deliver_pending();
  return added;
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
    auto entries = store_.outbox(batch);
    if (entries.empty()) {
      return delivered;
    }
    std::vector<due_action> actions;
    actions.reserve(entries.size());
    for (const auto& e : entries) {
      const auto& rule = p.rules().rules[e.rule_index];
      due_action a;
      a.contact = e.contact;
      a.due_at = e.due_at;
      a.rule = rule.id;
      a.rule_index = e.rule_index;
      a.kind = e.kind;
      a.arg = e.arg;  // views into `entries`, alive during delivery
      a.definition = &rule.actions[e.action_index];
      a.idempotency_key = e.idempotency_key;
      actions.push_back(std::move(a));
    }
    try {
      sink_->deliver(actions);
    } catch (...) {
      std::throw_with_nested(delivery_error(fmt::format(
          "sink.deliver failed: {} actions stay in the outbox of {} (the batch is committed; "
          "call deliver_pending to retry)",
          store_.outbox_size(), store_.path())));
    }
    try {
      store_.remove_from_outbox(entries.back().sequence);
    } catch (...) {
      std::throw_with_nested(delivery_error(fmt::format(
          "{} actions were delivered but stay in the outbox of {}: they will be delivered again "
          "with the same idempotency keys (the batch is committed; call deliver_pending to retry)",
          entries.size(), store_.path())));
    }
    delivered += entries.size();
    if (entries.size() < batch) {
      return delivered;
    }
  }
}

}  // namespace nudge
