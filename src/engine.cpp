// The engine: batches, grouping by contact, host callbacks, atomicity, statistics.
#include <algorithm>
#include <exception>
#include <utility>

#include <fmt/format.h>

#include <nudge/detail/evaluate_into.hpp>
#include <nudge/engine.hpp>

namespace nudge {
namespace {

std::string what_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// Runs a host callback; anything it throws becomes a callback_error naming the callback and
// contact, with the original nested.
template <class F>
decltype(auto) call_host(const char* callback, std::string_view contact, F&& f) {
  try {
    return f();
  } catch (...) {
    auto original = std::current_exception();
    std::throw_with_nested(callback_error(callback, std::string{contact}, what_of(original)));
  }
}

void count(rule_stats& s, time_point at) {
  if (!s.first || at < *s.first) {
    s.first = at;
  }
  if (!s.last || at > *s.last) {
    s.last = at;
  }
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
}

std::vector<due_action> engine::process(std::span<const event> events, time_point now) {
  const nudge::program& p = *program_;
  // Group event positions by contact, keeping each contact's order and the order in which
  // contacts first appear (a counting sort: one pass to count, one to place).
  detail::string_map<std::uint32_t> group_of;
  std::vector<std::string_view> contacts;
  std::vector<std::uint32_t> group(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& id = events[i].contact;
    if (id.empty()) {
      throw input_error(id, i, "the contact id is empty");
    }
    auto it = group_of.find(std::string_view{id});
    if (it == group_of.end()) {
      it = group_of.emplace(id, static_cast<std::uint32_t>(contacts.size())).first;
      contacts.push_back(id);
    }
    group[i] = it->second;
  }
  const std::size_t with_events = contacts.size();
  std::vector<std::string> due_ids = call_host("store.due", "", [&] { return store_->due(now); });
  for (const auto& id : due_ids) {
    if (group_of.emplace(id, static_cast<std::uint32_t>(contacts.size())).second) {
      contacts.push_back(id);
    }
  }
  std::vector<std::uint32_t> start(contacts.size() + 1, 0);
  for (auto g : group) {
    ++start[g + 1];
  }
  for (std::size_t g = 0; g < contacts.size(); ++g) {
    start[g + 1] += start[g];
  }
  std::vector<const event*> ordered(events.size());
  std::vector<std::uint32_t> original(events.size());
  {
    std::vector<std::uint32_t> fill(start.begin(), start.end() - 1);
    for (std::size_t i = 0; i < events.size(); ++i) {
      const auto at = fill[group[i]]++;
      ordered[at] = &events[i];
      original[at] = static_cast<std::uint32_t>(i);
    }
  }

  // Evaluate every contact into new states; nothing is stored or delivered yet.
  round_robin_counters counters = counters_;
  std::vector<contact_state> states;
  states.reserve(contacts.size());
  std::vector<due_action> actions;
  std::vector<rule_outcome> outcomes;
  for (std::size_t g = 0; g < contacts.size(); ++g) {
    const std::string_view id = contacts[g];
    std::optional<contact_state> loaded =
        call_host("store.load", id, [&] { return store_->load(id); });
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
    std::span<const event* const> mine{ordered.data() + start[g], start[g + 1] - start[g]};
    try {
      detail::evaluate_into(p, *loaded, mine, now, &counters, actions, outcomes);
    } catch (const input_error& e) {
      // Report the position in the caller's batch, not in this contact's slice.
      throw input_error(e.contact(), original[start[g] + e.event_index()], e.reason());
    }
    states.push_back(std::move(*loaded));
  }

  // Each contact's actions are already in time order; a stable sort by (due_at, contact) keeps
  // each contact's emission order within an instant. Sorting positions and moving each action
  // once is far cheaper than moving the actions through the sort.
  {
    std::vector<std::uint32_t> by_time(actions.size());
    for (std::uint32_t i = 0; i < by_time.size(); ++i) {
      by_time[i] = i;
    }
    std::stable_sort(by_time.begin(), by_time.end(), [&](std::uint32_t x, std::uint32_t y) {
      const due_action& a = actions[x];
      const due_action& b = actions[y];
      return a.due_at < b.due_at || (a.due_at == b.due_at && a.contact < b.contact);
    });
    std::vector<due_action> sorted;
    sorted.reserve(actions.size());
    for (auto i : by_time) {
      sorted.push_back(std::move(actions[i]));
    }
    actions = std::move(sorted);
  }
  if (sink_ != nullptr && !actions.empty()) {
    call_host("sink.deliver", "", [&] { sink_->deliver(actions); });
  }
  try {
    store_->save(states);
  } catch (...) {
    auto original_error = std::current_exception();
    std::throw_with_nested(callback_error(
        "store.save", "",
        fmt::format("{} (the batch's {} actions were delivered; no state was saved: process "
                    "the batch again and drop duplicates by idempotency key)",
                    what_of(original_error), actions.size())));
  }

  // Committed: fold in statistics and counters (cannot throw).
  counters_ = std::move(counters);
  for (const auto& o : outcomes) {
    rule_stats& s = stats_[o.rule];
    switch (o.kind) {
      case rule_outcome_kind::triggered:
        ++s.triggered;
        break;
      case rule_outcome_kind::passed:
        ++s.passed;
        break;
      case rule_outcome_kind::failed:
        ++s.failed;
        break;
      case rule_outcome_kind::suppressed:
        ++s.suppressed;
        break;
    }
    count(s, o.at);
  }
  for (const auto& a : actions) {
    rule_stats& s = stats_[a.rule_index];
    ++s.emitted;
    count(s, a.due_at);
  }
  return actions;
}

void engine::restore(std::vector<rule_stats> stats, round_robin_counters counters) {
  if (stats.size() != stats_.size()) {
    throw std::invalid_argument(fmt::format(
        "nudge::engine::restore: {} rule statistics for a program of {} rules", stats.size(),
        stats_.size()));
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

std::optional<contact> engine::find_contact(std::string_view id) {
  auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
  if (!loaded) {
    return std::nullopt;
  }
  return std::move(loaded->contact);
}

}  // namespace nudge
