// nudge/detail/compiled.hpp: the program's internal, flattened form. Not part of the API.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/condition.hpp>
#include <nudge/delivery.hpp>
#include <nudge/detail/string_map.hpp>
#include <nudge/zones.hpp>

namespace nudge {
struct workflow_step;
}  // namespace nudge

namespace nudge::detail {

inline constexpr std::uint32_t none = 0xffffffffU;

/// Rules and history slots an event of one (type, key) touches. Rules are in rule-set order.
struct match_lists {
  std::vector<std::uint32_t> rules;
  std::vector<std::uint32_t> slots;
  std::vector<std::uint32_t> measures;  ///< sum / average slots
  std::vector<std::uint32_t> scores;    ///< score rules
};

/// Per event type: lists for every key some rule or condition names exactly, the fallback for
/// any other key, and the prefix patterns that must be tested against an unlisted key.
struct type_index {
  string_map<match_lists> exact;
  match_lists other_keys;  ///< rules / slots with key_match::any
  std::vector<std::pair<std::string, std::uint32_t>> prefix_rules;
  std::vector<std::pair<std::string, std::uint32_t>> prefix_slots;
  std::vector<std::pair<std::string, std::uint32_t>> prefix_measures;
  std::vector<std::pair<std::string, std::uint32_t>> prefix_scores;
  bool has_prefixes() const noexcept {
    return !prefix_rules.empty() || !prefix_slots.empty() || !prefix_measures.empty() ||
           !prefix_scores.empty();
  }
};

/// A history aggregate the program keeps per contact.
struct slot_def {
  event_match events;
  std::uint32_t recent_needed = 0;  ///< how many latest event times windows need
};

/// A property window kept per contact for sum / average leaves.
struct measure_def {
  event_match events;
  std::string property;
  duration keep{0};  ///< the longest window reading it: older values are dropped
};

/// A segment: its condition's root node (none: always) and the node range [first, last) its
/// tree occupies (for the flip-time computation).
struct segment_def {
  std::uint32_t root = none;
  std::uint32_t first = 0, last = 0;
  /// Some leaf's inputs are not known to segment_inputs: re-evaluate at every applied event.
  bool every_event = false;
};

/// Which segments read what: the evaluator re-evaluates a segment only when something it reads
/// changed since it last evaluated it (or a window it reads lost an event with time). Each list
/// holds segment indices, ascending, without repeats.
struct segment_inputs {
  std::vector<std::vector<std::uint32_t>> by_slot;     ///< happened / occurred leaves
  std::vector<std::vector<std::uint32_t>> by_measure;  ///< sum / average leaves
  std::vector<std::vector<std::uint32_t>> by_segment;  ///< in_segment leaves naming segment i
  /// in_workflow / completed_workflow / exited_workflow leaves naming workflow i.
  std::vector<std::vector<std::uint32_t>> by_workflow;
  std::vector<std::uint32_t> by_location;  ///< near / moved leaves
  string_map<std::vector<std::uint32_t>> by_tag, by_group, by_detail;
  /// compare leaves on status, stage, owner, score, time_zone (indexed by nudge::field).
  std::array<std::vector<std::uint32_t>, 6> by_field;
};

/// A flattened condition node. Children of all/any/negate are children[first, first + count).
struct node {
  condition::kind kind = condition::kind::always;
  std::uint32_t first = 0, count = 0;
  const condition* source = nullptr;  ///< the leaf as written (operands, window, bound)
  /// happened, occurred: the history slot it reads; aggregate: the measure slot; in_segment:
  /// the segment's index; the workflow conditions: the workflow's index.
  std::uint32_t slot = none;
  /// in_workflow with a step: the step's statistics index (compiled_step::stat); else none.
  std::uint32_t step = none;
};

struct compiled_rule {
  std::uint32_t condition = none;                ///< root node; none: always true
  std::vector<std::uint32_t> action_conditions;  ///< per action: root node or none
  std::vector<std::uint32_t> owner_groups;       ///< per action: owner group index or none
  std::uint32_t memory_depth = 0;                ///< run times to remember; 0: no memory
};

/// A workflow step with its successors resolved to step indices (none: the run completes).
struct compiled_step {
  const workflow_step* def = nullptr;  ///< the step as written (in the program's rule set)
  std::uint32_t version = 1;           ///< the workflow version it belongs to
  /// Its index among the current version's steps (statistics, timeline), by id; none: a step
  /// only a kept older version has.
  std::uint32_t stat = none;
  std::uint32_t next = none, yes = none, no = none;
  std::uint32_t condition = none;   ///< branch: root node (none: always true)
  std::uint32_t event_type = none;  ///< wait_for / opened / clicked waits: the awaited type
  /// split: (cumulative percent bound, step) in order; a contact's bucket 0..99 picks the first
  /// arm whose bound exceeds it.
  std::vector<std::pair<std::uint32_t, std::uint32_t>> paths;
  std::uint32_t owner_group = none;       ///< act with assign_owner
  std::uint32_t round_robin = none;       ///< its round-robin counter
  std::uint32_t action_condition = none;  ///< the action's own `if`
};

struct compiled_workflow {
  bool runs = false;  ///< status active: entries and steps run
  std::uint32_t entry_condition = none, exit_condition = none;
  std::uint32_t entry_type = none;  ///< entry_kind::event: the entering event's type
  /// Exit events: (type, the match as written).
  std::vector<std::pair<std::uint32_t, const event_match*>> exits;
  /// The step table: the current version's steps first, then each kept older version's.
  std::vector<compiled_step> steps;
  struct version_range {
    std::uint32_t version = 1, first = 0, count = 0;
  };
  std::vector<version_range> versions;  ///< the current version first
  std::uint64_t id_hash = 0;            ///< fnv1a64 of the id (idempotency keys, splits)
};

using zone_map = string_map<zone_rules>;

/// The delivery policy as evaluation reads it.
struct compiled_delivery {
  /// Per rule: its effective policy (own, else the rule set's default), or nullptr: ungoverned.
  /// Points into the program's rule set, which never moves.
  std::vector<const delivery_policy*> rule_policy;
  /// Per workflow: the same for its send steps.
  std::vector<const delivery_policy*> workflow_policy;
  /// Per channel: how many send times the largest cap on it needs (0: none kept).
  std::array<std::uint32_t, channel_count> keep{};
  zone_map zones;  ///< the rule set's explicit POSIX rules
  /// The zone provider's database (program::compile asked it once), or null: no provider, or
  /// the rules do not use it (`use_system_zones` false, or nothing reads local time).
  std::shared_ptr<const zone_database> host_zones;
  /// Set when some policy or workflow reads local time (unset: every clock is UTC).
  std::optional<zone_rules> default_zone;
};

struct compiled_program {
  /// Every event type the program accepts (built-in, declared, used) -> index into by_type.
  string_map<std::uint32_t> types;
  std::vector<type_index> by_type;
  /// Types with built-in effects on the profile.
  std::uint32_t tag_added_type = none, tag_removed_type = none, stage_entered_type = none;
  std::uint32_t identify_type = none;
  std::vector<slot_def> slots;
  std::vector<measure_def> measures;
  std::vector<segment_def> segments;
  segment_inputs segment_reads;
  std::uint32_t max_kept = 1000;  ///< program_limits::max_kept_count
  std::vector<node> nodes;
  std::vector<std::uint32_t> children;
  std::vector<compiled_rule> rules;
  std::vector<std::uint64_t> rule_id_hashes;  ///< fnv1a64 of each rule id (idempotency keys)
  std::vector<std::vector<std::string>> owner_groups;
  std::uint32_t round_robin_counters = 0;  ///< one per assign_owner action with round robin
  std::vector<std::vector<std::uint32_t>> round_robin_index;  ///< [rule][action] -> counter
  std::vector<compiled_workflow> workflows;
  /// Per event type: the workflows it can enter (key matched at run time), in workflow order.
  std::vector<std::vector<std::uint32_t>> workflow_entries;
  std::vector<std::uint32_t> date_workflows;  ///< workflows with a yearly date entry
  std::uint32_t detail_set_type = none, email_open_type = none, email_click_type = none;
  compiled_delivery delivery;
};

}  // namespace nudge::detail
