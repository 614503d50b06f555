// The engine: batches, grouping by contact, host callbacks, atomicity, statistics.
#include <algorithm>
#include <exception>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/detail/evaluate_into.hpp>
#include <nudge/engine.hpp>
#include <nudge/lifecycle.hpp>

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

// Sorts a batch's actions by (due_at, contact id), keeping each contact's emission order within
// an instant. Keys are integers: the contact (as the index of its run of actions) is compared
// by id only when two actions of different contacts fall on the same second, which is rare.
void sort_by_time_and_contact(std::vector<due_action>& actions,
                              const std::vector<std::pair<std::uint32_t, std::size_t>>& emitted,
                              const std::vector<std::string_view>& contacts) {
  if (emitted.size() <= 1) {
    return;  // one contact: already in emission (= time) order
  }
  struct sort_key {
    std::int64_t due;
    std::uint32_t run, position;
  };
  std::vector<sort_key> keys(actions.size());
  std::size_t begin = 0;
  for (std::size_t e = 0; e < emitted.size(); ++e) {
    for (std::size_t i = begin; i < emitted[e].second; ++i) {
      keys[i] = {to_epoch(actions[i].due_at), static_cast<std::uint32_t>(e),
                 static_cast<std::uint32_t>(i)};
    }
    begin = emitted[e].second;
  }
  std::sort(keys.begin(), keys.end(), [&](const sort_key& a, const sort_key& b) {
    if (a.due != b.due) {
      return a.due < b.due;
    }
    if (a.run != b.run) {
      return contacts[emitted[a.run].first] < contacts[emitted[b.run].first];
    }
    return a.position < b.position;
  });
  // Apply the permutation in place, cycle by cycle: no second copy of a large batch.
  std::vector<bool> placed(actions.size(), false);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (placed[i] || keys[i].position == i) {
      continue;
    }
    due_action held = std::move(actions[i]);
    std::size_t at = i;
    while (keys[at].position != i) {
      actions[at] = std::move(actions[keys[at].position]);
      placed[at] = true;
      at = keys[at].position;
    }
    actions[at] = std::move(held);
    placed[at] = true;
  }
}

// The first event of contact `g` past the limit, as an input_error.
[[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_events(
    std::span<const event> events, const std::vector<std::uint32_t>& group, std::size_t g,
    std::size_t limit) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (group[i] == g && ++seen > limit) {
      throw input_error(events[i].contact, i,
                        fmt::format("more than {} events for one contact in one batch "
                                    "(engine_options::max_events_per_contact); split the batch",
                                    limit));
    }
  }
  throw std::logic_error("throw_too_many_events: the contact is within the limit");
}

// Zeroed statistics naming every workflow and step of `p`.
std::vector<workflow_stats> empty_workflow_stats(const program& p) {
  std::vector<workflow_stats> out;
  for (const auto& w : p.rules().workflows) {
    workflow_stats s;
    s.workflow = w.id;
    for (const auto& st : w.steps) {
      s.steps.push_back({});
      s.steps.back().step = st.id;
    }
    out.push_back(std::move(s));
  }
  return out;
}

void add(workflow_stats& into, const workflow_stats& d) {
  into.entered += d.entered;
  into.completed += d.completed;
  into.exited += d.exited;
  into.ended += d.ended;
  into.sent += d.sent;
  into.opened += d.opened;
  into.clicked += d.clicked;
  into.active += d.active;
  for (const auto& t : {d.first, d.last}) {
    if (t) {
      detail::outcome_recorder::touch(into.first, into.last, *t);
    }
  }
  for (std::size_t j = 0; j < d.steps.size(); ++j) {
    auto& s = into.steps[j];
    const auto& x = d.steps[j];
    s.reached += x.reached;
    s.sent += x.sent;
    s.opened += x.opened;
    s.clicked += x.clicked;
    s.waiting += x.waiting;
    s.ended += x.ended;
    for (const auto& t : {x.first, x.last}) {
      if (t) {
        detail::outcome_recorder::touch(s.first, s.last, *t);
      }
    }
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
  workflow_stats_ = empty_workflow_stats(*program_);
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
  if (const std::size_t limit = options_.max_events_per_contact; limit != 0) {
    // Per contact, not per event: the check stays off the per-event path.
    for (std::size_t g = 0; g < with_events; ++g) {
      if (start[g + 1] - start[g] > limit) {
        throw_too_many_events(events, group, g, limit);
      }
    }
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

  // Evaluate every contact (lent states in place, the others into copies); nothing is
  // delivered or saved yet.
  round_robin_counters counters = counters_;
  std::vector<contact_state> states;
  states.reserve(contacts.size());
  std::vector<due_action> actions;
  std::vector<rule_stats> counts(stats_.size());
  std::vector<nudge::workflow_stats> workflow_counts;
  if (!workflow_stats_.empty()) {
    workflow_counts = empty_workflow_stats(p);
  }
  const detail::outcome_recorder outcomes{nullptr, &counts, nullptr, &workflow_counts};
  // (group, end of its actions) for every contact that emitted: actions are appended contact by
  // contact, so these ranges say whose each action is without comparing strings.
  std::vector<std::pair<std::uint32_t, std::size_t>> emitted;
  // States the store lent are evaluated where they lie; if anything below fails, the store
  // puts them back (store::abandon), so the batch still changes nothing.
  bool lent_any = false;
  try {
    for (std::size_t g = 0; g < contacts.size(); ++g) {
      // A contact's events lie scattered through the caller's batch: fetch the next contact's
      // while this one is evaluated (a measured win on batches larger than the cache).
      if (g + 1 < contacts.size()) {
        for (auto k = start[g + 1]; k < start[g + 2]; ++k) {
          __builtin_prefetch(ordered[k]);
        }
      }
      const std::string_view id = contacts[g];
      contact_state* target = call_host("store.lend", id, [&] { return store_->lend(id); });
      std::optional<contact_state> loaded;
      if (target != nullptr) {
        lent_any = true;
      } else {
        loaded = call_host("store.load", id, [&] { return store_->load(id); });
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
        detail::evaluate_into(p, *target, mine, now, &counters, actions, outcomes);
      } catch (const input_error& e) {
        // Report the position in the caller's batch, not in this contact's slice.
        throw input_error(e.contact(), original[start[g] + e.event_index()], e.reason());
      }
      if (loaded) {
        states.push_back(std::move(*loaded));
      }
      if (!actions.empty() && (emitted.empty() || emitted.back().second != actions.size())) {
        emitted.emplace_back(static_cast<std::uint32_t>(g), actions.size());
      }
    }
    sort_by_time_and_contact(actions, emitted, contacts);
    if (sink_ != nullptr && !actions.empty()) {
      call_host("sink.deliver", "", [&] { sink_->deliver(actions); });
    }
    if (sink_ == nullptr || actions.empty()) {
      // Nothing was handed to a sink: a failed save leaves the batch fully undone.
      call_host("store.save", "", [&] { store_->save(states); });
    } else {
      try {
        store_->save(states);
      } catch (...) {
        auto original_error = std::current_exception();
        std::throw_with_nested(callback_error(
            "store.save", "",
            fmt::format("{} (the batch's {} actions were delivered; no state was saved: "
                        "process the batch again and drop duplicates by idempotency key)",
                        what_of(original_error), actions.size())));
      }
    }
  } catch (...) {
    if (lent_any) {
      store_->abandon();
    }
    throw;
  }

  // Committed: fold in statistics and counters (cannot throw).
  counters_ = std::move(counters);
  for (std::size_t r = 0; r < counts.size(); ++r) {
    const rule_stats& c = counts[r];
    rule_stats& s = stats_[r];
    s.triggered += c.triggered;
    s.passed += c.passed;
    s.failed += c.failed;
    s.suppressed += c.suppressed;
    if (c.first) {
      count(s, *c.first);
    }
    if (c.last) {
      count(s, *c.last);
    }
  }
  for (std::size_t w = 0; w < workflow_counts.size(); ++w) {
    add(workflow_stats_[w], workflow_counts[w]);
  }
  for (const auto& a : actions) {
    if (a.from_workflow()) {
      continue;  // counted as `sent` by the workflow's outcomes
    }
    rule_stats& s = stats_[a.rule_index];
    ++s.emitted;
    count(s, a.due_at);
  }
  return actions;
}

void engine::restore(std::vector<rule_stats> stats, round_robin_counters counters,
                     std::vector<nudge::workflow_stats> workflows) {
  if (!workflows.empty()) {
    const auto expected = empty_workflow_stats(*program_);
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
  workflow_stats_ = workflows.empty() ? empty_workflow_stats(*program_) : std::move(workflows);
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
  auto carried = empty_workflow_stats(*next);
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
