// The in-memory table of contact states that both stores keep (memory_store, and sqlite_store
// over its database): states by position, an id index, a due-time index, optionally a segment
// index, and the undo log that makes a batch (or a transaction of several) atomic. Private to the
// library: not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/detail/compiled.hpp>  // detail::string_map
#include <nudge/time.hpp>

namespace nudge::detail {

/// What differs between the stores that keep a state_table.
struct state_table_options {
  /// Lent states are backed up at lend, so that rollback() puts them back from memory
  /// (memory_store). Off: rollback() after a lend empties the table and returns false, and the
  /// owner reads its states again from where they are durable (sqlite_store's database).
  bool back_up_lent = true;
  /// Keep an index segment -> members (segment_members, segment_size). The index of a lent
  /// state is brought up to date from its backup, or without back_up_lent from a copy of its
  /// segments taken at lend.
  bool index_segments = false;
  /// With back_up_lent: a lent state's profile (contact_state::contact, but for its score and
  /// location) is backed up only when will_change_profile() says it is about to change. Most
  /// batches change no profile, and it is the largest part of a state to copy.
  bool lazy_profile = false;
};

/// Contact states changed in place by the open transaction, with an undo log that puts the
/// previous states back on rollback. A transaction is everything since the last commit():
/// states lent for evaluation in place (lend, then finish_lent once final) and states put as
/// whole values (put). (Applying a batch where it lands, while its states are still in cache,
/// halved the cost of a second pass over a pending copy; evaluating in place saves the copy out
/// and back.)
class state_table {
 public:
  explicit state_table(state_table_options options = {});

  const contact_state* find(std::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &states_[it->second];
  }
  std::size_t size() const noexcept { return states_.size(); }
  const std::vector<contact_state>& states() const noexcept { return states_; }
  const contact_state& at(std::uint32_t pos) const noexcept { return states_[pos]; }

  /// The state of `id` for the caller to change in place, or nullptr if there is none. Until
  /// finish_lent() its entries in the due and segment indexes may be stale. Each id at most once
  /// between two finish_lent() calls.
  /// @throws std::bad_alloc (backing it up); nothing was lent then.
  contact_state* lend(std::string_view id);
  struct lent_state {
    std::uint32_t pos;
    bool had_timers;  ///< as lent: whether the due index holds (due, pos)
    time_point due;
    std::uint32_t backup;  ///< its copy in backups_ (back_up_lent), else none
  };
  /// The states lent since the last finish_lent(), in lending order.
  std::span<const lent_state> lent() const noexcept { return lent_; }
  /// The lent states are final: bring their index entries up to date from what changed (the
  /// next due time and the segments they had when lent). Most batches change neither: the
  /// ordered indexes are then not touched at all.
  /// @throws std::bad_alloc; rollback() still undoes everything.
  void finish_lent();

  /// The lent state `s` is about to have its profile changed (store::will_change_profile):
  /// with lazy_profile, backs it up unless it already is. Else does nothing.
  /// @throws std::bad_alloc; the profile is then not changed yet, and rollback() still works.
  void will_change_profile(const contact_state& s);

  /// Room for `more` states beyond those stored, so that a batch of new contacts (the contacts
  /// file of a replay) grows the table once, not by doubling: each doubling held the old and
  /// the new array at once, the peak of a replay's memory.
  /// @throws std::bad_alloc; nothing changed then.
  void reserve(std::size_t more);
  /// Stores `s` under its id, replacing (and logging) the state there.
  /// @throws std::bad_alloc; rollback() still undoes everything.
  void put(contact_state&& s);

  /// Ids of the contacts with a timer due at or before `t`, earliest first (by due time, then
  /// position). Drops the stale entries it meets on the way (mutable: no visible change).
  std::vector<std::string> due(time_point t) const;
  /// Positions of the members of `segment` (index_segments), or nullptr if it has none.
  const std::set<std::uint32_t>* members(std::string_view segment) const;

  /// The open transaction's changes become permanent. Call finish_lent() first.
  void commit() noexcept;
  /// The open transaction's changes are undone, newest first. False if states were lent since
  /// the last commit without a backup (back_up_lent off): then the table was emptied and must
  /// be read again.
  [[nodiscard]] bool rollback() noexcept;
  void clear() noexcept;

 private:
  // The index entries of position `pos` go from what `from` says to what `to` says.
  void reindex(std::uint32_t pos, bool from_timers, time_point from_due,
               const name_map<time_point>* from_segments, const contact_state& to);
  // lazy_profile: no position is lent any more (the log's lent entries are done with).
  void forget_lent() noexcept;

  // One change of the open transaction, to undo newest first.
  struct undo {
    std::uint32_t pos;
    bool lent;  // lent (old state in backups_[slot]) or replaced by put (in replaced_[slot])
    std::uint32_t slot;
  };

  state_table_options options_;
  std::vector<contact_state> states_;
  string_map<std::uint32_t> index_;
  // (next_due, position) of every state with timers, in a min-heap (due_order). An entry whose
  // state's next due time has changed since is stale and stays until due() or commit() meets
  // it: a change of due time is one push, never a search. (A std::set kept it exact at an
  // erase and an insert per change, both allocating: ~5 % of a W1 replay.)
  using due_entry = std::pair<time_point, std::uint32_t>;
  mutable std::vector<due_entry> due_;
  mutable std::vector<due_entry> due_scratch_;  // due()'s list of current entries, reused
  // Each lend or put of a transaction pushes at most one entry, and its undo at most one more:
  // due_ keeps room for two per lend and put since the last commit, made before each (where
  // throwing is allowed), so that rollback() (noexcept) pushes without allocating.
  std::size_t due_base_ = 0;  // due_.size() at the last commit or rollback
  std::size_t due_ops_ = 0;   // lends and puts since then
  void make_due_room();
  bool is_current(const due_entry& e) const noexcept {
    return e.second < states_.size() && !states_[e.second].timers.empty() &&
           states_[e.second].next_due() == e.first;
  }
  void push_due(time_point due, std::uint32_t pos);
  string_map<std::set<std::uint32_t>> members_;  ///< segment -> positions of its members
  std::vector<lent_state> lent_;
  // index_segments without back_up_lent: the segments of lent_[i] as lent (a pool, as backups_).
  std::vector<name_map<time_point>> lent_segments_;
  // Copies of lent states as lent. A pool: slots are copy-assigned over the previous batch's,
  // reusing their allocations; [0, backups_used_) belong to the open transaction.
  std::vector<contact_state> backups_;
  std::size_t backups_used_ = 0;
  // lazy_profile: per backup, whether it holds the whole profile (else only score and
  // location); per position, the backup of the state lent there (none: not lent).
  std::vector<char> profile_saved_;
  std::vector<std::uint32_t> slot_of_;
  std::vector<contact_state> replaced_;
  std::vector<undo> log_;
  bool lent_since_commit_ = false;
  std::size_t committed_size_ = 0;
};

}  // namespace nudge::detail
