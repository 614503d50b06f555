// nudge/memory_store.hpp: the default store, in memory, with a due-time index.
#pragma once

#include <cstddef>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/detail/compiled.hpp>
#include <nudge/store.hpp>

namespace nudge {

/// Keeps contact states in memory. `due(t)` reads an index ordered by each contact's earliest
/// timer, so advancing the clock touches only contacts with work to do.
///
/// Thread-safety: none; the engine calls it from one thread.
class memory_store final : public store {
 public:
  std::optional<contact_state> load(std::string_view contact) override;
  void save(std::span<contact_state> states) override;
  std::vector<std::string> due(time_point t) override;
  /// From an index by segment kept up to date in save: O(members log members).
  std::vector<std::string> segment_members(std::string_view segment) override;
  /// O(1) after the lookup of the segment.
  std::size_t segment_size(std::string_view segment) override;
  std::vector<std::string> contacts() override;

  /// Number of contacts stored.
  std::size_t size() const noexcept { return states_.size(); }
  /// Read access without a copy; nullptr when absent.
  const contact_state* find(std::string_view contact) const;
  /// Visits every stored state, in no particular order.
  template <class Visitor>
  void for_each(Visitor&& visit) const {
    for (const auto& s : states_) visit(s);
  }

 private:
  std::vector<contact_state> states_;
  detail::string_map<std::size_t> index_;
  std::set<std::pair<time_point, std::size_t>> due_;   ///< (next_due, position) with timers
  detail::string_map<std::set<std::size_t>> members_;  ///< segment -> positions of its members
};

}  // namespace nudge
