// The identity path of engine::process: a batch with identify events or events for merged
// ids, whose contacts run in one global time order with the merges in between (engine.hpp).
#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/engine.hpp>
#include <nudge/identity.hpp>

#include "batch.hpp"
#include "host_call.hpp"

namespace nudge {

using detail::call_host;

std::vector<due_action> engine::process_linked(std::span<const event> events, time_point now,
                                               const detail::string_map<contact_state*>& lent,
                                               detail::batch& b) {
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
      if (e.ts > now) {
        throw input_error(
            e.contact, i,
            fmt::format("time {} is after now ({})", format_time(e.ts), format_time(now)));
      }
      auto [it, fresh] = previous.emplace(e.contact, e.ts);
      if (!fresh) {
        if (e.ts < it->second) {
          throw input_error(e.contact, i,
                            fmt::format("out of order: {} ({}) is before {} ({}), the id's "
                                        "previous event in the batch",
                                        format_time(e.ts), to_epoch(e.ts), format_time(it->second),
                                        to_epoch(it->second)));
        }
        it->second = e.ts;
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
                   [&](std::uint32_t x, std::uint32_t y) { return events[x].ts < events[y].ts; });

  // Each touched contact's state: lent by the store (evaluated in place) or an owned copy.
  std::vector<contact_state*> slots;
  std::vector<bool> slot_lent;      // per slot: the store's own state, evaluated in place
  std::deque<contact_state> owned;  // a deque: the slots' pointers stay valid as it grows
  detail::string_map<std::size_t> slot_of;
  std::vector<std::string> slot_ids;  // the id of each slot, for the batch's order
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
      target = b.lend(id);
    }
    const bool in_place = target != nullptr;
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
    slot_ids.emplace_back(id);
    slots.push_back(target);
    slot_lent.push_back(in_place);
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
      b.evaluate(*slots[s], mine, until, timers_at_until, slot_lent[s]);
    } catch (const input_error& e) {
      // Report the position in the caller's batch, not in this contact's slice.
      // Name the id the host sent it under (a merged id's event is evaluated on the target).
      if (e.event_index() < list.size()) {
        const std::uint32_t at = list[e.event_index()].second;
        throw input_error(events[at].contact, at, e.reason());
      }
      throw;
    }
    b.end_contact(static_cast<std::uint32_t>(s));
    list.clear();
  };
  auto route = [&](std::size_t s, const event& e, std::uint32_t index) {
    if (const std::size_t limit = options_.max_events_per_contact;
        limit != 0 && ++routed[s] > limit) {
      throw input_error(e.contact, index, detail::too_many_events(limit));
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
      flush(a, e.ts, false);
      flush(k, e.ts, false);
      std::vector<workflow_outcome> dropped;
      std::string merged_id = slots[a]->contact.id;
      for (const std::size_t changed : {k, a}) {
        if (slot_lent[changed]) {
          b.changing_profile(*slots[changed]);  // both profiles are replaced below
        }
      }
      *slots[k] = merge_states(p, std::move(*slots[k]), std::move(*slots[a]), e.ts, &dropped);
      for (const auto& o : dropped) {
        b.note(o);
      }
      contact alias;
      alias.id = std::move(merged_id);
      *slots[a] = p.new_state(std::move(alias));
      slots[a]->merged_into = slots[k]->contact.id;
      // Both timelines say so: `nudge explain` of the visitor id names where it went.
      const timeline_entry merge{
          .ts = e.ts, .until = e.ts, .source = timeline_none, .what = timeline_what::merged};
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
  // Slot s's actions are those end_contact(s) marked: their contact is slot_ids[s].
  const std::vector<std::string_view> ids(slot_ids.begin(), slot_ids.end());
  b.reserve(owned.size());
  for (auto& st : owned) {
    b.keep(std::move(st));
  }
  return b.commit(ids);
}

}  // namespace nudge
