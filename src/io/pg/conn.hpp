// A thin RAII layer over libpq for pg_store: a connection, a result, text parameters and
// PostgreSQL's array and bytea text forms. Our own rather than libpqxx: libpqxx is not among the
// project's packages, and the store needs a handful of calls (connect, exec with parameters,
// read text values). Private: not installed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/pg/libpq.hpp"

namespace nudge::pg_detail {

// The URL with its password, if any, replaced by "***": error messages name the database
// without giving the password away.
std::string redact(std::string_view url);

class result {
 public:
  result() = default;
  explicit result(PGresult* r) : r_(r, pq().clear) {}
  int rows() const { return pq().ntuples(r_.get()); }
  bool null(int row, int col) const { return pq().getisnull(r_.get(), row, col) != 0; }
  std::string_view text(int row, int col) const {
    return {pq().getvalue(r_.get(), row, col),
            static_cast<std::size_t>(pq().getlength(r_.get(), row, col))};
  }
  std::int64_t int64(int row, int col) const;
  bool boolean(int row, int col) const { return text(row, col) == "t"; }
  // A bytea column in PostgreSQL's hex output form ("\x0a1b"), decoded.
  std::string bytes(int row, int col) const;

 private:
  std::shared_ptr<PGresult> r_;
};

// One text parameter, or SQL NULL.
using param = std::optional<std::string>;

class connection {
 public:
  // Connects (libpq's URL or key=value string); throws pg_error naming the database and libpq's
  // reason.
  explicit connection(const std::string& url);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  // Runs `sql` with text parameters $1, $2, ...; throws pg_error "<db>: cannot <doing>: <reason>".
  result exec(std::string_view doing, const char* sql, const std::vector<param>& params = {});
  // exec, without throwing (for ROLLBACK on an error path).
  void exec_quietly(const char* sql) noexcept;
  bool broken() const { return pq().status(conn_) != CONNECTION_OK; }
  const std::string& name() const noexcept { return name_; }

 private:
  PGconn* conn_ = nullptr;
  std::string name_;  ///< the redacted URL
};

// PostgreSQL's text forms of values sent as parameters.
std::string bytea_text(std::string_view bytes);               // "\x0a1b"
void array_element(std::string& out, std::string_view text);  // "...", escaped, comma-separated
std::string int_array(const std::vector<std::int64_t>& values);

}  // namespace nudge::pg_detail
