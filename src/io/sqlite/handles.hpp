// Small owners of SQLite handles for the store: a prepared statement, a connection, a use of a
// statement (reset when it ends), and the binding helpers. Private: not installed.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <sqlite3.h>

#include <nudge/io/sqlite_store.hpp>

namespace nudge::sqlite_detail {

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

inline void bind_text(sqlite3_stmt* s, int i, std::string_view text) {
  sqlite3_bind_text(s, i, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
}

inline void bind_blob(sqlite3_stmt* s, int i, std::string_view bytes) {
  sqlite3_bind_blob(s, i, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
}

inline std::string_view column_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p == nullptr ? std::string_view{}
                      : std::string_view{p, static_cast<std::size_t>(sqlite3_column_bytes(s, i))};
}

}  // namespace nudge::sqlite_detail
