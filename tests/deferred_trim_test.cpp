// durable_engine::defer_trim / trim / untrimmed: delivery without trimming, each action handed
// to the sink once by an engine, trimmed later; a new engine (a crash before trim) hands the
// untrimmed actions again under the same keys.
#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/io/sqlite_store.hpp>
#include <nudge/rule.hpp>

namespace {

std::shared_ptr<const nudge::program> welcome_program() {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("welcome").on(nudge::on("signup")).then(nudge::send_email("welcome")));
  return nudge::program::compile(rs);
}

// Batch b: three new contacts sign up.
std::vector<nudge::event> signups(int b) {
  std::vector<nudge::event> batch;
  for (int i = 0; i < 3; ++i) {
    batch.push_back({.contact = fmt::format("c{}", b * 3 + i),
                     .type = "signup",
                     .ts = nudge::from_epoch(1704067200 + b * 60 + i)});
  }
  return batch;
}

nudge::time_point batch_now(int b) {
  return nudge::from_epoch(1704067200 + b * 60 + 59);
}

// Every action handed over, duplicates included, as "contact key".
struct list_sink final : nudge::sink {
  std::vector<std::string> got;
  void deliver(std::span<const nudge::due_action> actions) override {
    for (const auto& a : actions) {
      got.push_back(fmt::format("{} {}", a.contact, a.idempotency_key));
    }
  }
};

struct temp_dir {
  std::filesystem::path dir;
  std::string path;
  temp_dir() {
    dir = std::filesystem::current_path() / fmt::format("deferred_trim_test_{}", ::getpid());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    path = (dir / "state.db").string();
  }
  ~temp_dir() { std::filesystem::remove_all(dir); }
};

}  // namespace

TEST_CASE(
    "durable_engine: with defer_trim the sink gets each action once, trim empties the "
    "outbox, and a new engine hands untrimmed actions again under the same keys") {
  temp_dir tmp;
  const auto program = welcome_program();
  list_sink first;
  {
    nudge::sqlite_store db{tmp.path, *program};
    nudge::durable_engine engine{program, db, &first};
    engine.defer_trim(true);
    for (int b = 0; b < 4; ++b) {
      engine.process(signups(b), batch_now(b));
    }
    CHECK(first.got.size() == 12);  // each once, though all 12 are still in the outbox
    CHECK(engine.untrimmed() == 12);
    CHECK(db.outbox_size() == 12);
    CHECK(engine.deliver_pending() == 0);  // the sink has them all
    engine.trim();
    CHECK(engine.untrimmed() == 0);
    CHECK(db.outbox_size() == 0);
    for (int b = 4; b < 6; ++b) {
      engine.process(signups(b), batch_now(b));
    }
    CHECK(first.got.size() == 18);
    CHECK(engine.untrimmed() == 6);
    // Not trimmed: as if the process died here.
  }
  nudge::sqlite_store db{tmp.path, *program};
  list_sink second;
  nudge::durable_engine engine{program, db, &second};
  engine.defer_trim(true);
  CHECK(engine.untrimmed() == 0);  // this engine handed nothing yet
  CHECK(engine.deliver_pending() == 6);
  CHECK(second.got == std::vector<std::string>(first.got.begin() + 12, first.got.end()));
  CHECK(engine.untrimmed() == 6);
  engine.trim();
  CHECK(db.outbox_size() == 0);
  engine.process(signups(6), batch_now(6));
  CHECK(second.got.size() == 9);
  CHECK(second.got.back().rfind("c20 ", 0) == 0);
  engine.defer_trim(false);  // the next delivery trims everything the sink has
  engine.process(signups(7), batch_now(7));
  CHECK(engine.untrimmed() == 0);
  CHECK(db.outbox_size() == 0);
  CHECK(second.got.size() == 12);
}
