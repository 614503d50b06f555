// The layout of a nudge database (schema version 7, docs/live.md): its constants, the kinds of
// row and their checksums (XXH3, checksum.cpp), and the row counts kept in meta `nudge.rows`.
// Private: not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace nudge::sqlite_detail {

// Outbox records: a workflow step's action sets this bit in its rule field.
constexpr std::uint32_t workflow_flag = 0x80000000U;

// 2 added a timeline to contact states (one row per contact); 3 keeps states in a journal;
// 4 codes zero runs in state records; 5: states carry the delivery policy's channel send logs
// and deferred timers; 6: states carry workflow completion counts and locations; 7: every row
// carries a checksum, the file an application id, and `nudge.rows` counts the rows; 8 adds the
// deliverer's tables `delivery` and `dead_letter` (delivery_log; a version 7 database is given
// them when a writer or a deliverer opens it: add_delivery_tables).
constexpr std::string_view schema_version = "8";
// The one older version read (without the deliverer's tables) and upgraded in place.
constexpr std::string_view schema_version_7 = "7";
// The deliverer's tables (delivery_log.hpp): created with a new database, or added to a version
// 7 one.
constexpr std::string_view create_delivery_tables =
    "CREATE TABLE IF NOT EXISTS delivery(key TEXT PRIMARY KEY, value BLOB NOT NULL,"
    " sum INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS dead_letter(seq INTEGER PRIMARY KEY, attempts INTEGER NOT NULL,"
    " error TEXT NOT NULL, action BLOB NOT NULL, sum INTEGER NOT NULL);";
// The `delivery` key of the last outbox sequence delivered or parked by the deliverer.
constexpr std::string_view delivery_through = "through";
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

// ---- Checksums ------------------------------------------------------------------------------

// Every row carries XXH3-64 of its kind, its key columns and its blob, so that damage anywhere
// in it (a changed contact id in a state record, a changed sequence number, a row moved to
// another key or table) is refused on read instead of used. The kind is the seed.
enum class row_kind : std::uint64_t {
  meta = 1,
  checkpoint = 2,
  journal = 3,
  outbox = 4,
  delivery = 5,
  dead_letter = 6
};

// The kind's name in messages ("journal row", ...).
std::string_view row_kind_name(row_kind k);

// XXH3-64 of the row's kind (the seed), its key columns and its blob.
std::int64_t row_sum(row_kind kind, std::string_view key, std::string_view blob);

// The key columns of a row with integer keys, as hashed.
std::string int_key(std::int64_t a, std::int64_t b = 0);

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

}  // namespace nudge::sqlite_detail
