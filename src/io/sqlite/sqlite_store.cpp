// The SQLite store's transactions and contact states (the layout: impl.hpp, docs/live.md).
// Opening is open.cpp, the outbox outbox.cpp, `nudge db check` check.cpp, durable_engine
// durable_engine.cpp.
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

void sqlite_store::ensure_current() {
  impl& d = *impl_;
  // Another connection may have committed since (a reader that loaded before the writer's
  // batch; writers are one at a time, see writer_lock): read the state again rather than work
  // on a stale copy. A writer holds the writer lock, so the only other commits are a
  // deliverer's, to its own tables (delivery_log.hpp), none of which the store keeps in memory:
  // a writer does not read everything again for them (it would at every batch beside nudge
  // deliver).
  if (!d.loaded || (d.options.read_only && d.current_data_version() != d.version_seen)) {
    d.load_all();
    d.clear_pending();
  }
}

void sqlite_store::begin() {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot begin a transaction: the database is open read-only", path_));
  }
  {
    use s{d.begin};
    d.step_done(*s, "begin a transaction");
  }
  in_transaction_ = true;
  try {
    ensure_current();
  } catch (...) {
    rollback();
    throw;
  }
  d.clear_pending();
}

void sqlite_store::commit() {
  impl& d = *impl_;
  std::optional<std::size_t> new_checkpoint;
  try {
    check_not_abandoned();
    const std::size_t journal = d.journal_bytes + d.pending_journal_bytes;
    if (d.pending_program != nullptr ||
        (d.pending_journal_bytes > 0 &&
         journal > std::max(d.options.compact_after_bytes, 4 * d.checkpoint_bytes))) {
      new_checkpoint = d.write_checkpoint();
    }
    d.write_row_counts();
    use s{d.commit};
    if (sqlite3_step(*s) != SQLITE_DONE) {
      d.fail("commit");
    }
  } catch (...) {
    rollback();
    throw;
  }
  in_transaction_ = false;
  // Committed: fold the transaction into the in-memory state (nothing below throws but
  // allocation).
  if (new_checkpoint) {
    d.checkpoint_bytes = *new_checkpoint;
    d.journal_bytes = 0;
  } else {
    d.journal_bytes += d.pending_journal_bytes;
  }
  if (d.pending_rows) {
    d.rows = *d.pending_rows;
  }
  d.states.commit();
  if (d.pending_program != nullptr) {
    d.program = program_ = d.pending_program;
    d.fingerprint = program_fingerprint(*d.program);
  }
  d.next_seq = d.pending_next_seq;
  for (const auto& e : d.pending_outbox) {
    d.undelivered.push_back(e);
    d.undelivered_keys.emplace(e.second, 0);
  }
  if (d.pending_delivered) {
    while (d.undelivered_begin < d.undelivered.size() &&
           d.undelivered[d.undelivered_begin].first <= *d.pending_delivered) {
      d.undelivered_keys.erase(d.undelivered[d.undelivered_begin].second);
      ++d.undelivered_begin;
    }
    if (d.undelivered_begin == d.undelivered.size()) {
      d.undelivered.clear();
      d.undelivered_begin = 0;
    }
  }
  d.clear_pending();
}

void sqlite_store::rollback() noexcept {
  if (sqlite3_get_autocommit(impl_->db) == 0) {
    use s{impl_->rollback};
    sqlite3_step(*s);
  }
  if (!impl_->states.rollback()) {
    impl_->loaded = false;  // states were changed in place: read them again on next use
  }
  impl_->abandoned = false;
  impl_->clear_pending();
  in_transaction_ = false;
}

std::optional<contact_state> sqlite_store::load(std::string_view contact) {
  impl& d = *impl_;
  check_not_abandoned();
  if (!in_transaction_) {
    ensure_current();
  }
  const contact_state* found = d.states.find(contact);
  if (found == nullptr) {
    return std::nullopt;
  }
  return *found;
}

contact_state* sqlite_store::lend(std::string_view contact) {
  impl& d = *impl_;
  // Only inside a transaction, whose rollback can re-read what the engine changed; and never
  // from a read-only store, whose states must stay as read.
  if (!in_transaction_ || d.options.read_only || d.abandoned) {
    return nullptr;
  }
  return d.states.lend(contact);
}

void sqlite_store::abandon() noexcept {
  if (impl_->states.lent().empty()) {
    return;  // nothing lent since the last save: the undo log covers the rest
  }
  impl_->abandoned = true;
}

void sqlite_store::check_not_abandoned() const {
  if (impl_->abandoned) {
    throw sqlite_error(fmt::format(
        "{}: a batch failed after the engine evaluated states in place: roll the transaction "
        "back before using the store again",
        path_));
  }
}

void sqlite_store::save(std::span<contact_state> states) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(fmt::format("{}: cannot save: the database is open read-only", path_));
  }
  check_not_abandoned();
  const auto lent = d.states.lent();
  if (states.empty() && lent.empty()) {
    return;
  }
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    d.scratch.clear();
    for (const auto& l : lent) {
      put_state(d.scratch, d.states.at(l.pos), d.record_scratch);
    }
    for (const auto& st : states) {
      put_state(d.scratch, st, d.record_scratch);
    }
    {
      const std::int64_t batch = d.rows.journal + d.pending_journal_rows + 1;
      use s{d.add_journal};
      sqlite3_bind_int64(*s, 1, batch);
      bind_blob(*s, 2, d.scratch);
      sqlite3_bind_int64(*s, 3, row_sum(row_kind::journal, int_key(batch), d.scratch));
      d.step_done(*s, fmt::format("save {} contact states", lent.size() + states.size()));
    }
    d.pending_journal_bytes += d.scratch.size();
    ++d.pending_journal_rows;
    d.states.finish_lent();
    for (auto& st : states) {
      d.states.put(std::move(st));
    }
    if (own) {
      commit();
    }
  } catch (...) {
    if (own) {
      rollback();
    }
    throw;
  }
}

std::vector<std::string> sqlite_store::contacts() {
  impl& d = *impl_;
  if (!in_transaction_) {
    ensure_current();
  }
  std::vector<std::string> out;
  out.reserve(d.states.size());
  for (const auto& s : d.states.states()) {
    out.push_back(s.contact.id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

void sqlite_store::change_program(const nudge::program& next) {
  if (!in_transaction_) {
    throw std::logic_error("sqlite_store::change_program: call it inside begin() / commit()");
  }
  put_meta("nudge.program_fingerprint", fmt::format("{:016x}", program_fingerprint(next)));
  impl_->pending_program = &next;
}

std::vector<std::string> sqlite_store::due(time_point t) {
  impl& d = *impl_;
  check_not_abandoned();
  if (!in_transaction_) {
    ensure_current();
  }
  return d.states.due(t);
}

std::optional<std::string> sqlite_store::get_meta(std::string_view key) {
  return impl_->meta(key);
}

void sqlite_store::put_meta(std::string_view key, std::string_view text) {
  if (impl_->put_meta.get() == nullptr) {
    throw sqlite_error(fmt::format("{}: cannot write: the database is open read-only", path_));
  }
  if (key == meta_rows) {
    throw std::logic_error("sqlite_store::put_meta: nudge.rows is the store's own");
  }
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    impl_->write_meta(key, text);
    impl_->pending_meta = true;
    if (own) {
      commit();
    }
  } catch (...) {
    if (own) {
      rollback();
    }
    throw;
  }
}

std::optional<std::string> sqlite_store::read_meta(const std::string& path, std::string_view key,
                                                   bool recover) {
  impl d;
  d.path = path;
  const int flags = recover ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;
  if (sqlite3_open_v2(path.c_str(), &d.db, flags, nullptr) != SQLITE_OK) {
    if (d.db == nullptr) {
      throw sqlite_error(fmt::format("{}: cannot open: out of memory", path));
    }
    d.fail("open");
  }
  sqlite3_extended_result_codes(d.db, 1);
  d.check_identity();
  return d.meta(key);
}

std::optional<std::pair<std::vector<rule_stats>, round_robin_counters>>
sqlite_store::engine_state() {
  auto bytes = get_meta("nudge.engine");
  if (!bytes) {
    return std::nullopt;
  }
  // Statistics and counters are kept as a snapshot without contacts.
  auto s = parse_snapshot(*bytes, program_, path_ + " (engine statistics)");
  return std::pair{std::move(s.stats), std::move(s.counters)};
}

std::vector<workflow_stats> sqlite_store::engine_workflow_stats() {
  auto bytes = get_meta("nudge.engine");
  if (!bytes) {
    return {};
  }
  return parse_snapshot(*bytes, program_, path_ + " (engine statistics)").workflows;
}

void sqlite_store::put_engine_state(const std::vector<rule_stats>& stats,
                                    const round_robin_counters& counters,
                                    const std::vector<workflow_stats>& workflows) {
  snapshot s;
  s.fingerprint = impl_->pending_program != nullptr ? program_fingerprint(*impl_->pending_program)
                                                    : impl_->fingerprint;
  s.stats = stats;
  s.counters = counters;
  s.workflows = workflows;
  std::ostringstream out;
  write_snapshot(out, s);
  put_meta("nudge.engine", out.str());
}

}  // namespace nudge
