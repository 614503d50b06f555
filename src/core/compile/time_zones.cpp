// program::reads_time_zones / knows_time_zone: whether a contact's time zone resolves, so that
// readers of contacts files can refuse a misspelled one (issue 14) instead of the evaluator
// silently using default_time_zone (src/evaluate.cpp, zone()).
#include <nudge/program.hpp>

namespace nudge {

bool program::reads_time_zones() const noexcept {
  // resolve_delivery sets the default zone exactly when something reads local time.
  return compiled_.delivery.default_zone.has_value();
}

bool program::knows_time_zone(std::string_view name) const {
  if (!reads_time_zones()) {
    return true;
  }
  const auto& d = compiled_.delivery;
  if (d.zones.find(name) != d.zones.end()) {
    return true;
  }
  return d.system_zones != nullptr && d.system_zones->find(name) != d.system_zones->end();
}

}  // namespace nudge
