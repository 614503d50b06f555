// The in-memory default store: a state_table (core/engine/state_table.hpp) that lends.
#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include <nudge/memory_store.hpp>

#include "core/engine/state_table.hpp"

namespace nudge {

memory_store::memory_store(memory_store_options options)
    : table_(std::make_unique<detail::state_table>(detail::state_table_options{
          .back_up_lent = options.undo, .index_segments = true, .lazy_profile = options.undo})) {}

void memory_store::check_usable() const {
  if (broken_) [[unlikely]] {
    throw std::logic_error(
        "memory_store: a batch failed in a store without undo (memory_store_options::undo = "
        "false); its states were half evaluated and were dropped: use a new store");
  }
}
memory_store::~memory_store() = default;
memory_store::memory_store(memory_store&&) noexcept = default;
memory_store& memory_store::operator=(memory_store&&) noexcept = default;

std::optional<contact_state> memory_store::load(std::string_view contact) {
  check_usable();
  const contact_state* s = table_->find(contact);
  if (s == nullptr) {
    return std::nullopt;
  }
  return *s;
}

const contact_state* memory_store::find(std::string_view contact) const {
  return table_->find(contact);
}

std::size_t memory_store::size() const noexcept {
  return table_->size();
}

const std::vector<contact_state>& memory_store::states() const noexcept {
  return table_->states();
}

contact_state* memory_store::lend(std::string_view contact) {
  check_usable();
  return table_->lend(contact);
}

void memory_store::will_change_profile(contact_state& lent) {
  table_->will_change_profile(lent);
}

void memory_store::abandon() noexcept {
  // With undo the table backs up what it lends and puts it back; without, it drops everything.
  broken_ = broken_ || !table_->rollback();
}

void memory_store::save(std::span<contact_state> states) {
  check_usable();
  // One transaction: the lent states' index entries, then the copies; anything that throws
  // (std::bad_alloc) rolls the whole batch back, lent states included.
  try {
    table_->finish_lent();
    table_->reserve(states.size());
    for (auto& s : states) {
      table_->put(std::move(s));
    }
  } catch (...) {
    broken_ = broken_ || !table_->rollback();
    throw;
  }
  table_->commit();
}

std::vector<std::string> memory_store::due(time_point t) {
  check_usable();
  return table_->due(t);
}

std::vector<std::string> memory_store::segment_members(std::string_view segment) {
  check_usable();
  std::vector<std::string> ids;
  if (const auto* m = table_->members(segment); m != nullptr) {
    ids.reserve(m->size());
    for (std::uint32_t pos : *m) {
      ids.push_back(table_->at(pos).contact.id);
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::size_t memory_store::segment_size(std::string_view segment) {
  check_usable();
  const auto* m = table_->members(segment);
  return m == nullptr ? 0 : m->size();
}

contact_state* store::lend(std::string_view) {
  return nullptr;
}

void store::will_change_profile(contact_state&) {}

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

void store::reserve(std::size_t) {}

void memory_store::reserve(std::size_t more) {
  check_usable();
  table_->reserve(more);  // outside a transaction: only capacity, nothing to undo
}

std::vector<std::string> memory_store::contacts() {
  check_usable();
  std::vector<std::string> out;
  out.reserve(table_->size());
  for (const auto& s : table_->states()) {
    out.push_back(s.contact.id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace nudge
