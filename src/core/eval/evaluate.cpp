// The public entry points of the evaluation step (nudge::evaluate, detail::evaluate_into,
// detail::replace_profile_into): they check the batch, size the state's slots and run an
// evaluator (evaluator.hpp; its sections are the other files of this directory).
#include <cmath>
#include <string>
#include <vector>

#include <boost/container/small_vector.hpp>
#include <fmt/format.h>

#include <nudge/detail/evaluate_into.hpp>
#include <nudge/detail/state_conditions.hpp>
#include <nudge/evaluate.hpp>

#include "evaluator.hpp"

namespace nudge {

std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t seed) noexcept {
  std::uint64_t h = seed;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

namespace {

using eval::evaluator;
using eval::sinks;

// Out of line: called for the events that carry props, and throws almost never.
[[gnu::noinline]] void check_finite(const name_map<value>& props, const std::string& contact,
                                    std::size_t index) {
  for (const auto& [name, v] : props) {
    if (const double* d = std::get_if<double>(&v); d != nullptr && !std::isfinite(*d)) {
      throw input_error(contact, index, fmt::format("props/{} is not a finite number", name));
    }
  }
  std::string problem;
  if (!detail::location_of(props, &problem) && !problem.empty()) {
    throw input_error(contact, index, problem);
  }
}
// Sizes a state's per-program slots (a fresh state has none yet); refuses one kept for another
// program.
void prepare_slots(const program& p, contact_state& state) {
  if (state.history.size() != p.history_slot_count()) {
    if (!state.history.empty()) {
      throw std::invalid_argument(fmt::format(
          "contact \"{}\": state has {} history slots, the program keeps {} (a state from "
          "another program)",
          state.contact.id, state.history.size(), p.history_slot_count()));
    }
    state.history.resize(p.history_slot_count());
  }
  if (state.measures.size() != p.measure_slot_count()) {
    if (!state.measures.empty()) {
      throw std::invalid_argument(fmt::format(
          "contact \"{}\": state has {} measure slots, the program keeps {} (a state from "
          "another program)",
          state.contact.id, state.measures.size(), p.measure_slot_count()));
    }
    state.measures.resize(p.measure_slot_count());
  }
}

template <class EventRef>
void evaluate_impl(const program& p, contact_state& state, std::span<const EventRef> events,
                   time_point now, round_robin_counters* counters, std::vector<due_action>& actions,
                   const detail::outcome_recorder& outcomes, bool timers_at_now = true,
                   detail::profile_guard* guard = nullptr) {
  auto deref = [](const EventRef& e) -> const event& {
    if constexpr (std::is_pointer_v<EventRef>) {
      return *e;
    } else {
      return e;
    }
  };
  prepare_slots(p, state);
  if (!state.merged_into.empty() && !events.empty()) {
    throw input_error(state.contact.id, 0,
                      fmt::format("the contact was merged into \"{}\" (an identify event); send "
                                  "its events to that contact",
                                  state.merged_into));
  }
  // Validate everything before applying anything; resolve each event's type once.
  boost::container::small_vector<std::uint32_t, 64> types(events.size());
  time_point previous = state.clock;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const event& e = deref(events[i]);
    const auto& id = state.contact.id;
    if (e.contact != id) {
      throw input_error(e.contact, i, fmt::format("belongs to contact \"{}\"", id));
    }
    if (!in_input_range(e.ts)) {
      throw input_error(id, i,
                        fmt::format("time {} is outside the supported range ({})", to_epoch(e.ts),
                                    input_range_text));
    }
    if (e.ts < previous) {
      throw input_error(
          id, i,
          fmt::format("out of order: {} ({}) is before {} ({}), the contact's last applied "
                      "event or timer",
                      format_time(e.ts), to_epoch(e.ts), format_time(previous),
                      to_epoch(previous)));
    }
    if (e.ts > now) {
      throw input_error(
          id, i, fmt::format("time {} is after now ({})", format_time(e.ts), format_time(now)));
    }
    // NaN would compare unequal to itself in every condition, and infinity overflows sums.
    // Most events carry no props: the loop stays out of line.
    if (!e.props.empty()) {
      check_finite(e.props, id, i);
    }
    auto type = p.compiled().types.find(e.type);
    if (type == p.compiled().types.end()) {
      throw input_error(id, i, fmt::format("unknown event type \"{}\"", e.type));
    }
    types[i] = type->second;
    previous = e.ts;
  }
  evaluator ev{p, sinks{state, actions, outcomes, guard}, counters};
  ev.start(state.clock != min_time ? state.clock : (events.empty() ? now : deref(events[0]).ts));
  for (std::size_t i = 0; i < events.size(); ++i) {
    ev.apply_external(deref(events[i]), types[i]);
  }
  if (timers_at_now) {
    ev.finish(now);
  } else {
    ev.finish_before(now);
  }
}

}  // namespace

evaluation evaluate(const program& program, contact_state state, std::span<const event> events,
                    time_point now, round_robin_counters* counters) {
  evaluation out;
  evaluate_impl<event>(
      program, state, events, now, counters, out.actions,
      detail::outcome_recorder{&out.outcomes, nullptr, &out.workflow_outcomes, nullptr});
  out.state = std::move(state);
  return out;
}

evaluation evaluate(const program& program, contact_state state,
                    std::span<const event* const> events, time_point now,
                    round_robin_counters* counters) {
  evaluation out;
  evaluate_impl<const event*>(
      program, state, events, now, counters, out.actions,
      detail::outcome_recorder{&out.outcomes, nullptr, &out.workflow_outcomes, nullptr});
  out.state = std::move(state);
  return out;
}

namespace detail {
void evaluate_into(const program& program, contact_state& state,
                   std::span<const event* const> events, time_point now,
                   round_robin_counters* counters, std::vector<due_action>& actions,
                   const detail::outcome_recorder& outcomes, bool timers_at_now,
                   profile_guard* guard) {
  evaluate_impl<const event*>(program, state, events, now, counters, actions, outcomes,
                              timers_at_now, guard);
}
void replace_profile_into(const program& program, contact_state& state, contact profile,
                          time_point at, round_robin_counters* counters,
                          std::vector<due_action>& actions,
                          const detail::outcome_recorder& outcomes) {
  const std::string& id = state.contact.id;
  if (profile.id != id) {
    throw input_error(profile.id, 0, fmt::format("belongs to contact \"{}\"", id));
  }
  if (!state.merged_into.empty()) {
    throw input_error(id, 0,
                      fmt::format("the contact was merged into \"{}\" (an identify event); "
                                  "upsert that contact",
                                  state.merged_into));
  }
  if (!in_input_range(at)) {
    throw input_error(
        id, 0,
        fmt::format("time {} is outside the supported range ({})", to_epoch(at), input_range_text));
  }
  if (at < state.clock) {
    throw input_error(
        id, 0,
        fmt::format("out of order: the upsert at {} ({}) is before {} ({}), the contact's last "
                    "applied event or timer",
                    format_time(at), to_epoch(at), format_time(state.clock),
                    to_epoch(state.clock)));
  }
  prepare_slots(program, state);
  evaluator ev{program, sinks{state, actions, outcomes}, counters};
  ev.start(state.clock != min_time ? state.clock : at);
  ev.replace_profile(std::move(profile), at);
  ev.finish(at);
}
}  // namespace detail

}  // namespace nudge
