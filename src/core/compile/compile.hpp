// Internal to src/core/compile: the validator (validate.cpp, validate_workflows.cpp) and the
// resolution of the zones delivery policies read (time_zones.cpp, through the host's
// zone_provider: core reads no zone files).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/detail/compiled.hpp>
#include <nudge/error.hpp>
#include <nudge/program.hpp>
#include <nudge/rule.hpp>

namespace nudge::detail {

// Timeline entries are 32 bytes: 100,000 per contact is already 3.2 MB.
constexpr std::uint32_t max_timeline_size = 100'000;

// Collects every problem of a rule set (with JSON pointers) rather than stopping at the first.
struct validator {
  const program_limits& limits;
  std::vector<diagnostic> problems;
  const rule_set* set = nullptr;
  // While checking segment `current_segment`'s condition: only earlier segments are visible and
  // there is no trigger. npos while checking rules.
  std::size_t current_segment = static_cast<std::size_t>(-1);

  bool in_segment_definition() const { return current_segment != static_cast<std::size_t>(-1); }

  void check_months(std::int32_t n, duration fixed, const std::string& at, const char* code);
  void check_point(geo_point p, const std::string& at);
  void check_areas(const rule_set& rs);
  void check_workflow_condition(const condition& c, const std::string& at);
  void check_window(const condition& c, const std::string& at);
  void check_window(duration length, const std::string& at);
  void fail(std::string pointer, std::string code, std::string message);
  void check_match(const event_match& m, const std::string& at);
  void check_condition(const condition& c, const std::string& at, std::size_t depth);
  void check_engine_key(const event_match& m, const std::string& at);
  void check_scoring(const scoring& sc);
  void check_hours(const local_hours& h, const std::string& at);
  void check_policy(const delivery_policy& p, const std::string& at);
  void check(const rule_set& rs);
  void check_action(const rule_set& rs, const action& a, const std::string& aat);
  void check_length(duration d, const std::string& at, bool may_be_zero, bool may_be_negative);
  // validate_workflows.cpp
  void check_workflows(const rule_set& rs, const std::map<std::string_view, std::size_t>& rules);
  void check_workflow(const rule_set& rs, const workflow& w, const std::string& at);
  void check_steps(const rule_set& rs, const workflow& w, const std::string& at);
};

/// Resolves the zones the delivery policies need, asking `zones` (may be null) for its database
/// when the rules read local time with use_system_zones; problems are reported like
/// validation's.
void resolve_delivery(const rule_set& rs, const zone_provider* zones, compiled_delivery& d,
                      std::vector<diagnostic>& problems);

}  // namespace nudge::detail
