// The engine: batches, grouping by contact, host callbacks, atomicity, statistics.
#include <algorithm>
#include <deque>
#include <exception>
#include <span>
#include <stdexcept>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/detail/evaluate_into.hpp>
#include <nudge/engine.hpp>
#include <nudge/identity.hpp>
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

std::string too_many_events(std::size_t limit) {
  return fmt::format(
      "more than {} events for one contact in one batch (engine_options::max_events_per_contact); "
      "split the batch",
      limit);
}

// The first event of contact `g` past the limit, as an input_error.
[[noreturn, gnu::cold, gnu::noinline]] void throw_too_many_events(
    std::span<const event> events, const std::vector<std::uint32_t>& group, std::size_t g,
    std::size_t limit) {
  std::size_t seen = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (group[i] == g && ++seen > limit) {
      throw input_error(events[i].contact, i, too_many_events(limit));
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
  into.delivery += d.delivery;
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
    s.delivery += x.delivery;
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
  if (!in_input_range(now)) {
    // Timers fire up to `now` and set new ones from there: past the input range they could
    // reach instants no snapshot or store can read back.
    throw input_error({}, 0,
                      fmt::format("now ({}) is outside the supported range ({})", to_epoch(now),
                                  input_range_text));
  }
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
    if (events[i].type == event_types::identify) [[unlikely]] {
      return process_linked(events, now, {});
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
  // Lend the states of the contacts with events before evaluating any: an alias record among
  // them (an id merged into another contact) sends the batch down the identity path, which
  // must start from untouched states.
  std::vector<contact_state*> lent(with_events, nullptr);
  try {
    bool has_alias = false;
    for (std::size_t g = 0; g < with_events; ++g) {
      const std::string_view id = contacts[g];
      lent[g] = call_host("store.lend", id, [&] { return store_->lend(id); });
      if (lent[g] != nullptr) {
        lent_any = true;
        has_alias = has_alias || !lent[g]->merged_into.empty();
      }
    }
    if (has_alias) [[unlikely]] {
      detail::string_map<contact_state*> by_id;
      for (std::size_t g = 0; g < with_events; ++g) {
        if (lent[g] != nullptr) {
          by_id.emplace(contacts[g], lent[g]);
        }
      }
      lent_any = false;  // process_linked owns them now (and abandons them on failure)
      return process_linked(events, now, std::move(by_id));
    }
  } catch (...) {
    if (lent_any) {
      store_->abandon();
    }
    throw;
  }
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
      contact_state* target =
          g < with_events ? lent[g] : call_host("store.lend", id, [&] { return store_->lend(id); });
      std::optional<contact_state> loaded;
      if (target != nullptr) {
        lent_any = true;
        if (!target->merged_into.empty()) {
          continue;  // reported due (an alias record has no timers of its own)
        }
      } else {
        loaded = call_host("store.load", id, [&] { return store_->load(id); });
        if (loaded && !loaded->merged_into.empty()) [[unlikely]] {
          if (g >= with_events) {
            continue;  // reported due (an alias record has no timers of its own)
          }
          if (lent_any) {
            throw std::logic_error(fmt::format(
                "nudge::engine: the store lent some of the batch's states but not the alias "
                "record \"{}\"; a store that lends must lend every state it holds",
                id));
          }
          // Its events belong to the contact it merged into. Nothing was lent: the copies
          // evaluated so far are simply dropped.
          return process_linked(events, now, {});
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
    deliver_and_save(actions, states);
  } catch (...) {
    if (lent_any) {
      store_->abandon();
    }
    throw;
  }
  fold_in(actions, counters, counts, workflow_counts);
  return actions;
}

void engine::deliver_and_save(const std::vector<due_action>& actions,
                              std::vector<contact_state>& states) {
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
}

void engine::fold_in(const std::vector<due_action>& actions, round_robin_counters& counters,
                     const std::vector<rule_stats>& counts,
                     const std::vector<nudge::workflow_stats>& workflow_counts) noexcept {
  // Committed: fold in statistics and counters (cannot throw).
  counters_ = std::move(counters);
  for (std::size_t r = 0; r < counts.size(); ++r) {
    const rule_stats& c = counts[r];
    rule_stats& s = stats_[r];
    s.triggered += c.triggered;
    s.passed += c.passed;
    s.failed += c.failed;
    s.suppressed += c.suppressed;
    s.no_consent += c.no_consent;
    s.capped += c.capped;
    s.off_hours += c.off_hours;
    s.deferred_cap += c.deferred_cap;
    s.deferred_hours += c.deferred_hours;
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
}

std::vector<due_action> engine::process_linked(std::span<const event> events, time_point now,
                                               detail::string_map<contact_state*> lent) {
  bool lent_any = !lent.empty();
  try {
    return process_linked_impl(events, now, lent, lent_any);
  } catch (...) {
    if (lent_any) {
      store_->abandon();  // the store puts back what was evaluated in place
    }
    throw;
  }
}

std::vector<due_action> engine::process_linked_impl(std::span<const event> events, time_point now,
                                                    const detail::string_map<contact_state*>& lent,
                                                    bool& lent_any) {
  const nudge::program& p = *program_;
  constexpr std::uint32_t no_index = 0xffffffffU;
  // Validate what the per-contact evaluation cannot see once events are re-addressed: each id's
  // events in time order (the global sort below would hide it), identify keys, `now`.
  {
    detail::string_map<time_point> previous;
    for (std::size_t i = 0; i < events.size(); ++i) {
      const event& e = events[i];
      if (e.contact.empty()) {
        throw input_error(e.contact, i, "the contact id is empty");
      }
      if (e.type == event_types::identify) {
        if (e.key.empty()) {
          throw input_error(e.contact, i,
                            "an identify event needs the known contact's id as its key");
        }
        if (e.key == e.contact) {
          throw input_error(e.contact, i,
                            "an identify event's key names its own contact; the key is the id "
                            "of the known contact the event's contact is");
        }
      }
      if (e.at > now) {
        throw input_error(
            e.contact, i,
            fmt::format("time {} is after now ({})", format_time(e.at), format_time(now)));
      }
      auto [it, fresh] = previous.emplace(e.contact, e.at);
      if (!fresh) {
        if (e.at < it->second) {
          throw input_error(e.contact, i,
                            fmt::format("out of order: {} ({}) is before {} ({}), the id's "
                                        "previous event in the batch",
                                        format_time(e.at), to_epoch(e.at), format_time(it->second),
                                        to_epoch(it->second)));
        }
        it->second = e.at;
      }
    }
  }
  // Every contact runs in one global (time, batch position) order, so a merge at T sees both
  // contacts exactly as they were at T whichever order the host listed them in.
  std::vector<std::uint32_t> order(events.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](std::uint32_t a, std::uint32_t b) { return events[a].at < events[b].at; });

  // Each touched contact's state: lent by the store (evaluated in place) or an owned copy.
  std::vector<contact_state*> slots;
  std::deque<contact_state> owned;  // a deque: the slots' pointers stay valid as it grows
  detail::string_map<std::size_t> slot_of;
  std::vector<std::vector<std::pair<const event*, std::uint32_t>>> pending;
  std::vector<std::size_t> routed;  // events per contact, for max_events_per_contact
  std::deque<event> rewritten;      // events re-addressed to the contact an id merged into
  auto get = [&](std::string_view id, std::uint32_t index,
                 std::string_view unknown) -> std::size_t {
    if (auto it = slot_of.find(id); it != slot_of.end()) {
      return it->second;
    }
    contact_state* target = nullptr;
    if (auto it = lent.find(id); it != lent.end()) {
      target = it->second;  // lent by process() before it came here
    } else {
      target = call_host("store.lend", id, [&] { return store_->lend(id); });
      lent_any = lent_any || target != nullptr;
    }
    if (target == nullptr) {
      auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
      if (!loaded) {
        if (!options_.create_unknown_contacts && index != no_index) {
          throw input_error(events[index].contact, index, std::string{unknown});
        }
        contact fresh;
        fresh.id = std::string{id};
        loaded = p.new_state(std::move(fresh));
      }
      owned.push_back(std::move(*loaded));
      target = &owned.back();
    }
    slot_of.emplace(id, slots.size());
    slots.push_back(target);
    pending.emplace_back();
    routed.push_back(0);
    return slots.size() - 1;
  };
  // The slot of the contact `id` stands for: itself, or the end of its alias chain.
  auto resolve = [&](std::size_t s, std::uint32_t index) -> std::size_t {
    for (int hops = 0; !slots[s]->merged_into.empty(); ++hops) {
      if (hops == 1000) {
        throw input_error(events[index].contact, index,
                          "alias chain longer than 1000 contacts (a cycle in the store?)");
      }
      const std::string next = slots[s]->merged_into;
      s = get(next, index, "unknown contact");
    }
    return s;
  };

  round_robin_counters counters = counters_;
  std::vector<due_action> actions;
  std::vector<rule_stats> counts(stats_.size());
  std::vector<nudge::workflow_stats> workflow_counts;
  if (!workflow_stats_.empty()) {
    workflow_counts = empty_workflow_stats(p);
  }
  const detail::outcome_recorder outcomes{nullptr, &counts, nullptr, &workflow_counts};
  auto flush = [&](std::size_t s, time_point until, bool timers_at_until) {
    if (!slots[s]->merged_into.empty()) {
      return;
    }
    auto& list = pending[s];
    std::vector<const event*> mine;
    mine.reserve(list.size());
    for (const auto& entry : list) {
      mine.push_back(entry.first);
    }
    try {
      detail::evaluate_into(p, *slots[s], mine, until, &counters, actions, outcomes,
                            timers_at_until);
    } catch (const input_error& e) {
      // Report the position in the caller's batch, not in this contact's slice.
      // Name the id the host sent it under (a merged id's event is evaluated on the target).
      if (e.event_index() < list.size()) {
        const std::uint32_t at = list[e.event_index()].second;
        throw input_error(events[at].contact, at, e.reason());
      }
      throw;
    }
    list.clear();
  };
  auto route = [&](std::size_t s, const event& e, std::uint32_t index) {
    if (const std::size_t limit = options_.max_events_per_contact;
        limit != 0 && ++routed[s] > limit) {
      throw input_error(e.contact, index, too_many_events(limit));
    }
    if (slots[s]->contact.id == e.contact) {
      pending[s].emplace_back(&e, index);
      return;
    }
    rewritten.push_back(e);
    rewritten.back().contact = slots[s]->contact.id;
    pending[s].emplace_back(&rewritten.back(), index);
  };

  for (std::uint32_t index : order) {
    const event& e = events[index];
    const std::size_t own = get(e.contact, index, "unknown contact");
    const std::size_t a = resolve(own, index);
    if (e.type != event_types::identify) {
      route(a, e, index);
      continue;
    }
    const std::size_t k = resolve(
        get(e.key, index, fmt::format("identify: unknown contact \"{}\" (the key)", e.key)), index);
    if (a != k && own != a) {
      throw input_error(
          e.contact, index,
          fmt::format("identify: \"{}\" was already identified as \"{}\"; identifying it as "
                      "\"{}\" would merge two known contacts (identify \"{}\" itself to merge "
                      "them)",
                      e.contact, slots[a]->contact.id, e.key, slots[a]->contact.id));
    }
    event linked = e;
    // On the merged contact the key names the other id, the one it now also answers to.
    linked.key = slots[k]->contact.id == e.contact ? e.key : e.contact;
    if (a != k) {
      flush(a, e.at, false);
      flush(k, e.at, false);
      std::vector<workflow_outcome> dropped;
      std::string merged_id = slots[a]->contact.id;
      *slots[k] = merge_states(p, std::move(*slots[k]), std::move(*slots[a]), e.at, &dropped);
      for (const auto& o : dropped) {
        outcomes.note(o);
      }
      contact alias;
      alias.id = std::move(merged_id);
      *slots[a] = p.new_state(std::move(alias));
      slots[a]->merged_into = slots[k]->contact.id;
      // Both timelines say so: `nudge explain` of the visitor id names where it went.
      const timeline_entry merge{
          .at = e.at, .until = e.at, .source = timeline_none, .what = timeline_what::merged};
      slots[k]->timeline.record(merge, p.timeline_size());
      slots[a]->timeline.record(merge, p.timeline_size());
      routed[k] += routed[a];
    }
    linked.contact = slots[k]->contact.id;
    rewritten.push_back(std::move(linked));  // a deque: earlier elements stay where they are
    route(k, rewritten.back(), index);
  }
  std::vector<std::string> due_ids = call_host("store.due", "", [&] { return store_->due(now); });
  for (const auto& id : due_ids) {
    get(id, no_index, "");
  }
  for (std::size_t s = 0; s < slots.size(); ++s) {
    flush(s, now, true);
  }
  std::stable_sort(actions.begin(), actions.end(), [](const due_action& x, const due_action& y) {
    return x.due_at != y.due_at ? x.due_at < y.due_at : x.contact < y.contact;
  });
  std::vector<contact_state> states;  // the copies; the store saves lent states itself
  states.reserve(owned.size());
  for (auto& st : owned) {
    states.push_back(std::move(st));
  }
  deliver_and_save(actions, states);
  fold_in(actions, counters, counts, workflow_counts);
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

std::vector<due_action> engine::upsert_contact(contact c, time_point at) {
  return upsert_contacts(std::span<const contact>{&c, 1}, at);
}

std::vector<due_action> engine::upsert_contacts(std::span<const contact> contacts, time_point at) {
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

  // As process(): evaluate into copies, then deliver and save; a failure before that changed
  // nothing (no state is lent, so there is nothing to abandon).
  round_robin_counters counters = counters_;
  std::vector<contact_state> states;
  states.reserve(ids.size());
  std::vector<due_action> actions;
  std::vector<rule_stats> counts(stats_.size());
  std::vector<nudge::workflow_stats> workflow_counts;
  if (!workflow_stats_.empty()) {
    workflow_counts = empty_workflow_stats(p);
  }
  const detail::outcome_recorder outcomes{nullptr, &counts, nullptr, &workflow_counts};
  std::vector<std::pair<std::uint32_t, std::size_t>> emitted;
  for (std::size_t g = 0; g < ids.size(); ++g) {
    const std::string_view id = ids[g];
    auto loaded = call_host("store.load", id, [&] { return store_->load(id); });
    if (!loaded) {
      contact fresh;
      fresh.id = std::string{id};
      loaded = p.new_state(std::move(fresh));
    }
    try {
      detail::replace_profile_into(p, *loaded, contacts[profile[g]], at, &counters, actions,
                                   outcomes);
    } catch (const input_error& e) {
      // Name the profile's position in the caller's span.
      throw input_error(e.contact(), profile[g], e.reason());
    }
    states.push_back(std::move(*loaded));
    if (!actions.empty() && (emitted.empty() || emitted.back().second != actions.size())) {
      emitted.emplace_back(static_cast<std::uint32_t>(g), actions.size());
    }
  }
  sort_by_time_and_contact(actions, emitted, ids);
  deliver_and_save(actions, states);
  fold_in(actions, counters, counts, workflow_counts);
  return actions;
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
