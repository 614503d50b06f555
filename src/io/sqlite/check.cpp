// sqlite_store::check, behind `nudge db check`: every row of a database read and checked,
// every problem listed.
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
  report.schema_version = std::stoll(d.version_read);
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
  if (d.version_read != schema_version_7) {
    // The deliverer's tables (delivery_log.hpp): checksums only, as nudge.rows does not count
    // them (the deliverer writes beside the writer, never nudge.rows).
    statement s = d.prepare("SELECT key, value, sum FROM delivery");
    while (sqlite3_step(s.get()) == SQLITE_ROW) {
      ++report.delivery;
      const auto key = column_blob(s.get(), 0);
      if (row_sum(row_kind::delivery, key, column_blob(s.get(), 1)) !=
          sqlite3_column_int64(s.get(), 2)) {
        problems.push_back(fmt::format("delivery row \"{}\" fails its checksum", key));
      }
    }
    statement t = d.prepare("SELECT seq, attempts, error, action, sum FROM dead_letter");
    while (sqlite3_step(t.get()) == SQLITE_ROW) {
      ++report.dead_letters;
      const auto seq = sqlite3_column_int64(t.get(), 0);
      const std::string blob =
          std::string{column_blob(t.get(), 2)} + '\0' + std::string{column_blob(t.get(), 3)};
      if (row_sum(row_kind::dead_letter, int_key(seq, sqlite3_column_int64(t.get(), 1)), blob) !=
          sqlite3_column_int64(t.get(), 4)) {
        problems.push_back(fmt::format("dead letter {} fails its checksum", seq));
      }
    }
  }
  return report;
}

}  // namespace nudge
