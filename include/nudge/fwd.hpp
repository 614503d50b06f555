// nudge/fwd.hpp: declarations only, for headers that name nudge types without using them.
#pragma once

namespace nudge {
struct contact;
struct event;
struct condition;
struct event_match;
struct action;
struct rule;
struct rule_set;
struct segment;
struct scoring;
class program;
struct contact_state;
struct due_action;
struct evaluation;
struct rule_stats;
class store;
class memory_store;
class sink;
class engine;
class rule_error;
class input_error;
class rule_cycle_error;
class callback_error;
}  // namespace nudge
