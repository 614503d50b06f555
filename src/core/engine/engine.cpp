// The engine: grouping a batch by contact, host callbacks, program changes, profiles. One
// batch's setup, commit and rollback are batch.hpp's; the identity path is linked.cpp.
#include <optional>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/engine.hpp>
#include <nudge/lifecycle.hpp>

#include "batch.hpp"
#include "host_call.hpp"

namespace nudge {

using detail::call_host;

namespace {

// The first event of contact `g` past the limit, as an input_error.
[[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_events(
    std::span<const event> events, const std::vector<std::uint32_t>& group, std::size_t g,
    std::size_t limit) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (group[i] == g && ++seen > limit) {
      throw input_error(events[i].contact, i, detail::too_many_events(limit));
    }
  }
  throw std::logic_error("throw_too_many_events: the contact is within the limit");
}

}  // namespace

engine::engine(std::shared_ptr<const nudge::program> program, nudge::store* store,
               nudge::sink* sink, engine_options options)
    : program_(std::move(program)), store_(store), sink_(sink), options_(options) {
  if (!program_) {
    throw std::invalid_argument("nudge::engine: program is null");
  }
  if (store_ == nullptr) {
    own_store_ = std::make_unique<memory_store>();
    store_ = own_store_.get();
  }
  for (const auto& r : program_->rules().rules) {
    rule_stats s;
    s.rule = r.id;
    stats_.push_back(std::move(s));
  }
  workflow_stats_ = detail::empty_workflow_stats(*program_);
}

std::vector<due_action> engine::process(std::span<const event> events, time_point now) {
  const nudge::program& p = *program_;
  if (!in_input_range(now)) {
    // Timers fire up to `now` and set new ones from there: past the input range they could
    // reach instants no snapshot or store can read back.
    throw input_error({}, 0,
                      fmt::format("now ({}) is outside the supported range ({})", to_epoch(now),
                                  input_range_text));
  }
  // Every contact is evaluated into this batch (lent states in place, the others into copies);
  // nothing is delivered or saved before it commits, and if anything throws first, it undoes
  // itself.
  detail::batch b{*this};
  // This call's buffers (process_scratch), kept from call to call; a host callback that calls
  // process() again while they are in use gets fresh ones.
  std::optional<process_scratch> fresh_scratch;
  process_scratch& scratch = scratch_busy_ ? fresh_scratch.emplace() : scratch_;
  struct mark_busy {
    bool& busy;
    bool was;
    ~mark_busy() { busy = was; }
  } const busy_while_here{scratch_busy_, scratch_busy_};
  scratch_busy_ = true;
  scratch.clear();
  // Group event positions by contact, keeping each contact's order and the order in which
  // contacts first appear (a counting sort: one pass to count, one to place).
  auto& contacts = scratch.contacts;
  auto& group = scratch.group;
  group.resize(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& id = events[i].contact;
    if (id.empty()) {
      throw input_error(id, i, "the contact id is empty");
    }
    if (events[i].type == event_types::identify) [[unlikely]] {
      return process_linked(events, now, {}, b);
    }
    group[i] = scratch.group_of_id(id);
  }
  const std::size_t with_events = contacts.size();
  std::vector<std::string> due_ids = call_host("store.due", "", [&] { return store_->due(now); });
  for (const auto& id : due_ids) {
    scratch.group_of_id(id);
  }
  auto& start = scratch.start;
  start.assign(contacts.size() + 1, 0);
  for (auto g : group) {
    ++start[g + 1];
  }
  for (std::size_t g = 0; g < contacts.size(); ++g) {
    start[g + 1] += start[g];
  }
  if (const std::size_t limit = options_.max_events_per_contact; limit != 0) {
    // Per contact, not per event: the check stays off the per-event path.
    for (std::size_t g = 0; g < with_events; ++g) {
      if (start[g + 1] - start[g] > limit) {
        throw_too_many_events(events, group, g, limit);
      }
    }
  }
  auto& ordered = scratch.ordered;
  auto& original = scratch.original;
  ordered.resize(events.size());
  original.resize(events.size());
  {
    auto& fill = scratch.fill;
    fill.assign(start.begin(), start.end() - 1);
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto at = fill[group[i]]++;
      ordered[at] = &events[i];
      original[at] = static_cast<std::uint32_t>(i);
    }
  }

  // Lend the states of the contacts with events before evaluating any: an alias record among
  // them (an id merged into another contact) sends the batch down the identity path, which
  // must start from untouched states.
  auto& lent = scratch.lent;
  lent.assign(with_events, nullptr);
  bool has_alias = false;
  for (std::size_t g = 0; g < with_events; ++g) {
    lent[g] = b.lend(contacts[g]);
    has_alias = has_alias || (lent[g] != nullptr && !lent[g]->merged_into.empty());
  }
  if (has_alias) [[unlikely]] {
    detail::string_map<contact_state*> by_id;
    for (std::size_t g = 0; g < with_events; ++g) {
      if (lent[g] != nullptr) {
        by_id.emplace(contacts[g], lent[g]);
      }
    }
    return process_linked(events, now, by_id, b);  // b abandons them if that path fails
  }
  // A copy for a contact the store did not lend; out of the loop, since constructing and
  // destroying an empty optional of a 656-byte state per contact was a tenth of a one-event
  // batch's own instructions.
  std::optional<contact_state> loaded;
  for (std::size_t g = 0; g < contacts.size(); ++g) {
    // A contact's events lie scattered through the caller's batch: fetch the next contact's
    // while this one is evaluated (a measured win on batches larger than the cache).
    if (g + 1 < contacts.size()) {
      for (auto k = start[g + 1]; k < start[g + 2]; ++k) {
        __builtin_prefetch(ordered[k]);
      }
    }
    const std::string_view id = contacts[g];
    contact_state* target = g < with_events ? lent[g] : b.lend(id);
    loaded.reset();
    if (target != nullptr) {
      if (!target->merged_into.empty()) {
        continue;  // reported due (an alias record has no timers of its own)
      }
    } else {
      loaded = call_host("store.load", id, [&] { return store_->load(id); });
      if (loaded && !loaded->merged_into.empty()) [[unlikely]] {
        if (g >= with_events) {
          continue;  // reported due (an alias record has no timers of its own)
        }
        if (b.lent_any()) {
          throw std::logic_error(fmt::format(
              "nudge::engine: the store lent some of the batch's states but not the alias "
              "record \"{}\"; a store that lends must lend every state it holds",
              id));
        }
        // Its events belong to the contact it merged into. Nothing was lent: the copies
        // evaluated so far are simply dropped with `b`.
        detail::batch fresh{*this};
        return process_linked(events, now, {}, fresh);
      }
      if (!loaded) {
        if (g >= with_events) {
          continue;  // the store reported it due but no longer has it
        }
        if (!options_.create_unknown_contacts) {
          throw input_error(std::string{id}, original[start[g]], "unknown contact");
        }
        contact fresh;
        fresh.id = std::string{id};
        loaded = p.new_state(std::move(fresh));
      }
      target = &*loaded;
    }
    std::span<const event* const> mine{ordered.data() + start[g], start[g + 1] - start[g]};
    try {
      b.evaluate(*target, mine, now, true, !loaded);
    } catch (const input_error& e) {
      // Report the position in the caller's batch, not in this contact's slice.
      throw input_error(e.contact(), original[start[g] + e.event_index()], e.reason());
    }
    if (loaded) {
      b.keep(std::move(*loaded));
      loaded.reset();
    }
    b.end_contact(static_cast<std::uint32_t>(g));
  }
  return b.commit(contacts);
}

std::uint32_t engine::process_scratch::group_of_id(std::string_view id) {
  if (!mapped) {
    for (std::size_t k = 0; k < contacts.size(); ++k) {
      if (contacts[k] == id) {
        return static_cast<std::uint32_t>(k);
      }
    }
    if (contacts.size() < linear_limit) {
      contacts.push_back(id);
      return static_cast<std::uint32_t>(contacts.size() - 1);
    }
    mapped = true;
    for (std::size_t k = 0; k < contacts.size(); ++k) {
      group_of.emplace(contacts[k], static_cast<std::uint32_t>(k));
    }
  }
  auto [it, added] = group_of.emplace(id, static_cast<std::uint32_t>(contacts.size()));
  if (added) {
    contacts.push_back(id);
  }
  return it->second;
}

void engine::process_scratch::clear() noexcept {
  if (mapped) {
    // Clearing costs the map's capacity, not its size: skipped while small batches use none.
    group_of.clear();
    mapped = false;
  }
  contacts.clear();
  group.clear();
  start.clear();
  original.clear();
  fill.clear();
  ordered.clear();
  lent.clear();
}

void engine::restore(std::vector<rule_stats> stats, round_robin_counters counters,
                     std::vector<nudge::workflow_stats> workflows) {
  if (!workflows.empty()) {
    const auto expected = detail::empty_workflow_stats(*program_);
    bool fits = workflows.size() == expected.size();
    for (std::size_t i = 0; fits && i < workflows.size(); ++i) {
      fits = workflows[i].workflow == expected[i].workflow &&
             workflows[i].steps.size() == expected[i].steps.size();
      for (std::size_t j = 0; fits && j < workflows[i].steps.size(); ++j) {
        fits = workflows[i].steps[j].step == expected[i].steps[j].step;
      }
    }
    if (!fits) {
      throw std::invalid_argument(
          "nudge::engine::restore: the workflow statistics do not name this program's workflows "
          "and steps in order");
    }
  }
  if (stats.size() != stats_.size()) {
    throw std::invalid_argument(
        fmt::format("nudge::engine::restore: {} rule statistics for a program of {} rules",
                    stats.size(), stats_.size()));
  }
  for (std::size_t i = 0; i < stats.size(); ++i) {
    if (stats[i].rule != stats_[i].rule) {
      throw std::invalid_argument(fmt::format(
          "nudge::engine::restore: statistics {} are for rule \"{}\", the program's rule {} is "
          "\"{}\"",
          i, stats[i].rule, i, stats_[i].rule));
    }
  }
  stats_ = std::move(stats);
  counters_ = std::move(counters);
  workflow_stats_ =
      workflows.empty() ? detail::empty_workflow_stats(*program_) : std::move(workflows);
}

void engine::change_program(std::shared_ptr<const nudge::program> next, time_point at) {
  if (!next) {
    throw std::invalid_argument("nudge::engine::change_program: program is null");
  }
  const nudge::program& from = *program_;
  check_program_change(from, *next);
  const auto ids = call_host("store.contacts", "", [&] { return store_->contacts(); });
  std::vector<contact_state> changed;
  std::vector<workflow_outcome> outcomes;
  for (const auto& id : ids) {
    auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
    if (loaded && migrate_state(from, *next, *loaded, at, &outcomes)) {
      changed.push_back(std::move(*loaded));
    }
  }
  // Ended runs count against the old layout, then statistics move to the new one by id.
  auto counts = workflow_stats_;
  const detail::outcome_recorder recorder{nullptr, nullptr, nullptr, &counts};
  for (const auto& o : outcomes) {
    recorder.note(o);
  }
  auto carried = detail::empty_workflow_stats(*next);
  for (std::size_t w = 0; w < carried.size() && w < counts.size(); ++w) {
    auto steps = std::move(carried[w].steps);
    carried[w] = std::move(counts[w]);
    for (auto& st : steps) {
      for (const auto& old : carried[w].steps) {
        if (old.step == st.step) {
          st = old;
          break;
        }
      }
    }
    carried[w].steps = std::move(steps);
  }
  // Rules are unchanged, so their counters keep their positions; counters of workflow steps
  // follow (a step added or removed shifts the later ones: an approximation documented in
  // docs/rules.md).
  auto counters = counters_;
  counters.resize(next->compiled().round_robin_counters, 0);
  if (!changed.empty()) {
    call_host("store.save", "", [&] { store_->save(changed); });
  }
  program_ = std::move(next);
  workflow_stats_ = std::move(carried);
  counters_ = std::move(counters);
  // The spare batch statistics have the old program's workflow steps.
  spare_counts_.clear();
  spare_workflow_counts_.clear();
}

void engine::upsert_contact(contact c) {
  upsert_contacts(std::span<const contact>{&c, 1});
}

void engine::upsert_contacts(std::span<const contact> contacts) {
  std::vector<contact_state> states;
  states.reserve(contacts.size());
  detail::string_map<std::size_t> seen;
  for (const auto& c : contacts) {
    if (c.id.empty()) {
      throw std::invalid_argument("nudge::engine::upsert_contacts: a contact id is empty");
    }
    if (auto it = seen.find(c.id); it != seen.end()) {
      states[it->second].contact = c;  // the later profile wins, as in a sequence of upserts
      continue;
    }
    auto loaded = call_host("store.load", c.id, [&] { return store_->load(c.id); });
    contact_state s = loaded ? std::move(*loaded) : program_->new_state({});
    s.contact = c;
    seen.emplace(c.id, states.size());
    states.push_back(std::move(s));
  }
  call_host("store.save", "", [&] { store_->save(states); });
}

std::vector<due_action> engine::upsert_contact(contact c, time_point at) {
  return upsert_at(std::span<contact>{&c, 1}, at);
}

std::vector<due_action> engine::upsert_contacts(std::span<const contact> contacts, time_point at) {
  return upsert_at(contacts, at);
}

std::vector<due_action> engine::upsert_contacts(std::vector<contact>&& contacts, time_point at) {
  return upsert_at(std::span<contact>{contacts}, at);
}

template <class Contact>
std::vector<due_action> engine::upsert_at(std::span<Contact> contacts, time_point at) {
  const nudge::program& p = *program_;
  // One evaluation per contact, with its last profile in the span (the later profile wins, as
  // in the overload without an instant); contacts in order of first appearance.
  std::vector<std::string_view> ids;
  std::vector<std::size_t> profile;  // per contact: its index in `contacts`
  detail::string_map<std::size_t> seen;
  for (std::size_t i = 0; i < contacts.size(); ++i) {
    const std::string& id = contacts[i].id;
    if (id.empty()) {
      throw input_error(id, i, "the contact id is empty");
    }
    auto [it, fresh] = seen.emplace(id, ids.size());
    if (fresh) {
      ids.push_back(id);
      profile.push_back(i);
    } else {
      profile[it->second] = i;
    }
  }

  // One batch, as process(): evaluated into copies (no state is lent) kept by the batch, then
  // delivered and saved; a failure before that changed nothing.
  detail::batch b{*this};
  b.reserve(ids.size());
  std::vector<std::string> moved_ids;  // the ids, when the profiles (and their ids) move
  if constexpr (!std::is_const_v<Contact>) {
    moved_ids.assign(ids.begin(), ids.end());
    for (std::size_t g = 0; g < ids.size(); ++g) {
      ids[g] = moved_ids[g];
    }
  }
  for (std::size_t g = 0; g < ids.size(); ++g) {
    const std::string_view id = ids[g];
    auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
    contact_state& state =
        b.keep(loaded ? std::move(*loaded) : p.new_state(contact{.id = std::string{id}}));
    try {
      b.replace_profile(state, std::move(contacts[profile[g]]), at);
    } catch (const input_error& e) {
      // Name the profile's position in the caller's span.
      throw input_error(e.contact(), profile[g], e.reason());
    }
    b.end_contact(static_cast<std::uint32_t>(g));
  }
  return b.commit(ids);
}

std::vector<std::string> engine::segment_members(std::string_view name) {
  if (!program_->find_segment(name)) {
    throw std::invalid_argument(
        fmt::format("nudge::engine::segment_members: no segment \"{}\" in the program", name));
  }
  return call_host("store.segment_members", "", [&] { return store_->segment_members(name); });
}

std::size_t engine::segment_size(std::string_view name) {
  if (!program_->find_segment(name)) {
    throw std::invalid_argument(
        fmt::format("nudge::engine::segment_size: no segment \"{}\" in the program", name));
  }
  return call_host("store.segment_size", "", [&] { return store_->segment_size(name); });
}

std::optional<contact> engine::find_contact(std::string_view id) {
  auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
  if (!loaded) {
    return std::nullopt;
  }
  return std::move(loaded->contact);
}

}  // namespace nudge
