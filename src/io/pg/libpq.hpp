// libpq, loaded with dlopen at the first connection rather than linked: libnudge and the `nudge`
// tool would otherwise map libpq and its ~20 libraries (GSSAPI, LDAP, TLS...) at every start of
// every program that links them, for a store most of them never open (`nudge --help` went from
// 5.6 to 11.1 MiB of peak RSS). libpq.so.5's C API and ABI are stable; the pointers keep
// <libpq-fe.h>'s types, so every call is type-checked as a linked one. Private: not installed.
#pragma once

#include <libpq-fe.h>

namespace nudge::pg_detail {

struct libpq_api {
  decltype(&PQconnectdb) connectdb = nullptr;
  decltype(&PQstatus) status = nullptr;
  decltype(&PQerrorMessage) error_message = nullptr;
  decltype(&PQfinish) finish = nullptr;
  decltype(&PQsetNoticeProcessor) set_notice_processor = nullptr;
  decltype(&PQexec) exec = nullptr;
  decltype(&PQexecParams) exec_params = nullptr;
  decltype(&PQresultStatus) result_status = nullptr;
  decltype(&PQresultErrorMessage) result_error_message = nullptr;
  decltype(&PQclear) clear = nullptr;
  decltype(&PQntuples) ntuples = nullptr;
  decltype(&PQgetvalue) getvalue = nullptr;
  decltype(&PQgetlength) getlength = nullptr;
  decltype(&PQgetisnull) getisnull = nullptr;
};

// libpq, loaded once per process (NUDGE_LIBPQ names another file than libpq.so.5). Throws
// pg_error naming the library and the loader's reason if it cannot be loaded (a later call tries
// again).
const libpq_api& pq();

}  // namespace nudge::pg_detail
