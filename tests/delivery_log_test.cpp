// delivery_log (nudge deliver's records in a live database) and the writer's side of them:
// marks trim the outbox, dead letters are kept whole, a second deliverer is refused, and a
// database of schema version 7 is upgraded to 8 in place (docs/live.md, "Delivery").
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <nudge/engine.hpp>
#include <nudge/io/delivery_log.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/rule.hpp>

namespace {

using nudge::days;

std::shared_ptr<const nudge::program> one_rule() {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("hello").on(nudge::on("signup")).then(nudge::send_email("hi")));
  return nudge::program::compile(rs);
}

struct temp_dir {
  std::filesystem::path dir;
  std::string path;
  temp_dir() {
    dir = std::filesystem::current_path() / fmt::format("delivery_log_test_{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    path = (dir / "state.db").string();
  }
  ~temp_dir() { std::filesystem::remove_all(dir); }
};

// Three signups, three actions in the outbox (no sink).
void fill(const std::string& path, const std::shared_ptr<const nudge::program>& program) {
  nudge::sqlite_store db{path, *program};
  nudge::durable_engine engine{program, db, nullptr};
  const auto t0 = nudge::from_epoch(1704067200);
  std::vector<nudge::event> events;
  for (const char* c : {"a", "b", "c"}) {
    nudge::event e;
    e.contact = c;
    e.type = "signup";
    e.ts = t0;
    events.push_back(e);
  }
  engine.process(events, t0);
}

void exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

}  // namespace

TEST_CASE("delivery_log: marks trim the outbox, dead letters are listed, one deliverer") {
  const temp_dir tmp;
  const auto program = one_rule();
  fill(tmp.path, program);
  {
    nudge::delivery_log log{tmp.path};
    CHECK(log.through() == 0);
    CHECK_THROWS_WITH(nudge::delivery_log{tmp.path},
                      Catch::Contains("refused: another deliverer has this database open"));
    log.record_failure(1, 1);
    log.record_failure(1, 2);
    CHECK(log.attempts(1) == 2);
    CHECK(log.attempts(2) == 0);
    log.mark_delivered(1);
    CHECK(log.attempts(1) == 0);
    log.park({2, 5, "HTTP 503", R"({"contact":"b"})"});
    CHECK(log.through() == 2);
  }
  const auto dead = nudge::delivery_log::dead_letters(tmp.path);
  REQUIRE(dead.size() == 1);
  CHECK(dead[0].sequence == 2);
  CHECK(dead[0].attempts == 5);
  CHECK(dead[0].error == "HTTP 503");
  CHECK(dead[0].action == R"({"contact":"b"})");
  {
    // The writer trims what the deliverer marked; the third action stays.
    nudge::sqlite_store db{tmp.path, *program};
    CHECK(db.delivery_mark() == 2);
    CHECK(db.outbox_size() == 3);
    CHECK(db.trim_delivered() == 2);
    const auto left = db.outbox();
    REQUIRE(left.size() == 1);
    CHECK(left[0].contact == "c");
    CHECK(db.trim_delivered() == 0);
  }
  CHECK(nudge::sqlite_store::check(tmp.path).problems.empty());
  // A damaged dead letter is refused, naming it.
  exec(tmp.path, "UPDATE dead_letter SET error = 'HTTP 500'");
  CHECK_THROWS_WITH(nudge::delivery_log::dead_letters(tmp.path),
                    Catch::Contains("dead letter 2 fails its checksum"));
}

TEST_CASE("delivery_log: a database of schema version 7 gets the deliverer's tables") {
  const temp_dir tmp;
  const auto program = one_rule();
  fill(tmp.path, program);
  // As version 7 wrote it: no delivery tables, the version row resealed.
  const std::string key = "nudge.schema_version";
  std::string bytes(4, '\0');
  bytes[0] = static_cast<char>(key.size());
  bytes += key;
  bytes += "7";
  const auto sum = static_cast<std::int64_t>(XXH3_64bits_withSeed(bytes.data(), bytes.size(), 1));
  exec(tmp.path, fmt::format("DROP TABLE delivery; DROP TABLE dead_letter; UPDATE meta SET "
                             "value = '7', sum = {} WHERE key = 'nudge.schema_version'",
                             sum));
  CHECK(nudge::sqlite_store::read_meta(tmp.path, key) == "7");
  {
    // A reader reads it as it is: no marks, no dead letters.
    nudge::sqlite_store db{tmp.path, *program, {.read_only = true}};
    CHECK(db.delivery_mark() == 0);
    CHECK(db.outbox_size() == 3);
    CHECK(nudge::delivery_log::dead_letters(tmp.path).empty());
  }
  CHECK(nudge::sqlite_store::read_meta(tmp.path, key) == "7");
  {
    nudge::delivery_log log{tmp.path};  // a deliverer upgrades it
    log.mark_delivered(1);
  }
  CHECK(nudge::sqlite_store::read_meta(tmp.path, key) == "8");
  {
    nudge::sqlite_store db{tmp.path, *program};
    CHECK(db.trim_delivered() == 1);
    CHECK(db.outbox_size() == 2);
  }
  CHECK(nudge::sqlite_store::check(tmp.path).problems.empty());
}
