// nudge/program.hpp: a compiled, validated, immutable rule program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include <nudge/contact_state.hpp>
#include <nudge/detail/compiled.hpp>
#include <nudge/error.hpp>
#include <nudge/rule.hpp>
#include <nudge/time.hpp>
#include <nudge/zones.hpp>

namespace nudge {

/// Limits that keep a hostile rule set from exhausting memory or stack. Each one exceeded is a
/// rule_error naming the limit, e.g. "rules.json:1:12: /rules/0/id: a string of 70000 bytes;
/// at most 65536 are allowed (max_string_bytes)". docs/limits.md lists every limit.
struct program_limits {
  std::size_t max_rules = 100'000;
  /// Deepest nesting of all/any/not. A rule file's JSON nesting is bounded by
  /// 2 x max_condition_depth + 16 while it is parsed, so a file nested 100,000 deep is refused
  /// before it is built in memory.
  std::size_t max_condition_depth = 64;
  std::size_t max_cascade_depth = 16;  ///< internal actions triggering rules triggering ...
  /// Largest count bound of a windowed `happened` leaf and largest cap: the engine keeps that
  /// many event or run times per contact, so an absurd bound would be an absurd memory cost.
  /// Also the most property values a sum / average window keeps per contact (the newest).
  std::int64_t max_kept_count = 1000;
  duration max_delay = days(36'500);
  /// Most timers one contact may have pending. Far above what sane rules need (one per delayed
  /// rule or action in flight), it stops rules that re-trigger themselves through a delay from
  /// doubling their timers until memory runs out: the batch fails with a rule_cycle_error
  /// naming the rules and changes nothing.
  std::size_t max_pending_timers = 10'000;
  /// Most events internal actions may raise in one cascade (everything one external event or
  /// one timer sets off, for one contact). The depth limit alone does not bound a cascade's
  /// width: two rules that each answer an event by raising it again double the queue at every
  /// level (2^16 events before the depth limit; three such rules, 3^16), so one event could
  /// cost minutes. Past the limit the batch fails with a rule_cycle_error naming the rules.
  std::size_t max_cascade_events = 10'000;
  /// Largest rule file in bytes (load_rules, load_rules_file; checked before reading or
  /// parsing, since the parsed document takes a few times the text's size).
  std::size_t max_text_bytes = std::size_t{64} << 20;
  /// Longest string value or field name in a rule file, in bytes.
  std::size_t max_string_bytes = 65'536;
  std::size_t max_workflow_steps = 1000;  ///< steps per workflow
};

/// The compiled form of a rule_set: rules indexed by the event type and key that trigger them,
/// conditions flattened, and the per-contact history aggregates derived from what conditions
/// read (nothing a rule cannot read is kept).
///
/// Example:
///
///     nudge::rule_set rules;
///     rules.rules.push_back(nudge::rule_builder("hello").on(nudge::on("signup"))
///                                 .then(nudge::send_email("welcome")));
///     auto program = nudge::program::compile(std::move(rules));
///
/// Thread-safety: immutable after compile; share it freely (engines hold a shared_ptr).
class program {
 public:
  /// Validates and compiles. Every problem is reported at once, each with the JSON pointer of
  /// the offending part (e.g. "/rules/3/actions/0/arg").
  ///
  /// `zones` supplies the named time zones (nudge/zones.hpp): when the rules read local time
  /// and their delivery settings keep `use_system_zones`, compile asks it once for its zone
  /// database and the program keeps that (evaluation never reads a file). Pass
  /// nudge::system_zones() (nudge/io/zones.hpp) for the system's tz database, as load_rules
  /// does. Without a provider only the rule set's `time_zones` and "UTC" resolve: a
  /// default_time_zone naming another zone is a rule_error (code bad_time_zone) saying so.
  /// @throws nudge::rule_error listing all problems; nothing is compiled.
  /// @throws what the provider's zones() throws (e.g. an unreadable system database).
  static std::shared_ptr<const program> compile(rule_set rules, program_limits limits = {},
                                                std::shared_ptr<const zone_provider> zones = {});

  const rule_set& rules() const noexcept { return rules_; }
  std::size_t rule_count() const noexcept { return rules_.rules.size(); }
  /// Index of the rule with this id, or nullopt.
  std::optional<std::size_t> find_rule(std::string_view id) const noexcept;
  /// Built-in types, types declared in the rule set, and types any rule mentions.
  bool knows_event_type(std::string_view type) const noexcept;
  /// Index of the workflow with this id, or nullopt.
  std::optional<std::size_t> find_workflow(std::string_view id) const noexcept;
  std::size_t workflow_count() const noexcept { return rules_.workflows.size(); }
  /// The longest a rule can keep a timer pending (delay plus the longest action delay), or a
  /// workflow run walking every wait and timeout once (yearly date entries are not counted).
  duration longest_delay() const noexcept { return longest_delay_; }
  const program_limits& limits() const noexcept { return limits_; }
  /// Number of history aggregates kept per contact.
  std::size_t history_slot_count() const noexcept { return compiled_.slots.size(); }
  /// Entries kept per contact timeline (rule_set::timeline_size); 0: recording is off.
  std::size_t timeline_size() const noexcept { return rules_.timeline_size; }
  /// Number of sum / average property windows kept per contact.
  std::size_t measure_slot_count() const noexcept { return compiled_.measures.size(); }
  /// Whether some delivery policy or workflow reads local time (quiet hours, send hours,
  /// weekdays, a time-of-day wait, yearly dates): only then is a contact's time_zone resolved.
  bool reads_time_zones() const noexcept;
  /// Whether a contact's time_zone `name` resolves: in the rule set's `time_zones`, else in the
  /// zone provider's database (when `use_system_zones`). True for every name when
  /// reads_time_zones() is false (nothing reads it). Readers of contacts files use it to refuse a
  /// misspelled zone instead of silently using default_time_zone.
  bool knows_time_zone(std::string_view name) const;
  /// Index of the segment with this name, or nullopt.
  std::optional<std::size_t> find_segment(std::string_view name) const noexcept;
  /// A fresh state for a contact this program has not seen.
  contact_state new_state(contact c) const;

  const detail::compiled_program& compiled() const noexcept { return compiled_; }

 private:
  program() = default;
  rule_set rules_;
  program_limits limits_;
  detail::compiled_program compiled_;
  duration longest_delay_{0};
};

/// A stable 64-bit hash (FNV-1a) of a canonical serialization of the program's rule set: rule
/// ids, triggers, delays, conditions, actions, policies and caps in order, owner groups and
/// declared event types; and, when the program reads local time through a zone provider, the
/// digest of the provider's zone database (zone_database::digest), since the same rules give
/// other actions under other zone data. Equal rule sets compiled with equal zone data give
/// equal fingerprints on every platform and build; changing any rule, or a tzdata update that
/// changes any zone's offsets, changes it (up to hash collisions), so a snapshot or SQLite
/// store saved under one tzdata is refused under another rather than resumed with shifted
/// local times.
std::uint64_t program_fingerprint(const program& p);

}  // namespace nudge
