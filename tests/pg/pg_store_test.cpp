// pg_store against a real PostgreSQL server (tests/pg/pg_test.py starts one and passes its URL in
// NUDGE_PG_URL; each test case makes a database of its own): batch atomicity when the store or the
// engine throws, fencing of a worker that lost its lease, balancing, the outbox's unique
// idempotency key and SKIP LOCKED claims.
#include <chrono>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <libpq-fe.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/pg_store.hpp>
#include <nudge/nudge.hpp>

namespace {

const nudge::time_point t0 = nudge::from_epoch(1'704'067'200);

// A rule that acts at once and again a day later: every event leaves a state and actions.
constexpr const char* rules_json = R"({"rules": [
  {"id": "hello", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "hi"}]},
  {"id": "later", "on": {"event": "signup"}, "delay": "1d",
   "then": [{"do": "send_email", "arg": "again"}]}]})";

std::string server() {
  const char* url = std::getenv("NUDGE_PG_URL");
  if (url == nullptr) {
    FAIL("NUDGE_PG_URL is not set (tests/pg/pg_test.py runs this binary)");
  }
  return url;
}

// The URL of database `name` on the test server (libpq: dbname=... overrides).
std::string database_url(const std::string& name) {
  return server() + " dbname=" + name;
}

// One value of a query, on a connection of its own.
std::string query(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  REQUIRE(PQstatus(c) == CONNECTION_OK);
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);  // "does not exist, skipping"
  PGresult* r = PQexec(c, sql.c_str());
  const auto status = PQresultStatus(r);
  std::string out;
  if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
    out = PQgetvalue(r, 0, 0);
  }
  const bool ok = status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK;
  const std::string error = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  INFO(sql << ": " << error);
  REQUIRE(ok);
  return out;
}

// A fresh database with the schema and `partitions` partitions.
std::string fresh(const std::string& name, std::uint32_t partitions) {
  query(server(), fmt::format("DROP DATABASE IF EXISTS {}", name));
  query(server(), fmt::format("CREATE DATABASE {}", name));
  const auto url = database_url(name);
  nudge::pg_init(url, partitions);
  return url;
}

std::shared_ptr<const nudge::program> program() {
  return nudge::load_rules(rules_json);
}

std::vector<nudge::event> signups(int n, nudge::time_point at) {
  std::vector<nudge::event> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(nudge::event{.contact = fmt::format("c{}", i), .type = "signup", .ts = at});
  }
  return out;
}

// Every held partition's share of `events`, processed up to `now`.
auto plan_for(const std::vector<nudge::event>& events, std::uint32_t partitions,
              nudge::time_point now, std::int64_t next_event) {
  return [=](std::span<const nudge::pg_progress> progress) {
    std::vector<nudge::pg_partition_batch> work;
    for (const auto& p : progress) {
      nudge::pg_partition_batch b;
      b.partition = p.partition;
      b.now = now;
      b.next_event = next_event;
      for (const auto& e : events) {
        if (nudge::pg_partition_of(e.contact, partitions) == p.partition) {
          b.events.push_back(e);
        }
      }
      work.push_back(std::move(b));
    }
    return work;
  };
}

class failing_store : public nudge::pg_store {
 public:
  using pg_store::pg_store;
  bool fail = true;

 protected:
  void before_commit() override {
    if (fail) {
      throw std::runtime_error("injected: the commit fails");
    }
  }
};

std::string counts(const std::string& url) {
  return query(url,
               "SELECT (SELECT count(*) FROM nudge_contacts) || ' ' || (SELECT count(*) FROM "
               "nudge_outbox) || ' ' || (SELECT sum(next_event) FROM nudge_progress)");
}

}  // namespace

TEST_CASE("a batch that fails before its commit leaves nothing behind", "[pg]") {
  const auto url = fresh("nudge_unit_atomic", 4);
  failing_store db{url, program(), {.worker_id = "a"}};
  REQUIRE(db.keep_leases().size() == 4);
  const auto events = signups(20, t0);
  CHECK_THROWS_WITH(db.process(plan_for(events, 4, t0, 20)), "injected: the commit fails");
  CHECK(counts(url) == "0 0 0");
  CHECK(db.commits() == 0);
  db.fail = false;
  CHECK(db.process(plan_for(events, 4, t0, 20)) == 20);
  CHECK(counts(url) == "20 20 80");
  CHECK(db.commits() == 1);
}

TEST_CASE("an engine error in one partition rolls back every partition's share", "[pg]") {
  const auto url = fresh("nudge_unit_engine_error", 4);
  nudge::pg_store db{url, program(), {.worker_id = "a"}};
  db.keep_leases();
  auto events = signups(20, t0 + nudge::seconds(100));
  REQUIRE(db.process(plan_for(events, 4, t0 + nudge::seconds(100), 20)) == 20);
  const auto before = counts(url);
  // c0's clock is at t0 + 100 s: an event before it is refused by the engine, after the other
  // partitions' shares were evaluated and written.
  auto late = signups(20, t0 + nudge::seconds(200));
  for (auto& e : late) {
    e.contact = "n" + e.contact;  // new contacts, in every partition
  }
  late.push_back(nudge::event{.contact = "c0", .type = "signup", .ts = t0});
  CHECK_THROWS_AS(db.process(plan_for(late, 4, t0 + nudge::seconds(200), 41)), nudge::input_error);
  CHECK(counts(url) == before);
  CHECK(db.commits() == 1);
}

TEST_CASE("a worker that lost its lease commits nothing (fencing)", "[pg]") {
  const auto url = fresh("nudge_unit_fencing", 4);
  nudge::pg_store paused{
      url, program(), {.worker_id = "paused", .lease = std::chrono::milliseconds{300}}};
  REQUIRE(paused.keep_leases().size() == 4);
  std::this_thread::sleep_for(std::chrono::milliseconds{600});  // "paused" past its lease
  nudge::pg_store other{url, program(), {.worker_id = "other"}};
  REQUIRE(other.keep_leases().size() == 4);  // the paused one is no longer live
  const auto events = signups(10, t0);
  try {
    paused.process(plan_for(events, 4, t0, 10));
    FAIL("the paused worker committed");
  } catch (const nudge::pg_lease_lost& e) {
    CHECK(e.partitions() == std::vector<std::uint32_t>{0, 1, 2, 3});
    CHECK_THAT(e.what(), Catch::Contains("worker paused lost its lease on partition 0 "
                                         "(generation 1 acquired, now 2 held by other)"));
    CHECK_THAT(e.what(), Catch::Contains("nothing committed"));
  }
  CHECK(paused.commits() == 0);
  CHECK(counts(url) == "0 0 0");
  // Its leases are gone: the next round acquires nothing while "other" holds them all.
  CHECK(paused.process(plan_for(events, 4, t0, 10)) == 0);
  CHECK(other.process(plan_for(events, 4, t0, 10)) == 10);
  CHECK(counts(url) == "10 10 40");
}

TEST_CASE("workers share the partitions: at most ceil(P / live workers) each", "[pg]") {
  const auto url = fresh("nudge_unit_balance", 64);
  std::vector<std::unique_ptr<nudge::pg_store>> workers;
  for (int i = 0; i < 4; ++i) {
    workers.push_back(std::make_unique<nudge::pg_store>(
        url, program(), nudge::pg_options{.worker_id = fmt::format("w{}", i)}));
  }
  std::vector<std::vector<std::uint32_t>> held(4);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) {
      held[static_cast<std::size_t>(i)] = workers[static_cast<std::size_t>(i)]->keep_leases();
    }
  }
  std::set<std::uint32_t> all;
  for (const auto& h : held) {
    CHECK(h.size() == 16);
    all.insert(h.begin(), h.end());
  }
  CHECK(all.size() == 64);
}

TEST_CASE("the outbox keeps an idempotency key once; claims are disjoint", "[pg]") {
  const auto url = fresh("nudge_unit_outbox", 4);
  {
    nudge::pg_store db{url, program(), {.worker_id = "a"}};
    db.keep_leases();
    const auto events = signups(30, t0);
    REQUIRE(db.process(plan_for(events, 4, t0, 30)) == 30);
    // The same batch again from scratch (a crash before anything else recorded it): the same
    // actions under the same keys, kept once.
    query(url, "UPDATE nudge_progress SET next_event = 0, now_epoch = NULL, engine = NULL");
    query(url, "DELETE FROM nudge_contacts");
    REQUIRE(db.process(plan_for(events, 4, t0, 30)) == 30);
    CHECK(query(url, "SELECT count(*) FROM nudge_outbox") == "30");
    db.release_leases();
  }
  // A claim inside another's delivery (two transactions at once): SKIP LOCKED gives the second
  // the rows the first did not lock; a delivery that throws marks nothing.
  std::set<std::uint64_t> first, second;
  CHECK_THROWS_WITH(nudge::pg_store::claim_outbox(
                        url, 10, [](auto) { throw std::runtime_error("the sink is down"); }),
                    "the sink is down");
  CHECK(query(url, "SELECT count(*) FROM nudge_outbox WHERE delivered_at IS NULL") == "30");
  const auto n = nudge::pg_store::claim_outbox(url, 10, [&](auto entries) {
    for (const auto& e : entries) {
      first.insert(e.idempotency_key);
    }
    nudge::pg_store::claim_outbox(url, 100, [&](auto more) {
      for (const auto& e : more) {
        second.insert(e.idempotency_key);
      }
    });
  });
  CHECK(n == 10);
  CHECK(first.size() == 10);
  CHECK(second.size() == 20);
  for (const auto k : first) {
    CHECK(!second.contains(k));
  }
  CHECK(query(url, "SELECT count(*) FROM nudge_outbox WHERE delivered_at IS NULL") == "0");
}

TEST_CASE("a database refuses other rules, a missing schema and another schema version", "[pg]") {
  const auto url = fresh("nudge_unit_refusals", 4);
  { nudge::pg_store db{url, program(), {.worker_id = "a", .reader = true}}; }
  auto other = nudge::load_rules(
      R"({"rules": [{"id": "x", "on": {"event": "signup"}, "then": [{"do": "add_tag", "arg": "t"}]}]})");
  CHECK_THROWS_WITH(nudge::pg_store(url, other, {.reader = true}),
                    Catch::Contains("the database belongs to another rule program (fingerprint"));
  CHECK_THROWS_WITH(nudge::pg_init(url, 8),
                    Catch::Contains("the database has 4 partitions, not 8"));
  query(url, "UPDATE nudge_meta SET value = '3' WHERE key = 'schema_version'");
  CHECK_THROWS_WITH(
      nudge::pg_store(url, program(), {.reader = true}),
      Catch::EndsWith("schema version 3, this build reads version 2 (a newer nudge)"));
  query(server(), "DROP DATABASE IF EXISTS nudge_unit_empty");
  query(server(), "CREATE DATABASE nudge_unit_empty");
  CHECK_THROWS_WITH(nudge::pg_store(database_url("nudge_unit_empty"), program()),
                    Catch::Contains("no nudge schema in this database (create it with: nudge pg "
                                    "init URL"));
}
