// Loading libpq at the first connection (libpq.hpp says why).
#include "io/pg/libpq.hpp"

#include <cstdlib>
#include <string>

#include <dlfcn.h>
#include <fmt/format.h>

#include <nudge/io/pg_store.hpp>

namespace nudge::pg_detail {
namespace {

template <typename F>
void resolve(void* lib, const std::string& name, const char* symbol, F& f) {
  void* p = ::dlsym(lib, symbol);
  if (p == nullptr) {
    throw pg_error(fmt::format("{}: no symbol {}: not a libpq", name, symbol));
  }
  f = reinterpret_cast<F>(p);
}

}  // namespace

const libpq_api& pq() {
  static const libpq_api api = [] {
    const char* env = std::getenv("NUDGE_LIBPQ");
    const std::string name = env != nullptr && *env != '\0' ? env : "libpq.so.5";
    void* lib = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = ::dlerror();
      throw pg_error(fmt::format(
          "the PostgreSQL store needs libpq, which cannot be loaded: {} (Debian: apt-get install "
          "libpq5)",
          why != nullptr ? why : name));
    }
    // Never closed: libpq stays loaded for the rest of the process.
    libpq_api a;
    resolve(lib, name, "PQconnectdb", a.connectdb);
    resolve(lib, name, "PQstatus", a.status);
    resolve(lib, name, "PQerrorMessage", a.error_message);
    resolve(lib, name, "PQfinish", a.finish);
    resolve(lib, name, "PQsetNoticeProcessor", a.set_notice_processor);
    resolve(lib, name, "PQexec", a.exec);
    resolve(lib, name, "PQexecParams", a.exec_params);
    resolve(lib, name, "PQresultStatus", a.result_status);
    resolve(lib, name, "PQresultErrorMessage", a.result_error_message);
    resolve(lib, name, "PQclear", a.clear);
    resolve(lib, name, "PQntuples", a.ntuples);
    resolve(lib, name, "PQgetvalue", a.getvalue);
    resolve(lib, name, "PQgetlength", a.getlength);
    resolve(lib, name, "PQgetisnull", a.getisnull);
    return a;
  }();
  return api;
}

}  // namespace nudge::pg_detail
