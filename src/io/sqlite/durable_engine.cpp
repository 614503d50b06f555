// durable_engine: an engine whose batches commit to a sqlite_store with their outbox
// entries, and which delivers the outbox to its sink.
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

// ---- durable_engine -------------------------------------------------------------------------

durable_engine::durable_engine(std::shared_ptr<const nudge::program> program, sqlite_store& store,
                               nudge::sink* sink, engine_options options)
    : store_(store), sink_(sink), engine_(std::move(program), &store, nullptr, options) {
  store_.ensure_current();
  generation_ = store_.impl_->generation;
  if (auto saved = store_.engine_state()) {
    engine_.restore(std::move(saved->first), std::move(saved->second),
                    store_.engine_workflow_stats());
  }
}

void durable_engine::change_program(std::shared_ptr<const nudge::program> next, time_point at,
                                    std::span<const std::pair<std::string, std::string>> meta) {
  const nudge::program& target = *next;
  store_.begin();
  try {
    if (store_.impl_->generation != generation_) {
      if (auto saved = store_.engine_state()) {
        engine_.restore(saved->first, saved->second, store_.engine_workflow_stats());
      }
      generation_ = store_.impl_->generation;
    }
    engine_.change_program(std::move(next), at);
    store_.change_program(target);
    store_.put_engine_state(engine_.stats(), engine_.counters(), engine_.workflow_stats());
    for (const auto& [key, text] : meta) {
      store_.put_meta(key, text);
    }
    store_.commit();
  } catch (...) {
    store_.rollback();
    throw;
  }
}

std::size_t durable_engine::process(std::span<const event> events, time_point now,
                                    std::span<const std::pair<std::string, std::string>> meta) {
  return commit_batch([&] { return engine_.process(events, now); }, meta);
}

std::size_t durable_engine::upsert_contacts(
    std::span<const contact> contacts, time_point at,
    std::span<const std::pair<std::string, std::string>> meta) {
  return commit_batch([&] { return engine_.upsert_contacts(contacts, at); }, meta);
}

std::size_t durable_engine::commit_batch(
    const std::function<std::vector<due_action>()>& evaluate,
    std::span<const std::pair<std::string, std::string>> meta) {
  auto stats = engine_.stats();
  auto counters = engine_.counters();
  auto workflows = engine_.workflow_stats();
  std::vector<due_action> actions;
  // When nothing older waits in the outbox and every action went in, the outbox now holds
  // exactly `actions`, in order: hand them to the sink as they are rather than read them back.
  bool deliver_as_is = false;
  std::int64_t last_sequence = 0;
  store_.begin();
  try {
    if (store_.impl_->generation != generation_) {
      // Another connection committed batches since: continue from its statistics.
      if (auto saved = store_.engine_state()) {
        workflows = store_.engine_workflow_stats();
        engine_.restore(saved->first, saved->second, workflows);
        stats = std::move(saved->first);
        counters = std::move(saved->second);
      }
      generation_ = store_.impl_->generation;
    }
    actions = evaluate();
    const sqlite_store::impl& d = *store_.impl_;
    // Entries the sink already has (defer_trim) count as delivered here.
    const bool outbox_was_empty = d.undelivered_begin == d.undelivered.size() ||
                                  d.undelivered.back().first <= handed_through_;
    const auto first = d.pending_next_seq;
    store_.add_to_outbox(actions);
    last_sequence = d.pending_next_seq - 1;
    deliver_as_is =
        outbox_was_empty && d.pending_next_seq - first == static_cast<std::int64_t>(actions.size());
    store_.put_engine_state(engine_.stats(), engine_.counters(), engine_.workflow_stats());
    for (const auto& [key, text] : meta) {
      store_.put_meta(key, text);
    }
    store_.commit();
  } catch (...) {
    store_.rollback();
    // The engine folded the batch's statistics in before the commit failed: take them back.
    engine_.restore(std::move(stats), std::move(counters), std::move(workflows));
    throw;
  }
  if (!deliver_as_is) {
    deliver_pending();
  } else if (sink_ != nullptr && !actions.empty()) {
    deliver(actions, last_sequence);
  }
  return actions.size();
}

void durable_engine::deliver(std::span<const due_action> actions, std::int64_t last_sequence) {
  try {
    sink_->deliver(actions);
  } catch (...) {
    // (Counted from memory: the error path reads nothing from a store that may be failing.)
    const sqlite_store::impl& d = *store_.impl_;
    std::throw_with_nested(delivery_error(fmt::format(
        "sink.deliver failed: {} actions stay in the outbox of {} (the batch is committed; the "
        "next nudge run, or durable_engine::deliver_pending, delivers them first)",
        d.undelivered.size() - d.undelivered_begin, store_.path())));
  }
  if (defer_trim_) {
    handed_through_ = std::max(handed_through_, last_sequence);
    return;
  }
  try {
    store_.remove_from_outbox(last_sequence);
  } catch (...) {
    std::throw_with_nested(delivery_error(fmt::format(
        "{} actions were delivered but stay in the outbox of {}: they will be delivered again "
        "with the same idempotency keys (the batch is committed; the next nudge run, or "
        "durable_engine::deliver_pending, delivers them again)",
        actions.size(), store_.path())));
  }
}

void durable_engine::upsert_contacts(std::span<const contact> contacts) {
  store_.begin();
  try {
    engine_.upsert_contacts(contacts);
    store_.commit();
  } catch (...) {
    store_.rollback();
    throw;
  }
}

std::size_t durable_engine::deliver_pending(std::size_t batch) {
  if (sink_ == nullptr) {
    return 0;
  }
  const nudge::program& p = engine_.program();
  std::size_t delivered = 0;
  for (;;) {
    // Entries the sink already has (defer_trim) come first: read past them.
    const std::size_t handed = untrimmed();
    auto entries = store_.outbox(handed + batch);
    const bool last_page = entries.size() < handed + batch;
    entries.erase(entries.begin(),
                  std::partition_point(entries.begin(), entries.end(), [&](const outbox_entry& e) {
                    return e.sequence <= handed_through_;
                  }));
    if (entries.empty()) {
      return delivered;
    }
    std::vector<due_action> actions;
    actions.reserve(entries.size());
    for (const auto& e : entries) {
      due_action a;
      a.contact = e.contact;
      a.ts = e.ts;
      if (e.workflow) {
        const auto& w = p.rules().workflows[e.rule_index];
        const workflow_step& st = *p.compiled().workflows[e.rule_index].steps[e.action_index].def;
        a.rule = w.id;
        a.step = st.id;
        a.definition = &st.act;
      } else {
        const auto& rule = p.rules().rules[e.rule_index];
        a.rule = rule.id;
        a.definition = &rule.actions[e.action_index];
      }
      a.rule_index = e.rule_index;
      a.kind = e.kind;
      a.arg = e.arg;  // views into `entries`, alive during delivery
      a.idempotency_key = e.idempotency_key;
      actions.push_back(std::move(a));
    }
    deliver(actions, entries.back().sequence);
    delivered += entries.size();
    if (last_page) {
      return delivered;
    }
  }
}

void durable_engine::trim() {
  const std::size_t n = untrimmed();
  if (n == 0) {
    return;
  }
  try {
    store_.remove_from_outbox(handed_through_);
  } catch (...) {
    std::throw_with_nested(delivery_error(fmt::format(
        "{} actions were delivered but stay in the outbox of {}: they will be delivered again "
        "with the same idempotency keys (call trim to retry)",
        n, store_.path())));
  }
}

std::size_t durable_engine::untrimmed() const {
  const sqlite_store::impl& d = *store_.impl_;
  const auto begin = d.undelivered.begin() + static_cast<std::ptrdiff_t>(d.undelivered_begin);
  const auto end =
      std::upper_bound(begin, d.undelivered.end(), handed_through_,
                       [](std::int64_t last, const std::pair<std::int64_t, std::uint64_t>& e) {
                         return last < e.first;
                       });
  return static_cast<std::size_t>(end - begin);
}

}  // namespace nudge
