// The stores' in-memory state table and its undo log (state_table.hpp).
#include "core/engine/state_table.hpp"

#include <algorithm>
#include <stdexcept>

namespace nudge::detail {
namespace {

// Backups kept for reuse after a commit. Copying a state over a kept one reuses its vectors'
// and strings' allocations; past this many (a batch that lent more contacts), the rest are
// freed so that one huge batch does not hold a second copy of every state afterwards.
constexpr std::size_t backups_kept = 4096;

template <class V>
void grow_for(std::vector<V>& v, std::size_t more) {
  if (v.size() + more > v.capacity()) {
    v.reserve(std::max(v.size() + more, 2 * v.capacity() + 64));
  }
}

const contact_state& no_state() {
  static const contact_state empty;  // no timers, no segments: what an absent state indexes as
  return empty;
}

}  // namespace

state_table::state_table(state_table_options options) : options_(options) {
  if (options_.index_segments && !options_.back_up_lent) {
    throw std::logic_error("state_table: index_segments needs back_up_lent");
  }
}

contact_state* state_table::lend(std::string_view id) {
  auto it = index_.find(id);
  if (it == index_.end()) {
    return nullptr;
  }
  const std::uint32_t pos = it->second;
  contact_state& s = states_[pos];
  grow_for(lent_, 1);
  std::uint32_t slot = none;
  if (options_.back_up_lent) {
    grow_for(log_, 1);
    if (backups_used_ < backups_.size()) {
      backups_[backups_used_] = s;  // over a previous batch's copy: reuses its allocations
    } else {
      backups_.push_back(s);
    }
    slot = static_cast<std::uint32_t>(backups_used_++);
    // Logged now, not at finish_lent: whatever fails from here on, rollback() puts it back.
    log_.push_back({pos, true, slot});
  }
  lent_.push_back({pos, !s.timers.empty(), s.next_due(), slot});
  lent_since_commit_ = true;
  return &s;
}

void state_table::finish_lent() {
  for (const auto& l : lent_) {
    const name_map<time_point>* before =
        options_.index_segments ? &backups_[l.backup].segments : nullptr;
    reindex(l.pos, l.had_timers, l.due, before, states_[l.pos]);
  }
  lent_.clear();
}

void state_table::put(contact_state&& s) {
  grow_for(log_, 1);
  grow_for(replaced_, 1);
  auto [it, fresh] = index_.try_emplace(s.contact.id, static_cast<std::uint32_t>(states_.size()));
  const std::uint32_t pos = it->second;
  if (fresh) {
    try {
      states_.push_back(std::move(s));
    } catch (...) {
      index_.erase(it);
      throw;
    }
    // Past committed_size_: rollback() removes it, index entries and all.
    reindex(pos, false, max_time, &no_state().segments, states_[pos]);
    return;
  }
  replaced_.push_back(std::move(states_[pos]));
  log_.push_back({pos, false, static_cast<std::uint32_t>(replaced_.size() - 1)});
  states_[pos] = std::move(s);
  const contact_state& old = replaced_.back();
  reindex(pos, !old.timers.empty(), old.next_due(), &old.segments, states_[pos]);
}

// Only what changed is touched, and every step is idempotent (erasing an absent entry, inserting
// a present one), so that rollback() can run it backwards over a reindex that failed halfway.
void state_table::reindex(std::uint32_t pos, bool from_timers, time_point from_due,
                          const name_map<time_point>* from_segments, const contact_state& to) {
  const bool to_timers = !to.timers.empty();
  const time_point to_due = to.next_due();
  if (from_timers != to_timers || (to_timers && from_due != to_due)) {
    if (from_timers) {
      due_.erase({from_due, pos});
    }
    if (to_timers) {
      due_.insert({to_due, pos});
    }
  }
  if (!options_.index_segments || from_segments == nullptr) {
    return;
  }
  // Both maps are sorted by name: one merge walk finds the segments left and entered.
  const auto& old_segments = *from_segments;
  auto o = old_segments.begin();
  auto n = to.segments.begin();
  while (o != old_segments.end() || n != to.segments.end()) {
    if (n == to.segments.end() || (o != old_segments.end() && o->first < n->first)) {
      if (auto m = members_.find(o->first); m != members_.end()) {
        m->second.erase(pos);
      }
      ++o;
    } else if (o == old_segments.end() || n->first < o->first) {
      auto m = members_.find(n->first);
      if (m == members_.end()) {
        m = members_.try_emplace(n->first).first;
      }
      m->second.insert(pos);
      ++n;
    } else {
      ++o;
      ++n;
    }
  }
}

std::vector<std::string> state_table::due(time_point t) const {
  std::vector<std::string> ids;
  for (auto it = due_.begin(); it != due_.end() && it->first <= t; ++it) {
    ids.push_back(states_[it->second].contact.id);
  }
  return ids;
}

const std::set<std::uint32_t>* state_table::members(std::string_view segment) const {
  auto m = members_.find(segment);
  return m == members_.end() ? nullptr : &m->second;
}

void state_table::commit() noexcept {
  log_.clear();
  lent_.clear();
  replaced_.clear();
  if (backups_.size() > backups_kept) {
    backups_.erase(backups_.begin() + static_cast<std::ptrdiff_t>(backups_kept), backups_.end());
  }
  backups_used_ = 0;
  lent_since_commit_ = false;
  committed_size_ = states_.size();
}

// Undoing inserts only index entries that the transaction erased, so their nodes were freed
// moments ago; a std::bad_alloc here ends the process (noexcept) rather than leave the indexes
// wrong.
bool state_table::rollback() noexcept {
  if (lent_since_commit_ && !options_.back_up_lent) {
    clear();
    return false;
  }
  for (auto u = log_.rbegin(); u != log_.rend(); ++u) {
    contact_state& old = u->lent ? backups_[u->slot] : replaced_[u->slot];
    contact_state& current = states_[u->pos];
    reindex(u->pos, !current.timers.empty(), current.next_due(), &current.segments, old);
    current = std::move(old);
  }
  while (states_.size() > committed_size_) {
    const auto pos = static_cast<std::uint32_t>(states_.size() - 1);
    const contact_state& last = states_.back();
    reindex(pos, !last.timers.empty(), last.next_due(), &last.segments, no_state());
    index_.erase(last.contact.id);
    states_.pop_back();
  }
  log_.clear();
  lent_.clear();
  replaced_.clear();
  backups_used_ = 0;
  lent_since_commit_ = false;
  return true;
}

void state_table::clear() noexcept {
  states_.clear();
  index_.clear();
  due_.clear();
  members_.clear();
  lent_.clear();
  backups_.clear();
  backups_used_ = 0;
  replaced_.clear();
  log_.clear();
  lent_since_commit_ = false;
  committed_size_ = 0;
}

}  // namespace nudge::detail
