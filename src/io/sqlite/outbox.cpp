// The SQLite store's outbox: due actions kept with their idempotency keys until delivered.
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

void sqlite_store::add_to_outbox(std::span<const due_action> actions) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  check_not_abandoned();
  const bool own = !in_transaction_;
  if (own) {
    begin();
  }
  try {
    d.scratch.clear();
    const auto first = d.pending_next_seq;
    std::int64_t count = 0;
    std::vector<std::pair<std::int64_t, std::uint64_t>> added;
    added.reserve(actions.size());
    for (const auto& a : actions) {
      if (d.undelivered_keys.contains(a.idempotency_key) ||
          !d.pending_keys.emplace(a.idempotency_key, 0).second) {
        continue;  // already waiting in the outbox
      }
      std::uint32_t rule_field = a.rule_index;
      std::ptrdiff_t action_index = 0;
      if (a.from_workflow()) {
        rule_field |= workflow_flag;
        // The step table index (kept older versions' steps follow the current ones).
        const auto& steps = program_->compiled().workflows[a.rule_index].steps;
        for (std::size_t j = 0; j < steps.size(); ++j) {
          if (&steps[j].def->act == a.definition ||
              (a.definition == nullptr && steps[j].def->id == a.step)) {
            action_index = static_cast<std::ptrdiff_t>(j);
            break;
          }
        }
      } else if (a.definition != nullptr) {
        action_index = a.definition - program_->rules().rules[a.rule_index].actions.data();
      }
      put_u64(d.scratch, a.idempotency_key);
      put_u64(d.scratch, static_cast<std::uint64_t>(to_epoch(a.ts)));
      put_u32(d.scratch, rule_field);
      put_u32(d.scratch, static_cast<std::uint32_t>(action_index));
      put_u32(d.scratch, static_cast<std::uint32_t>(a.kind));
      put_str(d.scratch, a.contact);
      put_str(d.scratch, a.arg);
      added.emplace_back(first + count, a.idempotency_key);
      ++count;
    }
    if (count > 0) {
      use s{d.add_outbox};
      sqlite3_bind_int64(*s, 1, first);
      sqlite3_bind_int64(*s, 2, count);
      bind_blob(*s, 3, d.scratch);
      sqlite3_bind_int64(*s, 4, row_sum(row_kind::outbox, int_key(first, count), d.scratch));
      d.step_done(*s, "write the outbox");
      d.pending_next_seq = first + count;
      d.pending_outbox.insert(d.pending_outbox.end(), added.begin(), added.end());
    } else {
      for (const auto& e : added) {
        d.pending_keys.erase(e.second);
      }
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

std::vector<outbox_entry> sqlite_store::outbox(std::size_t limit) {
  std::vector<outbox_entry> out;
  if (limit == 0) {
    return out;
  }
  const impl::read_scope snapshot{*impl_};
  impl_->scan_outbox(
      [&](outbox_entry&& e) {
        out.push_back(std::move(e));
        return out.size() < limit;
      },
      impl_->expected_outbox_next());
  return out;
}

std::size_t sqlite_store::outbox_size() {
  const impl::read_scope snapshot{*impl_};
  std::size_t n = 0;
  impl_->scan_outbox(
      [&](outbox_entry&&) {
        ++n;
        return true;
      },
      impl_->expected_outbox_next());
  return n;
}

std::size_t sqlite_store::size() {
  impl& d = *impl_;
  if (!in_transaction_) {
    ensure_current();
  }
  return d.states.size();
}

void sqlite_store::remove_from_outbox(std::int64_t last) {
  impl& d = *impl_;
  if (d.options.read_only) {
    throw sqlite_error(
        fmt::format("{}: cannot write the outbox: the database is open read-only", path_));
  }
  check_not_abandoned();
  const bool own = !in_transaction_;
  // Losing this mark on power loss only means delivering again under the same keys, which
  // at-least-once allows: at synchronous=full it is committed without its own fsync (the next
  // batch's commit syncs the write-ahead log up to and including it).
  const bool relax = own && d.options.synchronous == sqlite_sync::full;
  if (relax) {
    use s{d.sync_normal};
    sqlite3_step(*s);
  }
  try {
    if (own) {
      begin();
    }
    try {
      // Never backwards: entries once marked delivered stay delivered.
      last = std::max(last, d.delivered_through());
      put_meta(meta_delivered, std::to_string(last));
      {
        use s{d.trim_outbox};
        sqlite3_bind_int64(*s, 1, last);
        d.step_done(*s, "delete delivered actions from the outbox");
      }
      d.pending_delivered = std::max(last, d.pending_delivered.value_or(last));
      if (own) {
        commit();
      }
    } catch (...) {
      if (own) {
        rollback();
      }
      throw;
    }
  } catch (...) {
    if (relax) {
      use s{d.sync_configured};
      sqlite3_step(*s);
    }
    throw;
  }
  if (relax) {
    use s{d.sync_configured};
    sqlite3_step(*s);
  }
}

}  // namespace nudge
