// memory_store lends its states: the engine evaluates them in place, and a batch that fails
// (sink, store, bad input) is undone from the store's undo log, leaving every state, the due
// index and the segment index exactly as they were.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <nudge/io/load_rules.hpp>
#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::strings;
using test_support::t0;
using test_support::with;

using nudge::days;
using nudge::hours;

// Everything a state can gain in a batch: tags and details (internal actions), a delayed check
// (timers), a workflow run, segment memberships, score, timeline entries.
std::shared_ptr<const nudge::program> shop() {
  return nudge::load_rules(R"({
  "timeline": {"size": 8},
  "segments": [{"name": "browsers", "if": {"happened": {"event": "page_view", "at_least": 2}}},
               {"name": "buyers", "if": {"happened": {"event": "purchase"}}}],
  "scoring": {"rules": [{"id": "views", "on": {"event": "page_view"}, "points": 10}],
              "thresholds": [{"name": "warm", "at": 20}]},
  "rules": [
    {"id": "tag_buyer", "on": {"event": "purchase"},
     "then": [{"do": "add_tag", "arg": "buyer"},
              {"do": "set_detail", "arg": "tier", "value": "gold"},
              {"do": "send_email", "arg": "thanks"}]},
    {"id": "cart_reminder", "on": {"event": "cart"}, "delay": "1d",
     "if": {"not_happened": {"event": "purchase", "since_trigger": true}},
     "then": [{"do": "send_email", "arg": "cart_reminder"}]},
    {"id": "fan", "on": {"segment_entered": "browsers"}, "then": [{"do": "add_tag", "arg": "fan"}]},
    {"id": "warm", "on": {"score_crossed": "warm"}, "then": [{"do": "notify_owner", "arg": "warm"}]}
  ],
  "workflows": [{"id": "checkout", "entry": {"on": {"event": "cart"}}, "exit_on": [{"event": "purchase"}],
                 "steps": [{"id": "wait", "wait": "2d"},
                           {"id": "nudge", "send": {"do": "send_sms", "arg": "checkout"}}]}]
})");
}

// All a memory_store shows: every state, the ids in due order at several instants, every
// segment's members and size, the contact list.
struct picture {
  std::map<std::string, nudge::contact_state> states;
  std::vector<strings> due;
  std::map<std::string, strings> members;
  std::map<std::string, std::size_t> sizes;
  strings contacts;
  friend bool operator==(const picture&, const picture&) = default;
};

picture look(nudge::memory_store& store) {
  picture p;
  store.for_each([&](const nudge::contact_state& s) { p.states.emplace(s.contact.id, s); });
  for (auto t : {t0, t0 + hours(30), t0 + days(3), t0 + days(30), nudge::max_time}) {
    p.due.push_back(store.due(t));
  }
  for (const char* segment : {"browsers", "buyers"}) {
    p.members[segment] = store.segment_members(segment);
    p.sizes[segment] = store.segment_size(segment);
  }
  p.contacts = store.contacts();
  return p;
}

class failing_sink final : public nudge::sink {
 public:
  void deliver(std::span<const nudge::due_action> actions) override {
    if (fail) {
      throw std::runtime_error("boom");
    }
    delivered += actions.size();
  }
  bool fail = false;
  std::size_t delivered = 0;
};

// Lends from a memory_store like the store itself, but its save can be made to fail first.
class failing_save_store final : public nudge::store {
 public:
  std::optional<nudge::contact_state> load(std::string_view id) override { return inner.load(id); }
  nudge::contact_state* lend(std::string_view id) override { return inner.lend(id); }
  void abandon() noexcept override { inner.abandon(); }
  void will_change_profile(nudge::contact_state& lent) override { inner.will_change_profile(lent); }
  void save(std::span<nudge::contact_state> states) override {
    if (fail) {
      throw std::runtime_error("disk full");
    }
    inner.save(states);
  }
  std::vector<std::string> due(nudge::time_point t) override { return inner.due(t); }
  std::vector<std::string> segment_members(std::string_view s) override {
    return inner.segment_members(s);
  }
  std::vector<std::string> contacts() override { return inner.contacts(); }
  nudge::memory_store inner;
  bool fail = false;
};

// Before the failed batch: ann and bob with a little history, ann in a workflow with a timer.
const std::vector<nudge::event> first{ev("ann", "page_view", t0), ev("ann", "cart", t0),
                                      ev("bob", "page_view", t0)};
// The batch that fails: ann buys (tag, detail, segment, workflow exit, timers change), bob
// browses again from somewhere (segment, tag, score, location), cid is new and starts a
// workflow.
const std::vector<nudge::event> second{
    ev("ann", "purchase", t0 + hours(2)),
    with(with(ev("bob", "page_view", t0 + hours(2)), "lat", 52.2), "lon", 21.0),
    ev("bob", "cart", t0 + hours(3)), ev("cid", "cart", t0 + hours(3)),
    ev("cid", "page_view", t0 + hours(4))};

// What the failed batch would have changed, so that "unchanged" means something.
void check_the_batch_changes_a_lot(const picture& before, const picture& after) {
  const auto& ann0 = before.states.at("ann");
  const auto& ann1 = after.states.at("ann");
  CHECK_FALSE(ann0.contact.has_tag("buyer"));
  CHECK(ann1.contact.has_tag("buyer"));
  CHECK(ann1.contact.detail("tier") != nullptr);
  CHECK(ann0.runs.size() == 1);
  CHECK(ann1.runs.empty());
  CHECK(ann0.timers != ann1.timers);
  const auto& bob0 = before.states.at("bob");
  const auto& bob1 = after.states.at("bob");
  CHECK(bob1.contact.has_tag("fan"));
  CHECK(bob1.contact.score > bob0.contact.score);
  CHECK_FALSE(bob0.contact.location);
  CHECK(bob1.contact.location);
  CHECK(bob1.runs.size() == 1);
  CHECK(before.states.at("bob").timers.empty());
  CHECK_FALSE(bob1.timers.empty());
  CHECK(before.members.at("browsers").empty());
  CHECK(after.members.at("browsers") == strings{"bob"});
  CHECK(after.members.at("buyers") == strings{"ann"});
  CHECK(after.states.count("cid") == 1);
  CHECK(before.due != after.due);
}

}  // namespace

TEST_CASE("memory_store: a failed batch evaluated in place changes no state or index",
          "[store][atomic]") {
  const auto p = shop();
  failing_sink sink;
  failing_save_store store;
  nudge::engine e{p, &store, &sink};
  e.upsert_contact(nudge::contact{.id = "ann", .owner = "anna"});
  e.upsert_contact(nudge::contact{.id = "bob", .owner = "bartek"});
  e.process(first, t0 + hours(1));
  const picture before = look(store.inner);
  const auto stats = e.stats();
  REQUIRE(before.states.size() == 2);

  // The reference: the same batch without a failure.
  nudge::memory_store ok_store;
  nudge::engine ok{p, &ok_store};
  ok.upsert_contact(nudge::contact{.id = "ann", .owner = "anna"});
  ok.upsert_contact(nudge::contact{.id = "bob", .owner = "bartek"});
  ok.process(first, t0 + hours(1));
  const auto expected = ok.process(second, t0 + days(1));
  check_the_batch_changes_a_lot(before, look(ok_store));

  SECTION("the sink throws") {
    sink.fail = true;
    CHECK_THROWS_WITH(e.process(second, t0 + days(1)), "sink.deliver failed: boom");
  }
  SECTION("the store's save throws") {
    store.fail = true;
    CHECK_THROWS_AS(e.process(second, t0 + days(1)), nudge::callback_error);
  }
  SECTION("a bad event after other contacts were evaluated in place") {
    auto bad = second;
    bad.push_back(ev("cid", "cart", t0 + hours(1)));  // before cid's earlier events
    CHECK_THROWS_AS(e.process(bad, t0 + days(1)), nudge::input_error);
  }
  SECTION("an unknown event type after other contacts were evaluated in place") {
    auto bad = second;
    bad.push_back(ev("dan", "REFUND", t0 + hours(5)));
    CHECK_THROWS_AS(e.process(bad, t0 + days(1)), nudge::input_error);
  }
  CHECK(look(store.inner) == before);
  CHECK(e.stats() == stats);
  // Then the batch runs as if nothing had failed.
  sink.fail = false;
  store.fail = false;
  CHECK(test_support::lines(e.process(second, t0 + days(1))) == test_support::lines(expected));
  CHECK(look(store.inner) == look(ok_store));
}

TEST_CASE("memory_store: a failed advance and a failed identify undo the states lent",
          "[store][atomic]") {
  const auto p = shop();
  failing_sink sink;
  nudge::memory_store store;
  nudge::engine e{p, &store, &sink};
  e.process(first, t0 + hours(1));
  e.process(second, t0 + hours(5));
  const picture before = look(store);
  REQUIRE_FALSE(before.due.back().empty());
  sink.fail = true;
  SECTION("timers only") {
    CHECK_THROWS_WITH(e.advance(t0 + days(30)), "sink.deliver failed: boom");
  }
  SECTION("an identify merges two lent states") {
    CHECK_THROWS_WITH(e.process(std::vector{ev("cid", "identify", t0 + hours(6), "bob"),
                                            ev("cid", "purchase", t0 + hours(7))},
                                t0 + days(30)),
                      "sink.deliver failed: boom");
  }
  CHECK(look(store) == before);
}

TEST_CASE("memory_store: lend, abandon and save keep the due and segment indexes", "[store]") {
  nudge::memory_store store;
  nudge::contact_state ann;
  ann.contact.id = "ann";
  ann.segments.emplace("a", t0);
  nudge::timer t;
  t.due_at = t0 + days(1);
  ann.timers.push_back(t);
  std::vector<nudge::contact_state> one{ann};
  store.save(one);
  const picture before = look(store);

  nudge::contact_state* lent = store.lend("ann");
  REQUIRE(lent != nullptr);
  CHECK(lent == store.find("ann"));  // the store's own state, not a copy
  CHECK(store.lend("nobody") == nullptr);
  const auto change = [&](nudge::contact_state& s) {
    store.will_change_profile(s);  // as the engine does before it first changes a profile
    store.will_change_profile(s);  // again: a no-op
    s.segments.erase("a");
    s.segments.emplace("buyers", t0);
    s.timers.front().due_at = t0 + hours(30);
    s.contact.tags.emplace("x", t0);
    s.contact.details["tier"] = std::string{"gold"};
  };
  change(*lent);
  store.abandon();
  CHECK(look(store) == before);
  CHECK(*store.find("ann") == ann);

  change(*store.lend("ann"));
  std::vector<nudge::contact_state> fresh(1);
  fresh[0].contact.id = "bob";
  fresh[0].segments.emplace("buyers", t0);
  store.save(fresh);
  CHECK(store.segment_members("a").empty());
  CHECK(store.segment_members("buyers") == strings{"ann", "bob"});
  CHECK(store.due(t0 + hours(30)) == strings{"ann"});
  CHECK(store.due(t0 + hours(29)).empty());
  CHECK(store.find("ann")->contact.has_tag("x"));
  // A save commits: a later abandon has nothing to put back.
  store.abandon();
  CHECK(store.find("ann")->contact.has_tag("x"));
}

TEST_CASE("memory_store: a failed batch puts back a score and a location changed in place",
          "[store][atomic]") {
  // Only the score and the location change: the profile itself is not backed up (it changes
  // rarely), those two are put back from the copy taken at lend.
  const auto p = shop();
  failing_save_store store;
  nudge::engine e{p, &store};
  e.upsert_contact(nudge::contact{.id = "ann", .details = {{"tier", std::string{"silver"}}}});
  e.process(std::vector{ev("ann", "cart", t0)}, t0);
  const picture before = look(store.inner);
  const std::vector<nudge::event> moved{
      with(with(ev("ann", "page_view", t0 + hours(1)), "lat", 50.0), "lon", 19.9)};
  store.fail = true;
  CHECK_THROWS_WITH(e.process(moved, t0 + hours(1)), "store.save failed: disk full");
  CHECK(look(store.inner) == before);
  store.fail = false;
  e.process(moved, t0 + hours(1));
  const auto& ann = *store.inner.find("ann");
  CHECK(ann.contact.score == 10);
  CHECK(ann.contact.location);
  CHECK(ann.contact.details == before.states.at("ann").contact.details);
  CHECK(ann.contact.tags.empty());
}

namespace {

// Fails its k-th call (counting from 1; 0: never) of any kind, once.
struct faults {
  std::size_t fail_at = 0;
  std::size_t calls = 0;
  void tick() {
    if (++calls == fail_at) {
      throw std::runtime_error("fault");
    }
  }
};

class faulty_sink final : public nudge::sink {
 public:
  // A save that fails after the sink accepted the batch's actions has them delivered again by
  // the retry (engine.hpp): they are dropped by idempotency key, as a host does.
  void deliver(std::span<const nudge::due_action> actions) override {
    f.tick();
    const auto lines = test_support::lines({actions.begin(), actions.end()});
    for (std::size_t i = 0; i < actions.size(); ++i) {
      if (keys.insert(actions[i].idempotency_key).second) {
        delivered.push_back(lines[i]);
      }
    }
  }
  faults f;
  strings delivered;
  std::set<std::uint64_t> keys;
};

// A memory_store behind a wrapper whose every call may fail: load, lend, will_change_profile
// (inside the evaluation), save, due.
class faulty_store final : public nudge::store {
 public:
  std::optional<nudge::contact_state> load(std::string_view id) override {
    f.tick();
    return inner.load(id);
  }
  nudge::contact_state* lend(std::string_view id) override {
    f.tick();
    return inner.lend(id);
  }
  void will_change_profile(nudge::contact_state& lent) override {
    ++profile_calls;
    f.tick();
    inner.will_change_profile(lent);
  }
  void abandon() noexcept override { inner.abandon(); }
  void save(std::span<nudge::contact_state> states) override {
    f.tick();
    inner.save(states);
  }
  std::vector<std::string> due(nudge::time_point t) override {
    f.tick();
    return inner.due(t);
  }
  std::vector<std::string> segment_members(std::string_view s) override {
    return inner.segment_members(s);
  }
  std::vector<std::string> contacts() override { return inner.contacts(); }
  nudge::memory_store inner;
  faults f;
  std::size_t profile_calls = 0;
};

struct timed_batch {
  std::vector<nudge::event> events;
  nudge::time_point now;
};

// Every batch runs until it succeeds; a failed one must have changed nothing for the retry to
// give what a run without faults gives.
void run_with_retries(nudge::engine& e, const std::vector<timed_batch>& batches) {
  for (const auto& b : batches) {
    for (int attempt = 0;; ++attempt) {
      REQUIRE(attempt < 3);
      try {
        e.process(b.events, b.now);
        break;
      } catch (const std::exception&) {
        // retried
      }
    }
  }
}

}  // namespace

TEST_CASE(
    "memory_store: a store or sink failing on its k-th call, then a retry, ends as a run "
    "without faults",
    "[store][atomic]") {
  const auto p = shop();
  const std::vector<timed_batch> batches{
      {first, t0 + hours(1)},
      {second, t0 + days(1)},
      {{ev("cid", "identify", t0 + days(1) + hours(1), "bob"),
        ev("cid", "purchase", t0 + days(1) + hours(2)), ev("ann", "page_view", t0 + days(2)),
        ev("ann", "page_view", t0 + days(2) + hours(1))},
       t0 + days(3)},
      {{}, t0 + days(30)}};
  faulty_sink ref_sink;
  faulty_store ref_store;
  {
    nudge::engine e{p, &ref_store, &ref_sink};
    run_with_retries(e, batches);
  }
  const picture expected = look(ref_store.inner);
  const std::size_t store_calls = ref_store.f.calls, sink_calls = ref_sink.f.calls;
  REQUIRE(ref_sink.delivered.size() >= 4);
  REQUIRE(store_calls > 20);
  REQUIRE(ref_store.profile_calls > 2);  // tags, details, a merge: failing there is covered too
  for (std::size_t k = 1; k <= store_calls + sink_calls; ++k) {
    const bool store_fails = k <= store_calls;
    INFO((store_fails ? "store" : "sink")
         << " fails on call " << (store_fails ? k : k - store_calls));
    faulty_sink sink;
    faulty_store store;
    (store_fails ? store.f : sink.f).fail_at = store_fails ? k : k - store_calls;
    nudge::engine e{p, &store, &sink};
    run_with_retries(e, batches);
    CHECK(sink.delivered == ref_sink.delivered);
    CHECK(look(store.inner) == expected);
  }
}

TEST_CASE("memory_store without undo: the same run, and after a failed batch a clear refusal",
          "[store][atomic]") {
  const auto p = shop();
  nudge::memory_store with_undo;
  nudge::memory_store without_undo{{.undo = false}};
  failing_sink sink;
  nudge::engine a{p, &with_undo};
  nudge::engine b{p, &without_undo, &sink};
  for (auto* e : {&a, &b}) {
    e->upsert_contact(nudge::contact{.id = "ann", .owner = "anna"});
    e->upsert_contact(nudge::contact{.id = "bob", .owner = "bartek"});
  }
  CHECK(test_support::lines(b.process(first, t0 + hours(1))) ==
        test_support::lines(a.process(first, t0 + hours(1))));
  CHECK(look(without_undo) == look(with_undo));

  // Nothing was copied at lend, so the failed batch cannot be undone: the store says so at
  // every later call instead of serving half-evaluated states.
  sink.fail = true;
  CHECK_THROWS_WITH(b.process(second, t0 + days(1)), "sink.deliver failed: boom");
  const std::string refusal =
      "memory_store: a batch failed in a store without undo (memory_store_options::undo = "
      "false); its states were half evaluated and were dropped: use a new store";
  CHECK_THROWS_WITH(without_undo.due(t0 + days(2)), refusal);
  CHECK_THROWS_WITH(without_undo.load("ann"), refusal);
  CHECK_THROWS_WITH(without_undo.contacts(), refusal);
  sink.fail = false;
  CHECK_THROWS_WITH(b.process(second, t0 + days(1)), Catch::Matchers::Contains(refusal));
}
