// libpq behind conn.hpp's small RAII layer.
#include "io/pg/conn.hpp"

#include <charconv>

#include <fmt/format.h>

#include <nudge/io/pg_store.hpp>

namespace nudge::pg_detail {

std::string redact(std::string_view url) {
  // postgresql://user:secret@host/db -> postgresql://user:***@host/db
  const auto scheme = url.find("://");
  const auto at = url.find('@');
  if (scheme != std::string_view::npos && at != std::string_view::npos && at > scheme) {
    const auto colon = url.find(':', scheme + 3);
    if (colon != std::string_view::npos && colon < at) {
      return fmt::format("{}***{}", url.substr(0, colon + 1), url.substr(at));
    }
  }
  // key=value form: password=... hidden the same way.
  std::string out{url};
  if (const auto p = out.find("password="); p != std::string::npos) {
    const auto end = out.find(' ', p);
    out.replace(p + 9, (end == std::string::npos ? out.size() : end) - (p + 9), "***");
  }
  return out;
}

std::int64_t result::int64(int row, int col) const {
  const auto t = text(row, col);
  std::int64_t v = 0;
  std::from_chars(t.data(), t.data() + t.size(), v);
  return v;
}

std::string result::bytes(int row, int col) const {
  const auto t = text(row, col);
  std::string out;
  if (t.size() < 2 || t[0] != '\\' || t[1] != 'x') {
    return out;
  }
  out.reserve((t.size() - 2) / 2);
  auto nibble = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  for (std::size_t i = 2; i + 1 < t.size(); i += 2) {
    out.push_back(static_cast<char>((nibble(t[i]) << 4) | nibble(t[i + 1])));
  }
  return out;
}

connection::connection(const std::string& url) : name_(redact(url)) {
  conn_ = pq().connectdb(url.c_str());
  if (pq().status(conn_) != CONNECTION_OK) {
    std::string reason = pq().error_message(conn_);
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) {
      reason.pop_back();
    }
    pq().finish(conn_);
    conn_ = nullptr;
    throw pg_error(fmt::format("{}: cannot connect: {}", name_, reason));
  }
  // Notices (e.g. "relation already exists, skipping") are not errors: keep them off stderr.
  pq().set_notice_processor(
      conn_, [](void*, const char*) {}, nullptr);
}

connection::~connection() {
  if (conn_ != nullptr) {
    pq().finish(conn_);
  }
}

result connection::exec(std::string_view doing, const char* sql, const std::vector<param>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) {
    values.push_back(p ? p->c_str() : nullptr);
  }
  // Without parameters: PQexec, which also runs several statements (the migrations).
  PGresult* raw = params.empty() ? pq().exec(conn_, sql)
                                 : pq().exec_params(conn_, sql, static_cast<int>(values.size()),
                                                    nullptr, values.data(), nullptr, nullptr, 0);
  const auto status = pq().result_status(raw);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    std::string reason =
        raw != nullptr ? pq().result_error_message(raw) : pq().error_message(conn_);
    if (reason.empty()) {
      reason = pq().error_message(conn_);
    }
    while (!reason.empty() && (reason.back() == '\n' || reason.back() == ' ')) {
      reason.pop_back();
    }
    pq().clear(raw);
    throw pg_error(fmt::format("{}: cannot {}: {}", name_, doing, reason));
  }
  return result{raw};
}

void connection::exec_quietly(const char* sql) noexcept {
  pq().clear(pq().exec(conn_, sql));
}

std::string bytea_text(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 + 2 * bytes.size());
  out += "\\x";
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 15]);
  }
  return out;
}

void array_element(std::string& out, std::string_view text) {
  out += out.empty() ? "{\"" : ",\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
    }
    out.push_back(c);
  }
  out.push_back('"');
}

std::string int_array(const std::vector<std::int64_t>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) {
    out += (i == 0 ? "" : ",") + std::to_string(values[i]);
  }
  out += '}';
  return out;
}

}  // namespace nudge::pg_detail
