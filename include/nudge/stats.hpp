// nudge/stats.hpp: per-rule statistics the engine keeps.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nudge/time.hpp>

namespace nudge {

/// Counts for one rule since the engine started (or since its snapshot).
struct rule_stats {
  std::string rule;                 ///< the rule's id
  std::uint64_t triggered = 0;      ///< trigger events matched
  std::uint64_t passed = 0;         ///< checks whose condition held and that ran
  std::uint64_t failed = 0;         ///< checks whose condition did not hold
  std::uint64_t suppressed = 0;     ///< held, but re-entry policy or cap refused
  std::uint64_t emitted = 0;        ///< due actions produced (external, or internal with notify)
  std::optional<time_point> first;  ///< first operation (trigger, check or emission)
  std::optional<time_point> last;   ///< last operation
  friend bool operator==(const rule_stats&, const rule_stats&) = default;
};

}  // namespace nudge
