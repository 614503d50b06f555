// pg_store's schema: creation, migrations keyed by nudge_meta's schema_version, and the checks a
// connection makes before it uses a database (docs/live.md, "Many processes: PostgreSQL").
#include "io/pg/schema.hpp"

#include <fmt/format.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <nudge/io/pg_store.hpp>

namespace nudge {

std::uint32_t pg_partition_of(std::string_view id, std::uint32_t partitions) {
  return static_cast<std::uint32_t>(XXH3_64bits(id.data(), id.size()) % partitions);
}

namespace pg_detail {
namespace {

// migrations[v] takes a database from schema version v to v + 1. Each runs inside init's
// transaction; the partition rows are added after the last one (their count is init's
// argument).
constexpr const char* migrations[] = {
    // 0 -> 1
    R"sql(
CREATE TABLE nudge_leases(
  part int PRIMARY KEY,
  owner text,
  generation bigint NOT NULL DEFAULT 0,
  expires_at timestamptz NOT NULL DEFAULT '-infinity');
CREATE TABLE nudge_workers(id text PRIMARY KEY, expires_at timestamptz NOT NULL);
CREATE TABLE nudge_progress(
  part int PRIMARY KEY,
  next_event bigint NOT NULL DEFAULT 0,
  now_epoch bigint,
  contacts_loaded boolean NOT NULL DEFAULT false,
  engine bytea,
  batches bigint NOT NULL DEFAULT 0);
CREATE TABLE nudge_contacts(
  id text PRIMARY KEY,
  part int NOT NULL,
  next_due bigint NOT NULL,
  state bytea NOT NULL);
CREATE INDEX nudge_contacts_due ON nudge_contacts(part, next_due);
CREATE TABLE nudge_outbox(
  seq bigserial PRIMARY KEY,
  idempotency_key bigint NOT NULL UNIQUE,
  part int NOT NULL,
  ts bigint NOT NULL,
  contact text NOT NULL,
  rule text NOT NULL,
  action text NOT NULL,
  arg text NOT NULL,
  delivered_at timestamptz);
CREATE INDEX nudge_outbox_undelivered ON nudge_outbox(seq) WHERE delivered_at IS NULL;
)sql",
    // 1 -> 2: the events table hosts insert into (nudge run --pg --events-table). Its order is
    // `seq`; a statement-level trigger takes a lock held until the inserting transaction ends,
    // before the statement draws its sequence numbers, so rows become visible in `seq` order:
    // a worker that read up to seq N never sees a row below N appear later.
    R"sql(
CREATE TABLE nudge_events(
  seq bigserial PRIMARY KEY,
  ts text NOT NULL,
  contact text NOT NULL,
  type text NOT NULL,
  key text,
  value text);
CREATE FUNCTION nudge_events_in_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(7238146587022);
  RETURN NULL;
END $$;
CREATE TRIGGER nudge_events_in_order BEFORE INSERT ON nudge_events
  FOR EACH STATEMENT EXECUTE FUNCTION nudge_events_in_order();
)sql",
};
static_assert(std::size(migrations) == pg_schema_version);

std::optional<std::string> meta(connection& c, std::string_view key) {
  auto r =
      c.exec("read nudge_meta", "SELECT value FROM nudge_meta WHERE key = $1", {std::string{key}});
  if (r.rows() == 0) {
    return std::nullopt;
  }
  return std::string{r.text(0, 0)};
}

}  // namespace

schema_info check_schema(connection& c) {
  auto exists = c.exec("read the schema", "SELECT to_regclass('nudge_meta') IS NOT NULL");
  if (!exists.boolean(0, 0)) {
    throw pg_error(fmt::format(
        "{}: no nudge schema in this database (create it with: nudge pg init URL [--partitions "
        "64])",
        c.name()));
  }
  const auto version = meta(c, "schema_version");
  const auto partitions = meta(c, "partitions");
  if (!version || !partitions) {
    throw pg_error(fmt::format(
        "{}: nudge_meta has no schema_version or partitions: not a database nudge pg init made",
        c.name()));
  }
  schema_info info;
  info.version = std::stoll(*version);
  info.partitions = static_cast<std::uint32_t>(std::stoul(*partitions));
  if (info.version != pg_schema_version) {
    throw pg_error(fmt::format("{}: schema version {}, this build reads version {}{}", c.name(),
                               info.version, pg_schema_version,
                               info.version < pg_schema_version ? " (migrate it: nudge pg init URL)"
                                                                : " (a newer nudge)"));
  }
  info.fingerprint = meta(c, "program_fingerprint");
  return info;
}

}  // namespace pg_detail

std::string pg_init(const std::string& url, std::uint32_t partitions) {
  using namespace pg_detail;  // NOLINT(google-build-using-namespace)
  if (partitions == 0) {
    throw pg_error("--partitions must be at least 1");
  }
  connection c{url};
  c.exec("begin", "BEGIN");
  try {
    // Two inits at once take turns.
    c.exec("lock the schema", "SELECT pg_advisory_xact_lock(7238146587021)");
    c.exec("create nudge_meta",
           "CREATE TABLE IF NOT EXISTS nudge_meta(key text PRIMARY KEY, value text NOT NULL)");
    auto r = c.exec("read nudge_meta",
                    "SELECT (SELECT value FROM nudge_meta WHERE key = 'schema_version'), "
                    "(SELECT value FROM nudge_meta WHERE key = 'partitions')");
    const std::int64_t from = r.null(0, 0) ? 0 : std::stoll(std::string{r.text(0, 0)});
    if (from > pg_schema_version) {
      throw pg_error(fmt::format("{}: schema version {}, this build knows versions up to {}",
                                 c.name(), from, pg_schema_version));
    }
    if (!r.null(0, 1) && std::stoul(std::string{r.text(0, 1)}) != partitions) {
      throw pg_error(fmt::format(
          "{}: the database has {} partitions, not {}: the count is fixed when it is created "
          "(contacts would change partition)",
          c.name(), r.text(0, 1), partitions));
    }
    for (auto v = from; v < pg_schema_version; ++v) {
      c.exec(fmt::format("migrate to schema version {}", v + 1), migrations[v]);
    }
    std::string what;
    if (from == 0) {
      c.exec("create the partitions",
             "INSERT INTO nudge_leases(part) SELECT generate_series(0, $1::int - 1)",
             {std::to_string(partitions)});
      c.exec("create the partitions",
             "INSERT INTO nudge_progress(part) SELECT generate_series(0, $1::int - 1)",
             {std::to_string(partitions)});
      c.exec("write nudge_meta", "INSERT INTO nudge_meta(key, value) VALUES ('partitions', $1)",
             {std::to_string(partitions)});
      what = fmt::format("created schema version {} with {} partitions", pg_schema_version,
                         partitions);
    } else if (from < pg_schema_version) {
      what = fmt::format("migrated schema version {} to {}", from, pg_schema_version);
    } else {
      what = fmt::format("schema version {} already, {} partitions", from, partitions);
    }
    c.exec("write nudge_meta",
           "INSERT INTO nudge_meta(key, value) VALUES ('schema_version', $1) "
           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
           {std::to_string(pg_schema_version)});
    c.exec("commit", "COMMIT");
    return fmt::format("{}: {}", c.name(), what);
  } catch (...) {
    c.exec_quietly("ROLLBACK");
    throw;
  }
}

}  // namespace nudge
