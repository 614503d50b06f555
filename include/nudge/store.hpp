// nudge/store.hpp: the host's storage for contact states, as the engine calls it.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// Storage the engine loads contact states from and saves them to. Implement it over the host's
/// database; nudge ships memory_store (in memory) as the default.
///
/// Any method may throw: the engine wraps the exception in nudge::callback_error and the batch
/// changes nothing (see engine::process for the one exception, a failing save).
class store {
 public:
  virtual ~store() = default;
  /// The contact's state, or nullopt if the store has none.
  virtual std::optional<contact_state> load(std::string_view contact) = 0;
  /// Saves every state of one batch, all or none. May move from `states`. A store that lent
  /// states (see lend) saves those too, as they are now.
  virtual void save(std::span<contact_state> states) = 0;
  /// Optional fast path for stores that hold their states in memory and can undo a failed
  /// batch themselves: the stored state itself, for the engine to evaluate in place instead of
  /// copying it out with load() and back with save() (on small batches those copies cost the
  /// engine more than evaluating). nullptr: not lent, and the engine calls load() as usual.
  ///
  /// Contract: the pointer stays valid until the next save() or abandon(); the engine lends
  /// each contact at most once per batch, changes the state only by evaluating it, and then
  /// calls save() (which must persist the lent states with the others) or, when the batch
  /// fails before or in save(), abandon(). Either way the store must end with all the batch's
  /// states or none of them: a store that lends must therefore be able to put back the states
  /// it lent without the engine's help (sqlite_store re-reads them from its database).
  virtual contact_state* lend(std::string_view contact);
  /// Called before the engine first changes the profile of a lent state in a batch (its
  /// contact_state::contact, other than `score` and `location`: those two change on many
  /// events, and a store that lends puts them back itself). A store that backs up lent states
  /// lazily (memory_store) copies the profile here; the default does nothing. May be called
  /// more than once per lent state and batch. A store that forwards lend() to another store
  /// must forward this too.
  virtual void will_change_profile(contact_state& lent);
  /// The batch that states were lent to failed: undo whatever the engine did to them. Never
  /// throws (a store that cannot undo now must refuse every later call until it can).
  virtual void abandon() noexcept;
  /// Ids of the contacts with a timer due at or before `t` (contact_state::next_due), so
  /// engine::advance touches only those.
  virtual std::vector<std::string> due(time_point t) = 0;

  /// Ids of the contacts in segment `segment` (contact_state::segments), sorted bytewise.
  /// The default scans nothing and throws std::logic_error: a store that can answer (as
  /// memory_store does, from an index kept in save) overrides it.
  virtual std::vector<std::string> segment_members(std::string_view segment);
  /// Number of contacts in segment `segment`; the default counts segment_members.
  virtual std::size_t segment_size(std::string_view segment);
  /// Ids of every stored contact, sorted bytewise: engine::change_program visits them all (a
  /// program change may end or resume workflow runs of contacts with nothing due). The default
  /// throws std::logic_error: a store that can list its contacts overrides it.
  virtual std::vector<std::string> contacts();
  /// A hint: about `more` contacts the store does not have yet are coming (a replay's contacts
  /// file, upserted in slices). A store that keeps its states in one array (memory_store)
  /// makes room for them once, instead of doubling it slice by slice (each doubling holds the
  /// old and the new array at once). The default does nothing.
  virtual void reserve(std::size_t more);
};

}  // namespace nudge
