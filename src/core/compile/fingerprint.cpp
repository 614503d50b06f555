// The program fingerprint (nudge/program.hpp): FNV-1a of a canonical serialization of the rule
// set. It is the program's identity, which snapshots and SQLite databases record to refuse a
// file written for other rules.
#include <cstdint>
#include <string>

#include <nudge/program.hpp>

#include "core/byte_writer.hpp"

namespace nudge {
namespace {

using byte_codec::writer;

// ---- The program fingerprint's canonical serialization ------------------------------------------

void canon(writer& w, const event_match& m) {
  w.str(m.type);
  w.u8(static_cast<std::uint8_t>(m.match));
  w.str(m.key);
}

void canon(writer& w, const condition& c) {
  w.u8(static_cast<std::uint8_t>(c.node));
  w.count(c.children.size());
  for (const auto& child : c.children) {
    canon(w, child);
  }
  w.u8(static_cast<std::uint8_t>(c.target));
  w.str(c.name);
  w.u8(static_cast<std::uint8_t>(c.op));
  w.count(c.operands.size());
  for (const auto& v : c.operands) {
    w.val(v);
  }
  canon(w, c.events);
  w.u8(static_cast<std::uint8_t>(c.window));
  w.dur(c.window_length);
  // Calendar months only when used, so rule sets without them keep their fingerprints.
  if (c.window_months != 0) {
    w.str("months");
    w.i32(c.window_months);
  }
  w.u8(static_cast<std::uint8_t>(c.count));
  w.i64(c.count_bound);
  // Only the kinds that read them: older rule sets keep their fingerprints.
  if (c.node == condition::kind::aggregate) {
    w.u8(static_cast<std::uint8_t>(c.aggregate));
    w.str(c.property);
  } else if (c.node == condition::kind::occurred) {
    w.u8(static_cast<std::uint8_t>(c.which));
    w.u8(c.is_older ? 1 : 0);
  } else if (c.node == condition::kind::in_workflow) {
    w.str(c.step);
  } else if (c.node == condition::kind::near || c.node == condition::kind::moved) {
    w.f64(c.point.lat);
    w.f64(c.point.lon);
    w.f64(c.radius_km);
  }
}

void canon(writer& w, const action& a) {
  w.u8(static_cast<std::uint8_t>(a.kind));
  w.str(a.arg);
  w.val(a.val);
  w.u8(static_cast<std::uint8_t>(a.pick));
  w.str(a.salt);
  w.count(a.params.size());
  for (const auto& [name, text] : a.params) {
    w.str(name);
    w.str(text);
  }
  w.dur(a.delay);
  w.u8(a.condition ? 1 : 0);
  if (a.condition) {
    canon(w, *a.condition);
  }
  w.u8(a.notify ? 1 : 0);
  if (a.transactional) {
    w.str("transactional");
  }
}

void canon(writer& w, const delivery_policy& p) {
  w.u8(p.require_consent ? 1 : 0);
  w.count(p.caps.size());
  for (const auto& c : p.caps) {
    w.u8(static_cast<std::uint8_t>(c.on));
    w.i64(c.max_messages);
    w.dur(c.per);
  }
  for (const auto& h : {p.quiet_hours, p.send_hours}) {
    w.u8(h ? 1 : 0);
    if (h) {
      w.i32(h->from_seconds);
      w.i32(h->to_seconds);
    }
  }
  w.u8(p.weekdays);
  w.u8(static_cast<std::uint8_t>(p.on_cap));
  w.u8(static_cast<std::uint8_t>(p.on_quiet_hours));
  w.i32(p.priority);
}

void canon(writer& w, const rule& r) {
  w.str(r.id);
  canon(w, r.trigger);
  w.dur(r.delay);
  if (r.delay_months != 0) {
    w.str("months");
    w.i32(r.delay_months);
  }
  canon(w, r.condition);
  w.count(r.actions.size());
  for (const auto& a : r.actions) {
    canon(w, a);
  }
  w.u8(static_cast<std::uint8_t>(r.reentry_policy));
  w.dur(r.reentry_window);
  w.u8(r.cap ? 1 : 0);
  if (r.cap) {
    w.i64(r.cap->max_runs);
    w.dur(r.cap->per);
  }
  // Written only when present, so rule sets without a policy keep their fingerprints.
  if (r.delivery) {
    w.str("delivery");
    canon(w, *r.delivery);
  }
}

void canon_steps(writer& w, const std::vector<workflow_step>& steps) {
  w.count(steps.size());
  for (const auto& st : steps) {
    w.str(st.id);
    w.u8(static_cast<std::uint8_t>(st.kind));
    w.str(st.next);
    canon(w, st.act);
    w.u8(static_cast<std::uint8_t>(st.wait));
    w.dur(st.length);
    if (st.length_months != 0) {
      w.str("months");
      w.i32(st.length_months);
    }
    w.u8(static_cast<std::uint8_t>(st.moment));
    w.i32(st.time_of_day);
    w.u8(st.weekdays);
    w.str(st.detail);
    canon(w, st.condition);
    w.str(st.yes);
    w.str(st.no);
    canon(w, st.event);
    w.u8(st.from_previous_message ? 1 : 0);
    w.dur(st.timeout);
    w.count(st.paths.size());
    for (const auto& p : st.paths) {
      w.u32(p.percent);
      w.str(p.next);
    }
  }
}

void canon(writer& w, const workflow& wf) {
  w.str(wf.id);
  w.u32(wf.version);
  w.u8(static_cast<std::uint8_t>(wf.status));
  w.u8(static_cast<std::uint8_t>(wf.on_new_version));
  w.u8(static_cast<std::uint8_t>(wf.entry.kind));
  canon(w, wf.entry.on);
  w.str(wf.entry.detail);
  w.i32(wf.entry.offset_days);
  w.i32(wf.entry.time_of_day);
  canon(w, wf.entry.condition);
  canon_steps(w, wf.steps);
  // Kept older versions (only when there are some, so that other workflows keep their
  // fingerprints): runs and the outbox name their steps by position in the step table.
  if (!wf.previous_versions.empty()) {
    w.str("previous_versions");
    w.count(wf.previous_versions.size());
    for (const auto& pv : wf.previous_versions) {
      w.u32(pv.version);
      canon_steps(w, pv.steps);
    }
  }
  w.count(wf.exit_on.size());
  for (const auto& m : wf.exit_on) {
    canon(w, m);
  }
  canon(w, wf.exit_when);
  w.u8(static_cast<std::uint8_t>(wf.reentry));
  w.dur(wf.cool_down);
  w.u32(wf.max_active_runs);
  w.str(wf.complete_to_group);
  w.str(wf.complete_from_group);
  // Written only when present, so workflows without a policy keep their fingerprints.
  if (wf.delivery) {
    w.str("delivery");
    canon(w, *wf.delivery);
  }
}

}  // namespace

std::uint64_t program_fingerprint(const program& p) {
  std::string bytes;
  writer w{bytes};
  w.str("nudge rule set v1");
  const rule_set& rs = p.rules();
  w.count(rs.rules.size());
  for (const auto& r : rs.rules) {
    canon(w, r);
  }
  w.count(rs.owner_groups.size());
  for (const auto& [name, members] : rs.owner_groups) {
    w.str(name);
    w.count(members.size());
    for (const auto& m : members) {
      w.str(m);
    }
  }
  w.count(rs.event_types.size());
  for (const auto& t : rs.event_types) {
    w.str(t);
  }
  // Appended only when present, so rule sets without them keep their fingerprints.
  if (!rs.segments.empty()) {
    w.str("segments");
    w.count(rs.segments.size());
    for (const auto& sg : rs.segments) {
      w.str(sg.name);
      canon(w, sg.condition);
    }
  }
  if (!rs.scoring.empty()) {
    const scoring& sc = rs.scoring;
    w.str("scoring");
    w.count(sc.rules.size());
    for (const auto& r : sc.rules) {
      w.str(r.id);
      canon(w, r.on);
      w.f64(r.points);
      w.u8(r.cap ? 1 : 0);
      if (r.cap) {
        w.f64(r.cap->max_points);
        w.dur(r.cap->per);
      }
    }
    w.u8(sc.decay ? 1 : 0);
    if (sc.decay) {
      w.dur(sc.decay->every);
      w.f64(sc.decay->factor);
      w.f64(sc.decay->subtract);
    }
    w.count(sc.thresholds.size());
    for (const auto& t : sc.thresholds) {
      w.str(t.name);
      w.f64(t.at);
    }
  }
  // Only when present, so that programs without workflows keep the fingerprints they had.
  if (!rs.workflows.empty()) {
    w.str("workflows");
    w.count(rs.workflows.size());
    for (const auto& wf : rs.workflows) {
      canon(w, wf);
    }
  }
  if (!rs.areas.empty()) {
    w.str("areas");
    w.count(rs.areas.size());
    for (const auto& a : rs.areas) {
      w.str(a.name);
      w.f64(a.center.lat);
      w.f64(a.center.lon);
      w.f64(a.radius_km);
    }
  }
  if (rs.delivery) {
    const delivery_settings& d = *rs.delivery;
    w.str("delivery");
    canon(w, d.defaults);
    w.str(d.default_time_zone);
    w.count(d.time_zones.size());
    for (const auto& [name, posix] : d.time_zones) {
      w.str(name);
      w.str(posix);
    }
    w.u8(d.use_system_zones ? 1 : 0);
  }
  // The provider's zone data, when local time is read through it: the same rules under other
  // tzdata give other actions, so state saved under one must not resume under the other. The
  // whole database, not the zones some contact uses: contacts are not known here, and any of
  // them may name any zone.
  if (const auto& zones = p.compiled().delivery.host_zones) {
    w.str("zones");
    w.u64(zones->digest());
  }
  return fnv1a64(w.out());  // the written bytes, without the writer's slack
}

}  // namespace nudge
