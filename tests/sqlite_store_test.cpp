#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <sqlite3.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <nudge/engine.hpp>
#include <nudge/error.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/rule.hpp>

namespace {

using nudge::days;
using nudge::from_epoch;
using nudge::hours;

std::shared_ptr<const nudge::program> shop_program(const std::string& winback = "winback") {
  nudge::rule_set rs;
  rs.owner_groups["reps"] = {"ala", "ola", "jan"};
  rs.rules.push_back(nudge::rule_builder("become_customer")
                         .on(nudge::on("purchase"))
                         .then(nudge::set_status("customer"))
                         .then(nudge::assign_owner("reps", nudge::owner_pick::round_robin) |
                               nudge::notify_host{}));
  rs.rules.push_back(nudge::rule_builder("winback")
                         .on(nudge::on("purchase"))
                         .check_after(days(3))
                         .only_if(nudge::not_happened(nudge::on("purchase")).within(days(3)))
                         .then(nudge::send_email(winback)));
  rs.rules.push_back(nudge::rule_builder("cart")
                         .on(nudge::on("cart"))
                         .check_after(hours(1))
                         .at_most(2, days(1))
                         .then(nudge::send_email("cart_reminder"))
                         .then(nudge::send_sms("cart_sms") | nudge::after(hours(5))));
  return nudge::program::compile(rs);
}

// Four days of a small shop, one batch per 12 hours.
std::vector<std::vector<nudge::event>> shop_batches() {
  std::vector<std::vector<nudge::event>> batches;
  const std::int64_t t0 = 1704067200;  // 2024-01-01
  for (int b = 0; b < 8; ++b) {
    std::vector<nudge::event> batch;
    for (int i = 0; i < 5; ++i) {
      const std::int64_t at = t0 + b * 43200 + i * 3000;
      const std::string contact = fmt::format("c{}", (b * 3 + i) % 6);
      batch.push_back({.contact = contact,
                       .type = (b + i) % 3 == 0 ? "purchase" : "cart",
                       .ts = from_epoch(at),
                       .key = fmt::format("k{}", b * 10 + i)});
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

nudge::time_point batch_end(std::size_t b) {
  return from_epoch(1704067200 + static_cast<std::int64_t>(b + 1) * 43200 - 1);
}

struct temp_db {
  std::filesystem::path dir;
  std::string path;
  explicit temp_db(const std::string& name) {
    dir =
        std::filesystem::current_path() / fmt::format("sqlite_store_test_{}_{}", ::getpid(), name);
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    path = (dir / "state.db").string();
  }
  ~temp_db() { std::filesystem::remove_all(dir); }
};

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// What a host sees: delivered actions in order, each key once.
struct recording_sink final : nudge::sink {
  std::vector<std::string> delivered;
  std::set<std::uint64_t> keys;
  std::size_t calls = 0;
  std::size_t fail_at = 0;  // 1-based call that throws; 0: never
  void deliver(std::span<const nudge::due_action> actions) override {
    ++calls;
    if (calls == fail_at) {
      throw std::runtime_error("sink down");
    }
    for (const auto& a : actions) {
      if (keys.insert(a.idempotency_key).second) {
        delivered.push_back(fmt::format("{} {} {} {} {} {}", nudge::to_epoch(a.ts), a.contact,
                                        a.rule, a.action(), a.arg, a.idempotency_key));
      }
    }
  }
};

// A sqlite_store that throws on its k-th call (of any method that touches the database).
class faulty_store final : public nudge::sqlite_store {
 public:
  using sqlite_store::sqlite_store;
  std::size_t calls = 0;
  std::size_t fail_at = 0;

  std::optional<nudge::contact_state> load(std::string_view c) override {
    tick("load");
    return sqlite_store::load(c);
  }
  nudge::contact_state* lend(std::string_view c) override {
    tick("lend");
    return sqlite_store::lend(c);
  }
  void save(std::span<nudge::contact_state> s) override {
    tick("save");
    sqlite_store::save(s);
  }
  std::vector<std::string> due(nudge::time_point t) override {
    tick("due");
    return sqlite_store::due(t);
  }
  void begin() override {
    tick("begin");
    sqlite_store::begin();
  }
  void commit() override {
    tick("commit");
    sqlite_store::commit();
  }
  void add_to_outbox(std::span<const nudge::due_action> a) override {
    tick("add_to_outbox");
    sqlite_store::add_to_outbox(a);
  }
  void remove_from_outbox(std::int64_t last) override {
    tick("remove_from_outbox");
    sqlite_store::remove_from_outbox(last);
  }

 private:
  void tick(const char* what) {
    if (++calls == fail_at) {
      throw std::runtime_error(fmt::format("injected fault in {}", what));
    }
  }
};

// Everything the database holds for the contacts c0..c5, and the engine's statistics.
std::string db_state(const std::string& path, const nudge::program& program) {
  nudge::sqlite_store db{path, program, {.read_only = true}};
  std::string out;
  for (int i = 0; i < 6; ++i) {
    auto s = db.load(fmt::format("c{}", i));
    if (s) {
      nudge::encode_contact_state(*s, out);
    }
  }
  auto engine_state = db.engine_state();
  REQUIRE(engine_state);
  for (const auto& st : engine_state->first) {
    out += fmt::format("|{} {} {} {} {} {}", st.rule, st.triggered, st.passed, st.failed,
                       st.suppressed, st.emitted);
  }
  for (auto c : engine_state->second) {
    out += fmt::format("|{}", c);
  }
  out += fmt::format("|outbox {}", db.outbox_size());
  return out;
}

// Runs `sql` on the database at `path` over a connection of its own (a test damaging it).
void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  INFO(sqlite3_errmsg(db));
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

// The checksum docs/live.md defines for a row: XXH3-64 seeded with the row kind (meta 1,
// checkpoint 2, journal 3, outbox 4) of the key's length (u32 LE), the key and the blob. Integer
// keys are two int64 LE (the second 0 but for the outbox's count).
std::int64_t row_sum(std::uint64_t kind, const std::string& key, const std::string& blob) {
  std::string bytes(4, '\0');
  for (int i = 0; i < 4; ++i) {
    bytes[static_cast<std::size_t>(i)] = static_cast<char>(key.size() >> (8 * i));
  }
  bytes += key;
  bytes += blob;
  return static_cast<std::int64_t>(XXH3_64bits_withSeed(bytes.data(), bytes.size(), kind));
}
std::string int_key(std::int64_t a, std::int64_t b = 0) {
  std::string k;
  for (auto v : {a, b}) {
    for (int i = 0; i < 8; ++i) {
      k += static_cast<char>(static_cast<std::uint64_t>(v) >> (8 * i));
    }
  }
  return k;
}

// One blob of the database at `path` (the first row `select` returns), changed by `change`
// and written back; the row's checksum is recomputed if `reseal` gives it (kind, key).
void change_blob(const std::string& path, const std::string& select, const std::string& update,
                 const std::function<void(std::string&)>& change,
                 std::optional<std::pair<std::uint64_t, std::string>> reseal = std::nullopt) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, select.c_str(), -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  std::string blob{static_cast<const char*>(sqlite3_column_blob(s, 0)),
                   static_cast<std::size_t>(sqlite3_column_bytes(s, 0))};
  sqlite3_finalize(s);
  change(blob);
  REQUIRE(sqlite3_prepare_v2(db, update.c_str(), -1, &s, nullptr) == SQLITE_OK);
  sqlite3_bind_blob(s, 1, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
  if (reseal) {
    sqlite3_bind_int64(s, 2, row_sum(reseal->first, reseal->second, blob));
  }
  REQUIRE(sqlite3_step(s) == SQLITE_DONE);
  sqlite3_finalize(s);
  sqlite3_close(db);
}

// Rows in one table of the database at `path`, read over a connection of its own.
std::int64_t row_count(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, ("SELECT count(*) FROM " + table).c_str(), -1, &s, nullptr) ==
          SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

// The journal is compacted at the default threshold (never, for these few contacts) or as
// often as the size rule allows (0: whenever it outgrows four times the checkpoint).
nudge::sqlite_options compaction(std::size_t after_bytes) {
  nudge::sqlite_options o;
  o.compact_after_bytes = after_bytes;
  return o;
}

// Runs every batch, retrying as the API says: after delivery_error the batch is committed
// (retry delivery); after any other error nothing was committed (retry the batch).
void run_with_retries(nudge::durable_engine& engine) {
  const auto batches = shop_batches();
  for (std::size_t b = 0; b <= batches.size(); ++b) {
    for (int attempt = 0;; ++attempt) {
      REQUIRE(attempt < 3);
      try {
        if (b < batches.size()) {
          engine.process(batches[b], batch_end(b));
        } else {
          engine.advance(batch_end(b + 4));
        }
        break;
      } catch (const nudge::delivery_error&) {
        engine.deliver_pending();
        break;
      } catch (const std::exception&) {
        continue;
      }
    }
  }
  engine.deliver_pending();
}

}  // namespace

TEST_CASE("sqlite_store: state, statistics and counters survive reopening") {
  const std::size_t compact_after = GENERATE(std::size_t{64} << 20, std::size_t{0});
  INFO("compact_after_bytes " << compact_after);
  temp_db tmp{"reopen"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  recording_sink sink;
  // Reference: the in-memory engine.
  nudge::memory_store memory;
  nudge::engine reference{program, &memory};
  std::size_t reference_actions = 0;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    const auto half = b < 4;
    if (half) {
      reference_actions += reference.process(batches[b], batch_end(b)).size();
    }
  }
  {
    nudge::sqlite_store db{tmp.path, *program, compaction(compact_after)};
    nudge::durable_engine engine{program, db, &sink};
    for (std::size_t b = 0; b < 2; ++b) {
      engine.process(batches[b], batch_end(b));
    }
  }
  {
    nudge::sqlite_store db{tmp.path, *program, compaction(compact_after)};
    nudge::durable_engine engine{program, db, &sink};
    for (std::size_t b = 2; b < 4; ++b) {
      engine.process(batches[b], batch_end(b));
    }
    CHECK(engine.engine().stats() == reference.stats());
    CHECK(engine.engine().counters() == reference.counters());
    CHECK(db.size() == memory.size());
    memory.for_each([&](const nudge::contact_state& s) { CHECK(db.load(s.contact.id) == s); });
    CHECK(db.outbox_size() == 0);
  }
  // Read by a new store: the checkpoint, then the journal in order.
  {
    nudge::sqlite_store db{tmp.path, *program, {.read_only = true}};
    CHECK(db.size() == memory.size());
    memory.for_each([&](const nudge::contact_state& s) { CHECK(db.load(s.contact.id) == s); });
  }
  CHECK(sink.delivered.size() == reference_actions);
  CHECK(reference_actions == 33);
  // Four batches, each one journal row, unless some were folded into the checkpoint.
  if (compact_after == 0) {
    CHECK(row_count(tmp.path, "checkpoint") == 1);
    CHECK(row_count(tmp.path, "journal") < 4);
  } else {
    CHECK(row_count(tmp.path, "checkpoint") == 0);
    CHECK(row_count(tmp.path, "journal") == 4);
  }
  // Delivered actions leave the outbox table too.
  CHECK(row_count(tmp.path, "outbox") == 0);
}

TEST_CASE(
    "sqlite_store: the outbox keeps undelivered actions when the sink throws and "
    "redelivers them next time") {
  temp_db tmp{"outbox"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  recording_sink sink;
  sink.fail_at = 1;
  std::size_t added = 0;
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, &sink};
    try {
      engine.process(batches[0], batch_end(0));
      FAIL("no delivery_error");
    } catch (const nudge::delivery_error& e) {
      CHECK(std::string{e.what()} ==
            fmt::format(
                "sink.deliver failed: 8 actions stay in the outbox of {} (the batch is "
                "committed; the next nudge run, or durable_engine::deliver_pending, delivers them "
                "first)",
                tmp.path));
    }
    CHECK(sink.delivered.empty());
    const auto pending = db.outbox();
    REQUIRE(pending.size() == 8);
    CHECK(pending[0].contact == "c0");
    CHECK(pending[0].kind == nudge::action_kind::assign_owner);
    CHECK(pending[0].arg == "ala");
    added = pending.size();
  }
  // A new process: the first process() delivers the old actions first, then the batch's.
  nudge::sqlite_store db{tmp.path, *program};
  nudge::durable_engine engine{program, db, &sink};
  added += engine.process(batches[1], batch_end(1));
  CHECK(sink.delivered.size() == added);
  CHECK(sink.delivered.front().rfind("1704067200 c0 become_customer assign_owner ala ", 0) == 0);
  CHECK(db.outbox_size() == 0);
}

TEST_CASE(
    "sqlite_store: a store or sink failing on its k-th call, then a retry, ends as a run "
    "without faults") {
  // Also with compaction at most commits, so that faults hit it too.
  const std::size_t compact_after = GENERATE(std::size_t{64} << 20, std::size_t{0});
  INFO("compact_after_bytes " << compact_after);
  const auto program = shop_program();
  std::vector<std::string> expected_actions;
  std::string expected_state;
  std::size_t store_calls = 0, sink_calls = 0;
  {
    temp_db tmp{"faults_reference"};
    recording_sink sink;
    faulty_store db{tmp.path, *program, compaction(compact_after)};
    nudge::durable_engine engine{program, db, &sink};
    run_with_retries(engine);
    expected_actions = sink.delivered;
    store_calls = db.calls;
    sink_calls = sink.calls;
    expected_state = db_state(tmp.path, *program);
    CHECK(row_count(tmp.path, "checkpoint") == (compact_after == 0 ? 1 : 0));
  }
  REQUIRE(expected_actions.size() == 72);
  // Each delivery marks the outbox in a transaction of its own: begin and commit count too;
  // a known contact is lent (evaluated in place), a new one looked up with load.
  REQUIRE(store_calls == 123);
  REQUIRE(sink_calls == 9);
  for (std::size_t k = 1; k <= store_calls; ++k) {
    INFO("store fails on call " << k);
    temp_db tmp{"faults_store"};
    recording_sink sink;
    faulty_store db{tmp.path, *program, compaction(compact_after)};
    db.fail_at = k;
    nudge::durable_engine engine{program, db, &sink};
    run_with_retries(engine);
    CHECK(sink.delivered == expected_actions);
    CHECK(db_state(tmp.path, *program) == expected_state);
  }
  for (std::size_t k = 1; k <= sink_calls; ++k) {
    INFO("sink fails on call " << k);
    temp_db tmp{"faults_sink"};
    recording_sink sink;
    sink.fail_at = k;
    faulty_store db{tmp.path, *program, compaction(compact_after)};
    nudge::durable_engine engine{program, db, &sink};
    run_with_retries(engine);
    CHECK(sink.delivered == expected_actions);
    CHECK(db_state(tmp.path, *program) == expected_state);
  }
}

TEST_CASE(
    "sqlite_store: a batch failing after states were evaluated in place changes nothing, in "
    "memory or on disk") {
  temp_db tmp{"lent"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  nudge::engine_options strict;
  strict.create_unknown_contacts = false;
  recording_sink reference_sink;
  std::string reference_state;
  {
    // The reference: batch 0, then batch 1 with its late newcomer, uninterrupted.
    temp_db ref{"lent_reference"};
    nudge::sqlite_store db{ref.path, *program};
    nudge::durable_engine engine{program, db, &reference_sink};
    engine.process(batches[0], batch_end(0));
    engine.process(batches[1], batch_end(1));
    reference_state = db_state(ref.path, *program);
  }
  recording_sink sink;
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, &sink};
    engine.process(batches[0], batch_end(0));
    const std::string before = db_state(tmp.path, *program);
    std::string in_memory_before;
    for (int i = 0; i < 6; ++i) {
      if (auto s = db.load(fmt::format("c{}", i))) {
        nudge::encode_contact_state(*s, in_memory_before);
      }
    }
    // Batch 1 names c3, c4 (known: lent and evaluated in place first), then c5, whom the
    // strict engine refuses: the batch fails after two lent states changed.
    nudge::durable_engine strict_engine{program, db, &sink, strict};
    CHECK_THROWS_WITH(strict_engine.process(batches[1], batch_end(1)),
                      "event 2 (contact \"c5\"): unknown contact");
    CHECK(db_state(tmp.path, *program) == before);
    std::string in_memory_after;
    for (int i = 0; i < 6; ++i) {
      if (auto s = db.load(fmt::format("c{}", i))) {
        nudge::encode_contact_state(*s, in_memory_after);
      }
    }
    CHECK(in_memory_after == in_memory_before);
    // The same store goes on as if the failed batch had never been tried.
    engine.process(batches[1], batch_end(1));
  }
  CHECK(sink.delivered == reference_sink.delivered);
  CHECK(db_state(tmp.path, *program) == reference_state);
}

TEST_CASE("sqlite_store: a state record with a broken zero run is refused naming the row") {
  temp_db tmp{"zero_runs"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, nullptr};
    engine.process(batches[0], batch_end(0));
  }
  std::size_t bytes = 0;
  // Append a record of two bytes, 00 00: a zero run of length 0 cannot be coded. The row's
  // checksum is recomputed, so that the decoder's own check is what refuses it.
  change_blob(
      tmp.path, "SELECT states FROM journal WHERE batch = 1",
      "UPDATE journal SET states = ?1, sum = ?2 WHERE batch = 1",
      [&](std::string& blob) {
        bytes = blob.size();
        blob.append("\x02\x00\x00\x00\x00\x00", 6);
      },
      std::pair{std::uint64_t{3}, int_key(1)});
  CHECK_THROWS_WITH(
      (nudge::sqlite_store{tmp.path, *program}),
      fmt::format("{}: journal row 1 is corrupt: broken zero run in the state record at byte {}",
                  tmp.path, bytes));
}

TEST_CASE("sqlite_store: a read-only database refuses the batch and keeps the previous state") {
  temp_db tmp{"read_only"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, nullptr};
    engine.process(batches[0], batch_end(0));
  }
  const auto before = db_state(tmp.path, *program);
  {
    nudge::sqlite_store db{tmp.path, *program, {.read_only = true}};
    nudge::durable_engine engine{program, db, nullptr};
    CHECK_THROWS_WITH(
        engine.process(batches[1], batch_end(1)),
        fmt::format("{}: cannot begin a transaction: the database is open read-only", tmp.path));
    CHECK(engine.engine().stats() == db.engine_state()->first);
  }
  CHECK(db_state(tmp.path, *program) == before);
}

TEST_CASE("sqlite_store: a corrupt database file is refused and left as it was") {
  temp_db tmp{"corrupt"};
  const auto program = shop_program();
  const std::string garbage(8192, 'x');
  std::ofstream{tmp.path, std::ios::binary} << garbage;
  CHECK_THROWS_WITH(
      (nudge::sqlite_store{tmp.path, *program}),
      fmt::format("{}: cannot open (read the header): file is not a database", tmp.path));
  CHECK(read_file(tmp.path) == garbage);
}

TEST_CASE("sqlite_store: a database of another program is refused naming both fingerprints") {
  temp_db tmp{"other_program"};
  const auto program = shop_program();
  const auto other = shop_program("winback_v2");
  { nudge::sqlite_store db{tmp.path, *program}; }
  CHECK_THROWS_WITH(
      (nudge::sqlite_store{tmp.path, *other}),
      fmt::format("{}: database written for program fingerprint {:016x}, the loaded rules have "
                  "fingerprint {:016x} (a database only opens with the rule program that wrote "
                  "it)",
                  tmp.path, nudge::program_fingerprint(*program),
                  nudge::program_fingerprint(*other)));
}

namespace {

// Pages in the database at `path` as committed (WAL included), over a connection of its own.
std::int64_t page_count(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

// Twelve batches, each bringing 100 new contacts (and events for older ones), so that the
// database grows with every batch.
std::vector<std::vector<nudge::event>> growing_batches(std::vector<std::string>& ids) {
  std::vector<std::vector<nudge::event>> batches;
  const std::int64_t t0 = 1704067200;
  for (int b = 0; b < 12; ++b) {
    std::vector<nudge::event> batch;
    for (int i = 0; i < 100; ++i) {
      ids.push_back(fmt::format("b{}_contact_{}", b, i));
      const std::int64_t at = t0 + b * 43200 + i * 60;
      batch.push_back({.contact = ids.back(), .type = "cart", .ts = from_epoch(at)});
      batch.push_back({.contact = ids[static_cast<std::size_t>(b * 37 + i * 7) % ids.size()],
                       .type = i % 3 == 0 ? "purchase" : "cart",
                       .ts = from_epoch(at + 1),
                       .key = fmt::format("k{}_{}", b, i)});
    }
    batches.push_back(std::move(batch));
  }
  return batches;
}

// Every contact's state, the statistics, counters and the outbox, read as a new process would.
std::string full_state(const std::string& path, const nudge::program& program,
                       const std::vector<std::string>& ids) {
  nudge::sqlite_store db{path, program, {.read_only = true}};
  std::string out = fmt::format("{} contacts", db.size());
  for (const auto& id : ids) {
    if (auto s = db.load(id)) {
      nudge::encode_contact_state(*s, out);
    }
  }
  if (auto engine_state = db.engine_state()) {
    for (const auto& st : engine_state->first) {
      out += fmt::format("|{} {} {} {} {} {}", st.rule, st.triggered, st.passed, st.failed,
                         st.suppressed, st.emitted);
    }
    for (auto c : engine_state->second) {
      out += fmt::format("|{}", c);
    }
  }
  for (const auto& e : db.outbox()) {
    out += fmt::format("|outbox {} {} {}", e.sequence, e.contact, e.idempotency_key);
  }
  return out;
}

}  // namespace

TEST_CASE(
    "sqlite_store: a full disk refuses the batch, keeps the previous state, and with room "
    "again a retry ends as an uninterrupted run") {
  const auto program = shop_program();
  std::vector<std::string> ids;
  const auto batches = growing_batches(ids);
  const auto end_of = [](std::size_t b) { return batch_end(b); };
  const auto final_time = batch_end(batches.size() + 4);

  std::vector<std::string> expected_actions;
  std::string expected_state;
  std::int64_t pages_at_half = 0;
  {
    temp_db tmp{"disk_full_reference"};
    recording_sink sink;
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, &sink};
    for (std::size_t b = 0; b < batches.size(); ++b) {
      engine.process(batches[b], end_of(b));
      if (b == batches.size() / 2) {
        pages_at_half = page_count(tmp.path);
      }
    }
    engine.advance(final_time);
    expected_actions = sink.delivered;
    expected_state = full_state(tmp.path, *program, ids);
    REQUIRE(page_count(tmp.path) > pages_at_half);
  }
  REQUIRE(expected_actions.size() > 100);

  // The same run on a "disk" of pages_at_half pages: SQLite reports SQLITE_FULL as it does
  // when the file system has no room left.
  temp_db tmp{"disk_full"};
  recording_sink sink;
  std::size_t refused = batches.size();
  {
    nudge::sqlite_store db{
        tmp.path, *program, {.max_pages = static_cast<std::uint32_t>(pages_at_half)}};
    nudge::durable_engine engine{program, db, &sink};
    for (std::size_t b = 0; b < batches.size(); ++b) {
      const std::string before = full_state(tmp.path, *program, ids);
      const auto stats_before = engine.engine().stats();
      const auto counters_before = engine.engine().counters();
      const auto delivered_before = sink.delivered;
      try {
        engine.process(batches[b], end_of(b));
      } catch (const std::exception& e) {
        INFO(e.what());
        // Either the save inside the engine (wrapped as callback_error "store.save failed: ")
        // or the outbox or commit after it; both name the file and SQLite's reason.
        CHECK_THAT(e.what(), Catch::Contains(tmp.path + ": cannot ") &&
                                 Catch::EndsWith(": database or disk is full"));
        CHECK(full_state(tmp.path, *program, ids) == before);
        CHECK(engine.engine().stats() == stats_before);
        CHECK(engine.engine().counters() == counters_before);
        CHECK(sink.delivered == delivered_before);
        // Still full: the same batch fails the same way and changes nothing.
        CHECK_THROWS_WITH(engine.process(batches[b], end_of(b)),
                          Catch::EndsWith(": database or disk is full"));
        CHECK(full_state(tmp.path, *program, ids) == before);
        refused = b;
        break;
      }
    }
  }
  REQUIRE(refused > 0);
  REQUIRE(refused < batches.size());
  // Room again (the cap is per connection: reopen without it) and carry on from the refused
  // batch, as a host would after freeing space.
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, &sink};
    for (std::size_t b = refused; b < batches.size(); ++b) {
      engine.process(batches[b], end_of(b));
    }
    engine.advance(final_time);
  }
  CHECK(sink.delivered == expected_actions);
  CHECK(full_state(tmp.path, *program, ids) == expected_state);
}

TEST_CASE(
    "sqlite_store: a database of an older schema (one row per contact) is refused and left "
    "as it was") {
  temp_db tmp{"schema_v2"};
  const auto program = shop_program();
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(tmp.path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "PRAGMA journal_mode=WAL;"  // as version 1 wrote them
                         "CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);"
                         "CREATE TABLE contacts(id TEXT PRIMARY KEY, state BLOB NOT NULL,"
                         " next_due INTEGER) WITHOUT ROWID;"
                         "INSERT INTO meta VALUES('nudge.schema_version', '2');"
                         "INSERT INTO contacts VALUES('c0', x'00', NULL);",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const std::string before = read_file(tmp.path);
  const std::string message = fmt::format(
      "{}: database schema version 2, this build reads versions 7 and 8 (versions 1 and 2 "
      "kept one row per contact, 3 stored state records uncoded, 4 states without the delivery "
      "policy, 5 states without workflow completion counts and locations, 6 rows without "
      "checksums; there is no conversion: replay the events into a new database)",
      tmp.path);
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}), message);
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program, {.read_only = true}}), message);
  CHECK(read_file(tmp.path) == before);
  CHECK(row_count(tmp.path, "contacts") == 1);
}

TEST_CASE(
    "sqlite_store: a second writer is refused at once naming the holder, readers still read, "
    "and after the first closes the second continues") {
  temp_db tmp{"two_writers"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  nudge::memory_store memory;
  nudge::engine reference{program, &memory};
  std::string lock_text;
  {
    nudge::sqlite_store first{tmp.path, *program};
    nudge::durable_engine a{program, first, nullptr};
    a.process(batches[0], batch_end(0));
    reference.process(batches[0], batch_end(0));
    lock_text = read_file(tmp.path + ".lock");
    char host[256] = {};
    REQUIRE(::gethostname(host, sizeof host - 1) == 0);
    CHECK_THAT(lock_text,
               Catch::StartsWith(fmt::format("pid {} on host {} since ", ::getpid(), host)));
    lock_text.pop_back();  // its newline
    const std::string refusal = fmt::format(
        "{}: refused: another writer has this database open ({}; lock file {}.lock); one "
        "writer at a time: wait until it ends, or stop it (readers such as nudge outbox still "
        "work)",
        tmp.path, lock_text, tmp.path);
    CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}), refusal);
    // Refused before anything was opened: the first writer goes on undisturbed.
    CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program, compaction(0)}), refusal);
    a.process(batches[1], batch_end(1));
    reference.process(batches[1], batch_end(1));
    // Readers are not writers: they open beside it and see its commits.
    nudge::sqlite_store reader{tmp.path, *program, {.read_only = true}};
    CHECK(reader.size() == memory.size());
    a.process(batches[2], batch_end(2));
    reference.process(batches[2], batch_end(2));
    memory.for_each([&](const nudge::contact_state& s) { CHECK(reader.load(s.contact.id) == s); });
    CHECK(reader.outbox_size() == first.outbox_size());
  }
  // The first writer closed (or died: the kernel drops the lock with the process): the
  // second opens and continues from its commits.
  nudge::sqlite_store second{tmp.path, *program};
  nudge::durable_engine b{program, second, nullptr};
  b.process(batches[3], batch_end(3));
  reference.process(batches[3], batch_end(3));
  memory.for_each([&](const nudge::contact_state& s) { CHECK(second.load(s.contact.id) == s); });
  CHECK(second.size() == memory.size());
  CHECK(b.engine().stats() == reference.stats());
  // Every batch's actions are in the one outbox, in commit order, each once.
  const auto pending = second.outbox();
  CHECK(pending.size() == second.outbox_size());
  for (std::size_t i = 0; i < pending.size(); ++i) {
    CHECK(pending[i].sequence == static_cast<std::int64_t>(i + 1));
  }
  CHECK(pending.size() == 33);
}

TEST_CASE(
    "sqlite_store: delivery in slices smaller than a batch's row marks progress within the "
    "row") {
  temp_db tmp{"slices"};
  const auto program = shop_program();
  const auto batches = shop_batches();
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, nullptr};  // no sink: everything stays
    engine.process(batches[0], batch_end(0));
  }
  nudge::sqlite_store db{tmp.path, *program};
  const auto all = db.outbox();
  REQUIRE(all.size() == 8);
  recording_sink sink;
  sink.fail_at = 2;
  nudge::durable_engine engine{program, db, &sink};
  CHECK_THROWS_AS(engine.deliver_pending(3), nudge::delivery_error);
  // The first slice of 3 went out and left; the rest wait, numbered as before.
  CHECK(sink.delivered.size() == 3);
  const auto rest = db.outbox();
  REQUIRE(rest.size() == 5);
  CHECK(rest.front() == all[3]);
  CHECK(rest.back() == all.back());
  CHECK(db.outbox_size() == 5);
  CHECK(row_count(tmp.path, "outbox") == 1);
  CHECK(engine.deliver_pending(3) == 5);
  CHECK(sink.delivered.size() == 8);
  CHECK(db.outbox_size() == 0);
  CHECK(row_count(tmp.path, "outbox") == 0);
  // Later batches are numbered after the delivered ones.
  engine.process(batches[1], batch_end(1));
  CHECK(db.outbox_size() == 0);
  CHECK(sink.keys.size() == sink.delivered.size());
}

namespace {

// A database with every record kind: a checkpoint part, journal rows, undelivered outbox rows
// (no sink) and meta rows, host entries included.
void build_every_kind(const std::string& path, const std::shared_ptr<const nudge::program>& p) {
  const auto batches = shop_batches();
  {
    nudge::sqlite_store db{path, *p, compaction(0)};
    nudge::durable_engine engine{p, db, nullptr};
    engine.process(batches[0], batch_end(0));
    engine.process(batches[1], batch_end(1), {{{"host.position", "42"}}});
  }
  nudge::sqlite_store db{path, *p};  // no compaction: the next batches stay journal rows
  nudge::durable_engine engine{p, db, nullptr};
  engine.process(batches[2], batch_end(2));
  engine.process(batches[3], batch_end(3));
}

std::int64_t query_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  const std::int64_t n = sqlite3_column_int64(s, 0);
  sqlite3_finalize(s);
  sqlite3_close(db);
  return n;
}

std::string damaged(const std::string& path, const std::string& what) {
  return fmt::format(
      "{}: {}: the database is damaged and was not used (nudge db check {} lists every damaged "
      "record; restore the file from a backup, or replay the events into a new database)",
      path, what, path);
}

}  // namespace

TEST_CASE(
    "sqlite_store: damage to any stored record (a flipped bit, a changed contact id or key, a "
    "lost row) is refused naming the record, and leaves the file as it was") {
  const auto program = shop_program();
  temp_db clean{"damage_clean"};
  build_every_kind(clean.path, program);
  const auto journal_rows = query_int(clean.path, "SELECT count(*) FROM journal");
  const auto outbox_rows = query_int(clean.path, "SELECT count(*) FROM outbox");
  REQUIRE(query_int(clean.path, "SELECT count(*) FROM checkpoint") == 1);
  REQUIRE(journal_rows == 3);
  REQUIRE(outbox_rows == 4);
  const auto last_outbox = query_int(clean.path, "SELECT max(first_seq) FROM outbox");
  const auto outbox_end = query_int(clean.path, "SELECT max(first_seq + count) FROM outbox");
  const auto flip = [](std::size_t byte) {
    return [byte](std::string& blob) {
      REQUIRE(blob.size() > byte);
      blob[byte] = static_cast<char>(blob[byte] ^ 0x10);
    };
  };
  struct damage {
    std::string name;
    std::function<void(const std::string&)> apply;
    std::string message;
  };
  const std::vector<damage> cases{
      {"a bit in the checkpoint",
       [&](const std::string& p) {
         change_blob(p, "SELECT states FROM checkpoint WHERE part = 0",
                     "UPDATE checkpoint SET states = ?1 WHERE part = 0", flip(40));
       },
       "checkpoint part 0 fails its checksum"},
      {"a bit in a journal row",
       [&](const std::string& p) {
         change_blob(p, "SELECT states FROM journal WHERE batch = 2",
                     "UPDATE journal SET states = ?1 WHERE batch = 2", flip(25));
       },
       "journal row 2 fails its checksum"},
      {"a contact id in a journal record",
       [&](const std::string& p) {
         change_blob(p, "SELECT states FROM journal WHERE batch = 1",
                     "UPDATE journal SET states = ?1 WHERE batch = 1", [](std::string& blob) {
                       const auto at = blob.find("c4");
                       REQUIRE(at != std::string::npos);
                       blob[at + 1] = '1';
                     });
       },
       "journal row 1 fails its checksum"},
      {"a journal row's number",
       [&](const std::string& p) { exec_sql(p, "UPDATE journal SET batch = 7 WHERE batch = 3"); },
       "journal row 7 fails its checksum"},
      {"a lost journal row",
       [&](const std::string& p) { exec_sql(p, "DELETE FROM journal WHERE batch = 2"); },
       "journal row 2 is missing"},
      {"a bit in an outbox row",
       [&](const std::string& p) {
         change_blob(p, "SELECT actions FROM outbox WHERE first_seq = 1",
                     "UPDATE outbox SET actions = ?1 WHERE first_seq = 1", flip(17));
       },
       "outbox row 1 fails its checksum"},
      {"an outbox row's count",
       [&](const std::string& p) {
         exec_sql(p, "UPDATE outbox SET count = count - 1 WHERE first_seq = 1");
       },
       "outbox row 1 fails its checksum"},
      {"the last outbox row lost",
       [&](const std::string& p) {
         exec_sql(p, fmt::format("DELETE FROM outbox WHERE first_seq = {}", last_outbox));
       },
       fmt::format("outbox entries {} to {} are missing", last_outbox, outbox_end - 1)},
      {"a bit in meta nudge.engine",
       [&](const std::string& p) {
         change_blob(p, "SELECT value FROM meta WHERE key = 'nudge.engine'",
                     "UPDATE meta SET value = ?1 WHERE key = 'nudge.engine'", flip(30));
       },
       "meta \"nudge.engine\" fails its checksum"},
      {"a host entry's key",
       [&](const std::string& p) {
         exec_sql(p, "UPDATE meta SET key = 'host.positioN' WHERE key = 'host.position'");
       },
       "meta \"host.positioN\" fails its checksum"},
      {"a lost host entry",
       [&](const std::string& p) { exec_sql(p, "DELETE FROM meta WHERE key = 'host.position'"); },
       "the meta table has 4 rows, 5 were written"},
      {"a checksum",
       [&](const std::string& p) {
         exec_sql(p, "UPDATE journal SET sum = sum + 1 WHERE batch = 1");
       },
       "journal row 1 fails its checksum"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    temp_db tmp{"damage"};
    std::filesystem::copy_file(clean.path, tmp.path);
    c.apply(tmp.path);
    const std::string before = read_file(tmp.path);
    // The message names the record (and, for a row of states or actions, the contacts it
    // names as far as it can be read: "journal row 2 fails its checksum (its records name
    // contacts c0, c1, ...)").
    const std::string whole = damaged(tmp.path, c.message);
    // (Named: a combined matcher keeps references to its parts.)
    const auto starts = Catch::StartsWith(tmp.path + ": " + c.message);
    const auto ends = Catch::EndsWith(whole.substr(whole.find(": the database is damaged")));
    const auto message = starts && ends;
    CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}), message);
    // A reader refuses it too, when it reads the damaged record.
    nudge::sqlite_store reader{tmp.path, *program, {.read_only = true}};
    CHECK_THROWS_WITH(reader.size(), message);
    // sqlite_store::check (nudge db check) names it first (a lost row also leaves its table
    // short of the rows written).
    const auto report = nudge::sqlite_store::check(tmp.path);
    REQUIRE(!report.problems.empty());
    CHECK(report.problems.size() <= 2);
    CHECK_THAT(report.problems.front(), Catch::StartsWith(c.message));
    CHECK(read_file(tmp.path) == before);
  }
  // A changed contact id is named as read, beside the others of its row.
  {
    temp_db tmp{"damage_contact"};
    std::filesystem::copy_file(clean.path, tmp.path);
    cases[2].apply(tmp.path);
    CHECK_THROWS_WITH(
        (nudge::sqlite_store{tmp.path, *program}),
        damaged(tmp.path,
                "journal row 1 fails its checksum (its records name contacts c3, c1, c0 "
                "and c5, as far as they can be read)"));
  }
  // The undamaged copy checks sound, opens, and its outbox is read whole.
  const auto report = nudge::sqlite_store::check(clean.path);
  CHECK(report.problems.empty());
  CHECK(report.schema_version == 8);
  CHECK(report.meta == 5);
  CHECK(report.checkpoint == 1);
  CHECK(report.journal == 3);
  CHECK(report.outbox == 4);
  CHECK(report.undelivered == 33);
  nudge::sqlite_store db{clean.path, *program, {.read_only = true}};
  CHECK(db.outbox_size() == 33);
  CHECK(db.get_meta("host.position") == "42");
}

TEST_CASE(
    "sqlite_store: an empty file, a file without tables and another application's database "
    "are refused, and a new database is created whole") {
  const auto program = shop_program();
  temp_db tmp{"identity"};
  const auto refused = [&](const std::string& why) {
    return fmt::format(
        "{}: not a nudge database: {}. nudge writes a new database beside its place and then "
        "renames it there, so such a file is none of its own (an older nudge killed while "
        "creating one left it): remove the file to start a new database",
        tmp.path, why);
  };
  { std::ofstream{tmp.path}; }  // 0 bytes, as a kill during creation by an older nudge left
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}),
                    refused("the file is empty (0 bytes)"));
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program, {.read_only = true}}),
                    refused("the file is empty (0 bytes)"));
  CHECK_THROWS_WITH(nudge::sqlite_store::read_meta(tmp.path, "run.rules"),
                    refused("the file is empty (0 bytes)"));
  CHECK(std::filesystem::file_size(tmp.path) == 0);
  exec_sql(tmp.path, "PRAGMA page_size=4096; VACUUM");  // a valid SQLite file without tables
  REQUIRE(std::filesystem::file_size(tmp.path) > 0);
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}), refused("it has no tables"));
  exec_sql(tmp.path, "CREATE TABLE meta(key TEXT, value BLOB); PRAGMA application_id=7");
  CHECK_THROWS_WITH((nudge::sqlite_store{tmp.path, *program}),
                    fmt::format("{}: not a nudge database (its application id is 0x7, nudge's "
                                "0x6e756467): refused, left as it was",
                                tmp.path));
  CHECK_THROWS_WITH(nudge::sqlite_store::read_meta(tmp.path, "run.rules"),
                    Catch::EndsWith("refused, left as it was"));
  // A new database appears whole, by rename: nothing is left beside it but the writer lock.
  std::filesystem::remove(tmp.path);
  {
    nudge::sqlite_store db{tmp.path, *program};
    CHECK(db.size() == 0);
  }
  CHECK(query_int(tmp.path, "PRAGMA application_id") == 0x6E756467);
  CHECK(!std::filesystem::exists(tmp.path + ".creating"));
  CHECK(nudge::sqlite_store::read_meta(tmp.path, "nudge.schema_version") == "8");
  CHECK(nudge::sqlite_store::read_meta(tmp.path, "nudge.rows") ==
        "checkpoint=0 journal=0 outbox_next=1 meta=3");
  // What a kill during creation leaves ("<db>.creating") is removed by the next creation.
  std::filesystem::remove(tmp.path);
  { std::ofstream{tmp.path + ".creating"} << "partial"; }
  { nudge::sqlite_store db{tmp.path, *program}; }
  CHECK(!std::filesystem::exists(tmp.path + ".creating"));
  CHECK(nudge::sqlite_store::read_meta(tmp.path, "nudge.schema_version") == "8");
}

TEST_CASE("sqlite_store: errors name the file, the operation and the system's reason") {
  const auto program = shop_program();
  temp_db tmp{"errors"};
  const std::string missing = (tmp.dir / "no_such.db").string();
  CHECK_THROWS_WITH((nudge::sqlite_store{missing, *program, {.read_only = true}}),
                    missing +
                        ": cannot open: unable to open database file (No such file or "
                        "directory)");
  CHECK_THROWS_WITH(nudge::sqlite_store::read_meta(missing, "run.rules"),
                    missing +
                        ": cannot open: unable to open database file (No such file or "
                        "directory)");
  const std::string no_dir = (tmp.dir / "no_dir" / "state.db").string();
  CHECK_THROWS_WITH(
      (nudge::sqlite_store{no_dir, *program}),
      fmt::format("{}: cannot open the writer lock {}.lock: No such file or directory", no_dir,
                  no_dir));
  CHECK(!std::filesystem::exists(missing));
}

TEST_CASE("sqlite_store: the write-ahead log stays bounded and is gone when the writer closes") {
  const auto program = shop_program();
  temp_db tmp{"wal"};
  std::uintmax_t peak = 0;
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, nullptr};
    nudge::sqlite_store reader{tmp.path, *program, {.read_only = true}};
    // 600 small batches, each a commit of a few pages: some 20 MiB of log unless checkpointed.
    const std::int64_t t0 = 1704067200;
    for (std::int64_t b = 0; b < 600; ++b) {
      const std::vector<nudge::event> batch{
          {.contact = fmt::format("c{}", b % 50), .type = "cart", .ts = from_epoch(t0 + b * 600)},
          {.contact = fmt::format("d{}", b), .type = "cart", .ts = from_epoch(t0 + b * 600 + 1)}};
      engine.process(batch, from_epoch(t0 + b * 600 + 599));
      const auto wal = std::filesystem::file_size(tmp.path + "-wal");
      peak = std::max(peak, wal);
      // At most 4 MiB or the database's size, plus the batch just committed.
      CHECK(wal < std::max<std::uintmax_t>(std::uintmax_t{4} << 20,
                                           std::filesystem::file_size(tmp.path)) +
                      (std::uintmax_t{1} << 20));
    }
    CHECK(reader.size() == db.size());
  }
  CHECK(peak > (std::uintmax_t{3} << 20));  // the bound was reached, not merely respected
  // A reader still had the file open: the writer truncated the log on closing all the same.
  CHECK((!std::filesystem::exists(tmp.path + "-wal") ||
         std::filesystem::file_size(tmp.path + "-wal") == 0));
}

TEST_CASE("sqlite_store: a reader beside a writer sees whole commits only") {
  const auto program = shop_program();
  temp_db tmp{"reader_beside_writer"};
  { nudge::sqlite_store create{tmp.path, *program}; }
  std::atomic<bool> done{false};
  std::string writer_error;
  recording_sink sink;
  std::thread writer([&] {
    try {
      nudge::sqlite_store db{tmp.path, *program};
      nudge::durable_engine engine{program, db, &sink};
      const std::int64_t t0 = 1704067200;
      for (std::int64_t b = 0; b < 300; ++b) {
        const std::vector<nudge::event> batch{
            {.contact = fmt::format("c{}", b % 40),
             .type = b % 3 == 0 ? "purchase" : "cart",
             .ts = from_epoch(t0 + b * 3600),
             .key = fmt::format("k{}", b)},
            {.contact = fmt::format("n{}", b), .type = "cart", .ts = from_epoch(t0 + b * 3600)}};
        // Every other batch leaves its actions in the outbox a while (no delivery until the
        // next batch's), so that readers see rows added and trimmed.
        engine.process(batch, from_epoch(t0 + b * 3600 + 3599));
      }
    } catch (const std::exception& e) {
      writer_error = e.what();
    }
    done = true;
  });
  // Each read checks its rows against `nudge.rows` of the same commit: a read mixing two
  // commits (a batch's journal row without its row counts, an outbox trimmed between reading
  // the delivered mark and the rows) would throw.
  std::vector<std::string> reader_errors;
  std::size_t reads = 0;
  std::size_t last_size = 0;
  nudge::sqlite_store reader{tmp.path, *program, {.read_only = true}};
  while (!done) {
    try {
      const auto n = reader.size();
      CHECK(n >= last_size);  // commits only add contacts
      last_size = n;
      (void)reader.outbox_size();
      (void)reader.outbox(5);
      ++reads;
    } catch (const std::exception& e) {
      reader_errors.emplace_back(e.what());
    }
  }
  writer.join();
  CHECK(writer_error.empty());
  CHECK(reader_errors.empty());
  CHECK(reads > 0);
  CHECK(reader.size() == 340);
  CHECK(reader.outbox_size() == 0);
}
