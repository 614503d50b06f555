// The SQLite store's in-memory contact states with their undo log. Private: not installed.
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

namespace nudge::sqlite_detail {

// The contact states in memory, changed in place by the open transaction, with an undo log that
// puts the previous states back on rollback. (Applying a batch where it lands, while its states
// are still in cache, halved the cost of a second pass over a pending copy.) States lent to the
// engine (store::lend) are evaluated where they lie, with no copy in the undo log: a rollback
// after lending cannot put them back from memory, and says so (the store then re-reads the
// database, which holds exactly the committed states).
class state_table {
 public:
  const contact_state* find(std::string_view id) const {
    auto it = index_.find(id);
    return it == index_.end() ? nullptr : &states_[it->second];
  }
  std::size_t size() const noexcept { return states_.size(); }
  const std::vector<contact_state>& states() const noexcept { return states_; }

  // The state of `id` for the engine to change in place, or nullptr if there is none. Until
  // finish_lent() its entry in the due index may be stale (its next due time may change).
  contact_state* lend(std::string_view id) {
    auto it = index_.find(id);
    if (it == index_.end()) {
      return nullptr;
    }
    if (lent_.size() == lent_.capacity()) {
      lent_.reserve(2 * lent_.capacity() + 64);
    }
    const std::uint32_t pos = it->second;
    contact_state& s = states_[pos];
    lent_.push_back({pos, !s.timers.empty(), s.next_due()});
    lent_since_commit_ = true;
    return &s;
  }
  struct lent_state {
    std::uint32_t pos;
    bool had_timers;  ///< as lent: whether the due index holds (due, pos)
    time_point due;
  };
  // The states lent since the last finish_lent(), in lending order.
  std::span<const lent_state> lent() const noexcept { return lent_; }
  const contact_state& at(std::uint32_t pos) const noexcept { return states_[pos]; }
  // The lent states are final: update their due index entries. (Most batches leave a
  // contact's next due time as it was: the ordered index is then not touched at all.)
  void finish_lent() {
    for (const auto& l : lent_) {
      const contact_state& s = states_[l.pos];
      const bool has_timers = !s.timers.empty();
      if (has_timers == l.had_timers && (!has_timers || s.next_due() == l.due)) {
        continue;
      }
      if (l.had_timers) {
        due_.erase({l.due, l.pos});
      }
      if (has_timers) {
        due_.emplace(s.next_due(), l.pos);
      }
    }
    lent_.clear();
  }

  void put(contact_state&& s) {
    if (replaced_.size() == replaced_.capacity()) {
      replaced_.reserve(2 * replaced_.capacity() + 64);
    }
    auto [it, fresh] = index_.try_emplace(s.contact.id, static_cast<std::uint32_t>(states_.size()));
    const std::uint32_t pos = it->second;
    if (fresh) {
      try {
        states_.push_back(std::move(s));
      } catch (...) {
        index_.erase(it);
        throw;
      }
    } else {
      contact_state& current = states_[pos];
      if (!current.timers.empty()) {
        due_.erase({current.next_due(), pos});
      }
      replaced_.emplace_back(pos, std::move(current));
      current = std::move(s);
    }
    if (!states_[pos].timers.empty()) {
      due_.emplace(states_[pos].next_due(), pos);
    }
  }

  std::vector<std::string> due(time_point t) const {
    std::vector<std::string> ids;
    for (auto it = due_.begin(); it != due_.end() && it->first <= t; ++it) {
      ids.push_back(states_[it->second].contact.id);
    }
    return ids;
  }

  // The open transaction's changes become permanent.
  void commit() noexcept {
    replaced_.clear();
    lent_since_commit_ = false;
    committed_size_ = states_.size();
  }
  // The open transaction's changes are undone, newest first. False if states were lent since
  // the last commit: then the table was emptied and must be read again from the database.
  [[nodiscard]] bool rollback() noexcept {
    if (lent_since_commit_) {
      clear();
      return false;
    }
    for (auto it = replaced_.rbegin(); it != replaced_.rend(); ++it) {
      contact_state& current = states_[it->first];
      if (!current.timers.empty()) {
        due_.erase({current.next_due(), it->first});
      }
      current = std::move(it->second);
      if (!current.timers.empty()) {
        due_.emplace(current.next_due(), it->first);
      }
    }
    replaced_.clear();
    while (states_.size() > committed_size_) {
      const auto pos = static_cast<std::uint32_t>(states_.size() - 1);
      if (!states_.back().timers.empty()) {
        due_.erase({states_.back().next_due(), pos});
      }
      index_.erase(states_.back().contact.id);
      states_.pop_back();
    }
    return true;
  }
  void clear() noexcept {
    states_.clear();
    index_.clear();
    due_.clear();
    replaced_.clear();
    lent_.clear();
    lent_since_commit_ = false;
    committed_size_ = 0;
  }

 private:
  std::vector<contact_state> states_;
  detail::string_map<std::uint32_t> index_;
  std::set<std::pair<time_point, std::uint32_t>> due_;  ///< (next_due, position) with timers
  std::vector<std::pair<std::uint32_t, contact_state>> replaced_;
  std::vector<lent_state> lent_;
  bool lent_since_commit_ = false;
  std::size_t committed_size_ = 0;
};

}  // namespace nudge::sqlite_detail
