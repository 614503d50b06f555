// nudge/memory_store.hpp: the default store, in memory, with a due-time index.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/store.hpp>

namespace nudge {

namespace detail {
class state_table;
}  // namespace detail

/// How a memory_store undoes a failed batch.
struct memory_store_options {
  /// True: a batch that fails changes nothing (the states it lent are put back from copies
  /// taken at lend). False: nothing is copied at lend, so a failed batch leaves its states half
  /// evaluated; the store then drops every state and refuses every later call with
  /// std::logic_error. For an engine that is thrown away when a batch fails, as nudge::replay's
  /// own: the copies cost a tenth of a replay (bench/README.md).
  bool undo = true;
};

/// Keeps contact states in memory. `due(t)` reads an index ordered by each contact's earliest
/// timer, so advancing the clock touches only contacts with work to do.
///
/// It lends its states to the engine (store::lend), which evaluates them in place; a batch that
/// fails is undone from copies taken at lend (an undo log), so it still changes nothing.
///
/// Thread-safety: none; the engine calls it from one thread.
class memory_store final : public store {
 public:
  explicit memory_store(memory_store_options options = {});
  ~memory_store() override;
  memory_store(memory_store&&) noexcept;
  memory_store& operator=(memory_store&&) noexcept;

  std::optional<contact_state> load(std::string_view contact) override;
  /// All or nothing: a save that fails (std::bad_alloc) leaves the store as it was before the
  /// batch, the states lent to it included.
  void save(std::span<contact_state> states) override;
  /// The stored state itself, to be evaluated in place until save() or abandon().
  contact_state* lend(std::string_view contact) override;
  /// Backs up the lent state's profile (lend backs up the rest of the state).
  void will_change_profile(contact_state& lent) override;
  /// Puts back every state lent since the last save, as it was when lent.
  void abandon() noexcept override;
  std::vector<std::string> due(time_point t) override;
  /// From an index by segment kept up to date in save: O(members log members).
  std::vector<std::string> segment_members(std::string_view segment) override;
  /// O(1) after the lookup of the segment.
  std::size_t segment_size(std::string_view segment) override;
  std::vector<std::string> contacts() override;
  void reserve(std::size_t more) override;

  /// Number of contacts stored.
  std::size_t size() const noexcept;
  /// Read access without a copy; nullptr when absent.
  const contact_state* find(std::string_view contact) const;
  /// Visits every stored state, in no particular order.
  template <class Visitor>
  void for_each(Visitor&& visit) const {
    for (const auto& s : states()) visit(s);
  }

 private:
  const std::vector<contact_state>& states() const noexcept;

  // After a batch failed without undo: throws std::logic_error.
  void check_usable() const;

  std::unique_ptr<detail::state_table> table_;
  bool broken_ = false;  ///< a batch failed without undo: the states are gone
};

}  // namespace nudge
