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

// `to` becomes `from` but for the profile, of which only the score and the location are copied
// (lazy_profile). Member by member: swapping an empty profile in and out around a whole copy
// cost more than the profile copy it saved.
void copy_but_profile(contact_state& to, const contact_state& from) {
#if defined(__GLIBCXX__) && defined(__x86_64__)
  // A member added to contact_state must be copied here too (the size is libstdc++'s on x86-64:
  // elsewhere the check is off).
  static_assert(sizeof(contact_state) == 656, "contact_state changed: update copy_but_profile");
#endif
  to.contact.score = from.contact.score;
  to.contact.location = from.contact.location;
  to.history = from.history;
  to.rule_runs = from.rule_runs;
  to.timers = from.timers;
  to.runs = from.runs;
  to.workflow_history = from.workflow_history;
  to.runs_started = from.runs_started;
  to.segments = from.segments;
  to.measures = from.measures;
  to.score_awards = from.score_awards;
  to.thresholds_reached = from.thresholds_reached;
  to.merged_into = from.merged_into;
  to.clock = from.clock;
  to.events_applied = from.events_applied;
  to.timers_scheduled = from.timers_scheduled;
  to.timeline = from.timeline;
  to.channel_sends = from.channel_sends;
  to.previous_location = from.previous_location;
}

// std::push_heap keeps the largest first: this puts the earliest (due, position) there.
constexpr auto due_order = [](const auto& a, const auto& b) { return a > b; };

const contact_state& no_state() {
  static const contact_state empty;  // no timers, no segments: what an absent state indexes as
  return empty;
}

}  // namespace

state_table::state_table(state_table_options options) : options_(options) {
  if (options_.lazy_profile && !options_.back_up_lent) {
    throw std::logic_error("state_table: lazy_profile needs back_up_lent");
  }
}

contact_state* state_table::lend(std::string_view id) {
  auto it = index_.find(id);
  if (it == index_.end()) {
    return nullptr;
  }
  const std::uint32_t pos = it->second;
  contact_state& s = states_[pos];
  make_due_room();
  grow_for(lent_, 1);
  std::uint32_t slot = none;
  if (options_.back_up_lent) {
    grow_for(log_, 1);
    if (options_.lazy_profile && slot_of_.size() < states_.size()) {
      slot_of_.resize(states_.size(), none);
    }
    if (backups_used_ == backups_.size()) {
      profile_saved_.push_back(0);  // first: it may be longer than backups_, never shorter
      backups_.emplace_back();
    }
    // Over a previous batch's copy: reuses its allocations.
    contact_state& backup = backups_[backups_used_];
    if (options_.lazy_profile) {
      copy_but_profile(backup, s);  // the profile is copied on its first change, if any
      profile_saved_[backups_used_] = 0;
      slot_of_[pos] = static_cast<std::uint32_t>(backups_used_);
    } else {
      backup = s;
      profile_saved_[backups_used_] = 1;
    }
    slot = static_cast<std::uint32_t>(backups_used_++);
    // Logged now, not at finish_lent: whatever fails from here on, rollback() puts it back.
    log_.push_back({pos, true, slot});
  }
  if (options_.index_segments && !options_.back_up_lent) {
    if (lent_segments_.size() == lent_.size()) {
      lent_segments_.emplace_back();
    }
    auto& copy = lent_segments_[lent_.size()];
    if (s.segments.empty()) {
      copy.clear();  // most contacts are in no segment: no copy-assignment to call
    } else {
      copy = s.segments;  // over the previous batch's: reuses it
    }
  }
  lent_.push_back({pos, !s.timers.empty(), s.next_due(), slot});
  lent_since_commit_ = true;
  return &s;
}

void state_table::finish_lent() {
  for (std::size_t i = 0; i < lent_.size(); ++i) {
    const lent_state& l = lent_[i];
    const name_map<time_point>* before = !options_.index_segments ? nullptr
                                         : options_.back_up_lent  ? &backups_[l.backup].segments
                                                                  : &lent_segments_[i];
    reindex(l.pos, l.had_timers, l.due, before, states_[l.pos]);
  }
  lent_.clear();
}

void state_table::will_change_profile(const contact_state& s) {
  if (!options_.lazy_profile || states_.empty() || &s < states_.data() ||
      &s >= states_.data() + states_.size()) {
    return;
  }
  const auto pos = static_cast<std::size_t>(&s - states_.data());
  if (pos >= slot_of_.size() || slot_of_[pos] == none || profile_saved_[slot_of_[pos]] != 0) {
    return;
  }
  contact& kept = backups_[slot_of_[pos]].contact;
  const double score = kept.score;  // as lent: the state's own may have changed since
  const auto location = kept.location;
  kept = s.contact;
  kept.score = score;
  kept.location = location;
  profile_saved_[slot_of_[pos]] = 1;
}

void state_table::reserve(std::size_t more) {
  grow_for(states_, more);  // geometric beyond the first batch: saves of one stay linear
  if (index_.size() + more > index_.max_load()) {
    index_.reserve(std::max(index_.size() + more, 2 * index_.size()));
  }
}

void state_table::put(contact_state&& s) {
  make_due_room();
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
  if (to_timers && (!from_timers || from_due != to_due)) {
    push_due(to_due, pos);  // the entry for from_due, if any, is stale now: is_current drops it
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

void state_table::make_due_room() {
  const std::size_t need = due_base_ + 2 * (due_ops_ + 1);
  if (need > due_.capacity()) {
    due_.reserve(std::max(need, 2 * due_.capacity() + 64));
  }
  ++due_ops_;
}

void state_table::push_due(time_point due, std::uint32_t pos) {
  due_.emplace_back(due, pos);  // within the room make_due_room() made: never allocates
  std::push_heap(due_.begin(), due_.end(), due_order);
}

std::vector<std::string> state_table::due(time_point t) const {
  // Pop what is due, in (due, position) order, keep the current entries once, push them back.
  std::vector<due_entry>& current = due_scratch_;
  current.clear();
  if (due_.empty() || due_.front().first > t) {
    return {};  // nothing due: the common case of a small batch
  }
  while (!due_.empty() && due_.front().first <= t) {
    std::pop_heap(due_.begin(), due_.end(), due_order);
    const due_entry e = due_.back();
    due_.pop_back();
    if (is_current(e) && (current.empty() || current.back() != e)) {
      current.push_back(e);
    }
  }
  std::vector<std::string> ids;
  ids.reserve(current.size());
  for (const auto& e : current) {
    ids.push_back(states_[e.second].contact.id);
    due_.push_back(e);  // within the capacity the popped entries left
    std::push_heap(due_.begin(), due_.end(), due_order);
  }
  return ids;
}

const std::set<std::uint32_t>* state_table::members(std::string_view segment) const {
  auto m = members_.find(segment);
  return m == members_.end() ? nullptr : &m->second;
}

void state_table::commit() noexcept {
  forget_lent();
  if (due_.size() > 2 * states_.size() + 1024) {
    // Mostly stale: drop those (and duplicates) in place, without allocating.
    std::sort(due_.begin(), due_.end());
    const auto end = std::unique(due_.begin(), due_.end());
    due_.erase(
        std::remove_if(due_.begin(), end, [&](const due_entry& e) { return !is_current(e); }),
        due_.end());
    std::make_heap(due_.begin(), due_.end(), due_order);
  }
  due_base_ = due_.size();
  due_ops_ = 0;
  log_.clear();
  lent_.clear();
  replaced_.clear();
  if (backups_.size() > backups_kept) {
    backups_.erase(backups_.begin() + static_cast<std::ptrdiff_t>(backups_kept), backups_.end());
    profile_saved_.resize(backups_kept);
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
    if (u->lent && profile_saved_[u->slot] == 0) {
      // The profile was not changed but for its score and location: keep it, put those back.
      const double score = old.contact.score;
      const auto location = old.contact.location;
      old.contact = std::move(current.contact);
      old.contact.score = score;
      old.contact.location = location;
    }
    current = std::move(old);
  }
  forget_lent();
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
  due_base_ = due_.size();
  due_ops_ = 0;
  lent_since_commit_ = false;
  return true;
}

void state_table::forget_lent() noexcept {
  if (options_.lazy_profile) {
    for (const auto& u : log_) {
      if (u.lent) {
        slot_of_[u.pos] = none;
      }
    }
  }
}

void state_table::clear() noexcept {
  states_.clear();
  index_.clear();
  due_.clear();
  due_base_ = 0;
  due_ops_ = 0;
  members_.clear();
  lent_.clear();
  backups_.clear();
  profile_saved_.clear();
  slot_of_.clear();
  backups_used_ = 0;
  replaced_.clear();
  log_.clear();
  lent_since_commit_ = false;
  committed_size_ = 0;
}

}  // namespace nudge::detail
