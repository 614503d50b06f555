// The in-memory default store.
#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include <nudge/memory_store.hpp>

namespace nudge {

std::optional<contact_state> memory_store::load(std::string_view contact) {
  auto it = index_.find(contact);
  if (it == index_.end()) {
    return std::nullopt;
  }
  return states_[it->second];
}

const contact_state* memory_store::find(std::string_view contact) const {
  auto it = index_.find(contact);
  return it == index_.end() ? nullptr : &states_[it->second];
}

void memory_store::save(std::span<contact_state> states) {
  // Reserve everything that can throw first, so the assignments below cannot fail halfway and
  // the batch lands whole or not at all.
  std::size_t fresh = 0;
  for (const auto& s : states) {
    fresh += index_.find(s.contact.id) == index_.end() ? 1 : 0;
  }
  // Grow geometrically: reserving exactly size + fresh on every save made one-at-a-time upserts
  // quadratic (10,000 upserts took 21 s).
  const std::size_t need = states_.size() + fresh;
  if (states_.capacity() < need) {
    states_.reserve(std::max(need, 2 * states_.capacity()));
  }
  if (index_.size() + fresh > index_.max_load()) {
    index_.reserve(std::max(need, 2 * index_.size()));
  }
  std::vector<std::pair<time_point, std::size_t>> due_entries;
  due_entries.reserve(states.size());
  for (auto& s : states) {
    auto it = index_.find(s.contact.id);
    // A replay in batches saves every contact with an event or a due timer in each batch, and
    // most saves change neither the next due time nor the memberships: the indexes (sets that can
    // hold every contact) are only touched for what changed.
    if (it == index_.end()) {
      const std::size_t pos = states_.size();
      index_.emplace(s.contact.id, pos);
      states_.push_back(std::move(s));
      for (const auto& [name, since] : states_[pos].segments) {
        members_[name].insert(pos);
      }
      if (!states_[pos].timers.empty()) {
        due_.emplace(states_[pos].next_due(), pos);
      }
      continue;
    }
    const std::size_t pos = it->second;
    const time_point old_due = states_[pos].next_due();
    if (old_due != s.next_due() && !states_[pos].timers.empty()) {
      due_.erase({old_due, pos});
    }
    const name_map<time_point> old_segments = std::move(states_[pos].segments);
    states_[pos] = std::move(s);
    const contact_state& now = states_[pos];
    // Both maps are sorted by name: one merge walk finds the segments left and entered.
    auto o = old_segments.begin();
    auto n = now.segments.begin();
    while (o != old_segments.end() || n != now.segments.end()) {
      if (n == now.segments.end() || (o != old_segments.end() && o->first < n->first)) {
        if (auto m = members_.find(o->first); m != members_.end()) {
          m->second.erase(pos);
        }
        ++o;
      } else if (o == old_segments.end() || n->first < o->first) {
        // A std::bad_alloc here would leave the index short of this contact; the states and the
        // due index are already whole.
        members_[n->first].insert(pos);
        ++n;
      } else {
        ++o;
        ++n;
      }
    }
    if (old_due != now.next_due() && !now.timers.empty()) {
      due_.emplace(now.next_due(), pos);
    }
  }
}

std::vector<std::string> memory_store::due(time_point t) {
  std::vector<std::string> ids;
  for (auto it = due_.begin(); it != due_.end() && it->first <= t; ++it) {
    ids.push_back(states_[it->second].contact.id);
  }
  return ids;
}

std::vector<std::string> memory_store::segment_members(std::string_view segment) {
  std::vector<std::string> ids;
  if (auto m = members_.find(segment); m != members_.end()) {
    ids.reserve(m->second.size());
    for (std::size_t pos : m->second) {
      ids.push_back(states_[pos].contact.id);
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::size_t memory_store::segment_size(std::string_view segment) {
  auto m = members_.find(segment);
  return m == members_.end() ? 0 : m->second.size();
}

contact_state* store::lend(std::string_view) {
  return nullptr;
}

void store::abandon() noexcept {}

std::vector<std::string> store::segment_members(std::string_view segment) {
  throw std::logic_error(
      fmt::format("this store does not answer segment queries (segment \"{}\")", segment));
}

std::size_t store::segment_size(std::string_view segment) {
  return segment_members(segment).size();
}

std::vector<std::string> store::contacts() {
  throw std::logic_error("this store cannot list its contacts (store::contacts)");
}

std::vector<std::string> memory_store::contacts() {
  std::vector<std::string> out;
  out.reserve(states_.size());
  for (const auto& s : states_) {
    out.push_back(s.contact.id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace nudge
