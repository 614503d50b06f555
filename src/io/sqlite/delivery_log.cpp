// delivery_log: the deliverer's records in a live database (schema version 8), and the writer's
// side of them: sqlite_store::delivery_mark and trim_delivered (nudge/io/delivery_log.hpp).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <sqlite3.h>

#include <nudge/io/delivery_log.hpp>
#include <nudge/io/sqlite_store.hpp>

#include "io/sqlite/impl.hpp"

namespace nudge {

namespace {

constexpr std::string_view attempt_key = "attempt";  // "SEQUENCE ATTEMPTS" of the entry in flight

// The helpers take the store's impl as a template parameter: only sqlite_store and its friend
// delivery_log may name the type.

// One `delivery` row's value (its checksum checked), or nullopt.
template <class Impl>
std::optional<std::string> read_delivery(const Impl& d, std::string_view key) {
  statement s = d.prepare("SELECT value, sum FROM delivery WHERE key = ?1");
  bind_text(s.get(), 1, key);
  const int rc = sqlite3_step(s.get());
  if (rc == SQLITE_DONE) {
    return std::nullopt;
  }
  if (rc != SQLITE_ROW) {
    d.fail(fmt::format("read delivery \"{}\"", key));
  }
  const auto value = column_blob(s.get(), 0);
  if (row_sum(row_kind::delivery, key, value) != sqlite3_column_int64(s.get(), 1)) {
    d.damaged(fmt::format("delivery row \"{}\" fails its checksum", key));
  }
  return std::string{value};
}

template <class Impl>
std::int64_t read_through(const Impl& d) {
  const auto text = read_delivery(d, delivery_through);
  if (!text) {
    return 0;
  }
  try {
    return std::stoll(*text);
  } catch (const std::exception&) {
    d.damaged(fmt::format("delivery row \"{}\" is unreadable: \"{}\"", delivery_through, *text));
  }
}

template <class Impl>
void write_delivery(const Impl& d, std::string_view key, std::string_view value) {
  statement s = d.prepare("INSERT OR REPLACE INTO delivery(key, value, sum) VALUES(?1, ?2, ?3)");
  bind_text(s.get(), 1, key);
  bind_blob(s.get(), 2, value);
  sqlite3_bind_int64(s.get(), 3, row_sum(row_kind::delivery, key, value));
  d.step_done(s.get(), fmt::format("write delivery \"{}\"", key));
}

// The checksummed part of a dead letter beside its key columns (sequence, attempts).
std::string dead_letter_blob(const dead_letter& l) {
  return l.error + '\0' + l.action;
}

// One short write transaction (BEGIN IMMEDIATE: it waits for the writer's batch, at most the busy
// timeout, instead of failing on a snapshot the writer moved past).
template <class Impl, class F>
void in_transaction(const Impl& d, std::string_view doing, F&& f) {
  d.exec("BEGIN IMMEDIATE", doing);
  try {
    f();
    d.exec("COMMIT", doing);
  } catch (...) {
    sqlite3_exec(d.db, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

}  // namespace

struct delivery_log::impl {
  sqlite_store::impl d;
};

delivery_log::delivery_log(const std::string& path) : impl_(std::make_unique<impl>()) {
  auto& d = impl_->d;
  d.path = path;
  d.lock = sqlite_detail::writer_lock{path, ".deliver.lock", "deliverer"};
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  // The writer's batch holds the write lock for its commit: wait for it rather than fail.
  sqlite3_busy_timeout(d.db, 10000);
  d.exec("PRAGMA cell_size_check=ON", "open (set cell_size_check)");
  d.check_identity();
  if (d.version_read == schema_version_7) {
    d.add_delivery_tables();
  }
}

delivery_log::~delivery_log() = default;

std::int64_t delivery_log::through() {
  return read_through(impl_->d);
}

std::int64_t delivery_log::attempts(std::int64_t sequence) {
  const auto& d = impl_->d;
  const auto text = read_delivery(d, attempt_key);
  long long seq = 0, n = 0;
  if (!text || std::sscanf(text->c_str(), "%lld %lld", &seq, &n) != 2 || seq != sequence) {
    return 0;
  }
  return n;
}

void delivery_log::mark_delivered(std::int64_t sequence) {
  const auto& d = impl_->d;
  in_transaction(d, "mark an action delivered", [&] {
    write_delivery(d, delivery_through, std::to_string(sequence));
    statement s = d.prepare("DELETE FROM delivery WHERE key = ?1");
    bind_text(s.get(), 1, attempt_key);
    d.step_done(s.get(), "mark an action delivered");
  });
}

void delivery_log::record_failure(std::int64_t sequence, std::int64_t attempts) {
  const auto& d = impl_->d;
  in_transaction(d, "record a failed delivery",
                 [&] { write_delivery(d, attempt_key, fmt::format("{} {}", sequence, attempts)); });
}

void delivery_log::park(const dead_letter& letter) {
  const auto& d = impl_->d;
  in_transaction(d, "park an action as a dead letter", [&] {
    statement s = d.prepare(
        "INSERT OR REPLACE INTO dead_letter(seq, attempts, error, action, sum) "
        "VALUES(?1, ?2, ?3, ?4, ?5)");
    sqlite3_bind_int64(s.get(), 1, letter.sequence);
    sqlite3_bind_int64(s.get(), 2, letter.attempts);
    bind_text(s.get(), 3, letter.error);
    bind_blob(s.get(), 4, letter.action);
    sqlite3_bind_int64(s.get(), 5,
                       row_sum(row_kind::dead_letter, int_key(letter.sequence, letter.attempts),
                               dead_letter_blob(letter)));
    d.step_done(s.get(), "park an action as a dead letter");
    write_delivery(d, delivery_through, std::to_string(letter.sequence));
    statement del = d.prepare("DELETE FROM delivery WHERE key = ?1");
    bind_text(del.get(), 1, attempt_key);
    d.step_done(del.get(), "park an action as a dead letter");
  });
}

std::vector<dead_letter> delivery_log::dead_letters(const std::string& path) {
  sqlite_store::impl d;
  d.path = path;
  if (sqlite3_open_v2(path.c_str(), &d.db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  sqlite3_busy_timeout(d.db, 5000);
  d.check_identity();
  std::vector<dead_letter> out;
  if (d.version_read == schema_version_7) {
    return out;  // written before dead letters existed
  }
  statement s = d.prepare("SELECT seq, attempts, error, action, sum FROM dead_letter ORDER BY seq");
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    dead_letter l;
    l.sequence = sqlite3_column_int64(s.get(), 0);
    l.attempts = sqlite3_column_int64(s.get(), 1);
    l.error = std::string{column_blob(s.get(), 2)};
    l.action = std::string{column_blob(s.get(), 3)};
    if (row_sum(row_kind::dead_letter, int_key(l.sequence, l.attempts), dead_letter_blob(l)) !=
        sqlite3_column_int64(s.get(), 4)) {
      d.damaged(fmt::format("dead letter {} fails its checksum", l.sequence));
    }
    out.push_back(std::move(l));
  }
  if (rc != SQLITE_DONE) {
    d.fail("read the dead letters");
  }
  return out;
}

std::int64_t sqlite_store::delivery_mark() {
  const impl& d = *impl_;
  if (d.version_read == schema_version_7) {
    return 0;  // a reader of a database no deliverer nor writer of this version opened yet
  }
  return read_through(d);
}

std::size_t sqlite_store::trim_delivered() {
  const std::int64_t mark = delivery_mark();
  const std::int64_t before = impl_->delivered_through();
  if (mark <= before) {
    return 0;
  }
  remove_from_outbox(mark);
  return static_cast<std::size_t>(mark - before);
}

}  // namespace nudge
