// The time zones a program reads: which rules read local time, the zones their delivery
// policies resolve to (explicit POSIX rules, then the host's zone provider), and
// program::reads_time_zones / knows_time_zone: whether a contact's time zone resolves, so that
// readers of contacts files can refuse a misspelled one (issue 14) instead of the evaluator
// silently using default_time_zone (src/core/eval/local_time.cpp, zone()).
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <nudge/program.hpp>

#include "compile.hpp"

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
  return d.host_zones != nullptr && d.host_zones->find(name) != nullptr;
}

}  // namespace nudge

namespace nudge::detail {
namespace {

bool reads_local_time(const delivery_policy& p) {
  return p.quiet_hours || p.send_hours || p.weekdays != all_weekdays;
}

// Yearly date entries, time-of-day waits and date waits are read on the contact's local clock.
bool reads_local_time(const workflow& w) {
  auto local = [](const std::vector<workflow_step>& steps) {
    return std::any_of(steps.begin(), steps.end(), [](const workflow_step& st) {
      return st.kind == step_kind::wait &&
             (st.wait == wait_kind::time_of_day || st.wait == wait_kind::date);
    });
  };
  return w.entry.kind == entry_kind::date || local(w.steps) ||
         std::any_of(w.previous_versions.begin(), w.previous_versions.end(),
                     [&](const workflow_version& v) { return local(v.steps); });
}

bool reads_months(const condition& c) {
  return c.window_months != 0 || std::any_of(c.children.begin(), c.children.end(),
                                             [](const condition& x) { return reads_months(x); });
}

// Calendar months are counted on the contact's local calendar.
bool reads_months(const rule_set& rs) {
  auto steps = [](const std::vector<workflow_step>& v) {
    return std::any_of(v.begin(), v.end(), [](const workflow_step& st) {
      return st.length_months != 0 || reads_months(st.condition) ||
             (st.act.condition && reads_months(*st.act.condition));
    });
  };
  return std::any_of(rs.rules.begin(), rs.rules.end(),
                     [](const rule& r) {
                       return r.delay_months != 0 || reads_months(r.condition) ||
                              std::any_of(r.actions.begin(), r.actions.end(), [](const action& a) {
                                return a.condition && reads_months(*a.condition);
                              });
                     }) ||
         std::any_of(rs.segments.begin(), rs.segments.end(),
                     [](const segment& g) { return reads_months(g.condition); }) ||
         std::any_of(rs.workflows.begin(), rs.workflows.end(), [&](const workflow& w) {
           return reads_months(w.entry.condition) || reads_months(w.exit_when) || steps(w.steps) ||
                  std::any_of(w.previous_versions.begin(), w.previous_versions.end(),
                              [&](const workflow_version& v) { return steps(v.steps); });
         });
}

}  // namespace

void resolve_delivery(const rule_set& rs, const zone_provider* zones, detail::compiled_delivery& d,
                      std::vector<diagnostic>& problems) {
  auto fail = [&](std::string pointer, std::string message) {
    diagnostic x;
    x.json_pointer = std::move(pointer);
    x.code = "bad_time_zone";
    x.message = std::move(message);
    problems.push_back(std::move(x));
  };
  const delivery_policy* defaults = rs.delivery ? &rs.delivery->defaults : nullptr;
  bool local_time = false;
  d.rule_policy.resize(rs.rules.size(), nullptr);
  auto note_policy = [&](const delivery_policy& p) {
    local_time = local_time || reads_local_time(p);
    for (const auto& c : p.caps) {
      auto& keep = d.keep[static_cast<std::size_t>(c.on)];
      keep = std::max(keep, static_cast<std::uint32_t>(c.max_messages));
    }
  };
  if (defaults != nullptr) {
    note_policy(*defaults);
  }
  for (std::size_t i = 0; i < rs.rules.size(); ++i) {
    const rule& r = rs.rules[i];
    d.rule_policy[i] = r.delivery ? &*r.delivery : defaults;
    if (r.delivery) {
      note_policy(*r.delivery);
    }
  }
  d.workflow_policy.resize(rs.workflows.size(), nullptr);
  for (std::size_t i = 0; i < rs.workflows.size(); ++i) {
    const workflow& w = rs.workflows[i];
    d.workflow_policy[i] = w.delivery ? &*w.delivery : defaults;
    if (w.delivery) {
      note_policy(*w.delivery);
    }
    local_time = local_time || reads_local_time(w);
  }
  local_time = local_time || reads_months(rs);
  if (!local_time) {
    return;
  }
  const delivery_settings settings = rs.delivery.value_or(delivery_settings{});
  for (const auto& [name, posix] : settings.time_zones) {
    if (auto z = zone_rules::parse(posix)) {
      d.zones.emplace(name, std::move(*z));
    } else {
      fail("/delivery/time_zones/" + name,
           fmt::format("\"{}\" is not a POSIX TZ rule (e.g. \"CET-1CEST,M3.5.0,M10.5.0/3\")",
                       posix));
    }
  }
  if (settings.use_system_zones && zones != nullptr) {
    d.host_zones = zones->zones();
  }
  const std::string& name = settings.default_time_zone;
  if (auto it = d.zones.find(name); it != d.zones.end()) {
    d.default_zone = it->second;
  } else if (const zone_rules* z = d.host_zones ? d.host_zones->find(name) : nullptr) {
    d.default_zone = *z;
  } else if (name == "UTC") {
    d.default_zone = zone_rules::parse("UTC0");
  } else {
    std::string where = "not in \"time_zones\"";
    if (!settings.use_system_zones) {
      where += ", and use_system_zones is false";
    } else if (d.host_zones != nullptr) {
      where += " nor in " + d.host_zones->source();
    } else {
      where +=
          ", and the program was compiled without a zone provider: pass one to "
          "program::compile, e.g. nudge::system_zones() from nudge/io/zones.hpp";
    }
    fail("/delivery/default_time_zone", fmt::format("unknown time zone \"{}\" ({})", name, where));
  }
}

}  // namespace nudge::detail
