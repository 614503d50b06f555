// The binary codec of contact states (docs/snapshot.md): encode_state / decode_state, and the
// public encode_contact_state / decode_contact_state the SQLite store keeps its records with.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <sstream>
#include <utility>

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include "io/snapshot/codec.hpp"

namespace nudge {
namespace snapshot_codec {
namespace {

// ---- Contact states -----------------------------------------------------------------------------

void write_location(writer& w, const std::optional<geo_point>& p) {
  w.u8(p ? 1 : 0);
  if (p) {
    w.f64(p->lat);
    w.f64(p->lon);
  }
}

void encode_contact(writer& w, const contact& c) {
  w.str(c.id);
  w.count(c.details.size());
  for (const auto& [name, v] : c.details) {
    w.str(name);
    w.val(v);
  }
  w.count(c.tags.size());
  for (const auto& [name, t] : c.tags) {
    w.str(name);
    w.time(t);
  }
  w.f64(c.score);
  w.str(c.owner);
  w.str(c.status);
  w.str(c.stage);
  w.count(c.consent.size());
  for (const auto& [channel, granted] : c.consent) {
    w.str(channel);
    w.u8(granted ? 1 : 0);
  }
  w.str(c.time_zone);
  w.count(c.groups.size());
  for (const auto& g : c.groups) {
    w.str(g);
  }
  write_location(w, c.location);
}

}  // namespace

void encode_state(writer& w, const contact_state& s) {
  encode_contact(w, s.contact);
  w.count(s.history.size());
  for (const auto& h : s.history) {
    w.i64(h.count);
    w.time(h.first);
    w.time(h.last);
    w.count(h.recent.size());
    for (auto t : h.recent) {
      w.time(t);
    }
  }
  w.count(s.rule_runs.size());
  for (const auto& [rule, m] : s.rule_runs) {
    w.u32(rule);
    w.i64(m.runs);
    w.time(m.last);
    w.count(m.earlier.size());
    for (auto t : m.earlier) {
      w.time(t);
    }
  }
  w.count(s.timers.size());
  for (const auto& t : s.timers) {
    w.time(t.due_at);
    w.u64(t.sequence);
    w.u32(t.rule);
    w.i32(t.action);
    w.time(t.triggered_at);
    w.u64(t.trigger_ordinal);
    w.u8(static_cast<std::uint8_t>(t.kind));
    w.u8(t.deferred ? 1 : 0);
  }
  w.time(s.clock);
  w.u64(s.events_applied);
  w.u64(s.timers_scheduled);
  w.count(s.channel_sends.size());
  for (const auto& [ch, times] : s.channel_sends) {
    w.u8(ch);
    w.count(times.size());
    for (auto t : times) {
      w.time(t);
    }
  }
  w.u64(s.timeline.recorded());
  w.count(s.timeline.size());
  for (std::size_t i = 0; i < s.timeline.size(); ++i) {
    const timeline_entry& e = s.timeline[i];
    w.time(e.ts);
    w.time(e.until);
    w.u32(e.source);
    w.u32(e.step);
    w.u32(e.detail);
    w.u8(static_cast<std::uint8_t>(e.source_kind));
    w.u8(static_cast<std::uint8_t>(e.what));
    w.u8(static_cast<std::uint8_t>(e.reason));
  }
  w.count(s.segments.size());
  for (const auto& [name, since] : s.segments) {
    w.str(name);
    w.time(since);
  }
  w.count(s.measures.size());
  for (const auto& m : s.measures) {
    w.count(m.recent.size());
    for (const auto& v : m.recent) {
      w.time(v.at);
      w.f64(v.amount);
    }
  }
  w.count(s.score_awards.size());
  for (const auto& [rule, a] : s.score_awards) {
    w.u32(rule);
    w.i64(a.period);
    w.f64(a.points);
  }
  w.count(s.thresholds_reached.size());
  for (const auto& [name, since] : s.thresholds_reached) {
    w.str(name);
    w.time(since);
  }
  w.str(s.merged_into);
  w.count(s.runs.size());
  for (const auto& r : s.runs) {
    w.u32(r.workflow);
    w.u32(r.version);
    w.u32(r.step);
    w.u64(r.id);
    w.u64(r.entry_ordinal);
    w.u64(r.steps_taken);
    w.time(r.entered_at);
    w.time(r.step_at);
    w.u8(r.phase);
    w.u8(r.held ? 1 : 0);
    w.i32(r.last_send);
    w.time(r.last_send_at);
    w.time(r.last_opened_at);
    w.time(r.last_clicked_at);
  }
  w.count(s.workflow_history.size());
  for (const auto& [wf, m] : s.workflow_history) {
    w.u32(wf);
    w.i64(m.entries);
    w.time(m.last_entry);
    w.time(m.last_date);
    w.i64(m.completed);
    w.i64(m.exited);
  }
  w.u64(s.runs_started);
  write_location(w, s.previous_location);
}

namespace {

// Map keys must come strictly ascending: a flat_map built from them is then exactly the one saved.
template <class Map>
void insert_ordered(reader& r, Map& m, std::size_t at, typename Map::value_type entry,
                    std::string_view what) {
  if (!m.empty() && !(m.rbegin()->first < entry.first)) {
    r.corrupt(at, fmt::format("{} keys are not in ascending order", what));
  }
  m.insert(m.end(), std::move(entry));
}

std::optional<geo_point> read_location(reader& r, const char* what) {
  const auto at = r.pos();
  if (!r.boolean(what)) {
    return std::nullopt;
  }
  geo_point p;
  p.lat = r.f64("a latitude");
  p.lon = r.f64("a longitude");
  if (auto why = geo_problem(p.lat, p.lon)) {
    r.corrupt(at, *why);
  }
  return p;
}

contact decode_contact(reader& r) {
  contact c;
  c.id = r.str("a contact id");
  for (std::size_t n = r.count("details", 5), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto name = r.str("a detail name");
    insert_ordered(r, c.details, at, {std::move(name), r.val("a detail value")}, "detail");
  }
  for (std::size_t n = r.count("tags", 12), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto name = r.str("a tag");
    insert_ordered(r, c.tags, at, {std::move(name), r.time("a tag time")}, "tag");
  }
  c.score = r.f64("the score");
  c.owner = r.str("the owner");
  c.status = r.str("the status");
  c.stage = r.str("the stage");
  for (std::size_t n = r.count("consents", 5), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto name = r.str("a consent channel");
    insert_ordered(r, c.consent, at, {std::move(name), r.boolean("a consent flag")}, "consent");
  }
  c.time_zone = r.str("the time zone");
  for (std::size_t n = r.count("groups", 4), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto g = r.str("a group");
    if (!c.groups.empty() && !(*c.groups.rbegin() < g)) {
      r.corrupt(at, "group names are not in ascending order");
    }
    c.groups.insert(c.groups.end(), std::move(g));
  }
  c.location = read_location(r, "the location");
  return c;
}

}  // namespace

contact_state decode_state(reader& r, const program* expected) {
  contact_state s;
  s.contact = decode_contact(r);
  {
    const auto at = r.pos();
    const std::size_t n = r.count("history slots", 28);
    if (expected != nullptr && n != expected->history_slot_count()) {
      r.corrupt(at, fmt::format("{} history slots, the program keeps {}", n,
                                expected->history_slot_count()));
    }
    s.history.resize(n);
    for (auto& h : s.history) {
      h.count = r.i64("a history count");
      h.first = r.time("a history first time");
      h.last = r.time("a history last time");
      for (std::size_t k = r.count("recent times", 8), i = 0; i < k; ++i) {
        h.recent.push_back(r.time("a recent time"));
      }
    }
  }
  for (std::size_t n = r.count("rule memories", 24), i = 0; i < n; ++i) {
    const auto at = r.pos();
    const std::uint32_t rule = r.u32("a rule index");
    if (expected != nullptr && rule >= expected->rule_count()) {
      r.corrupt(at, fmt::format("rule index {} (the program has {} rules)", rule,
                                expected->rule_count()));
    }
    rule_memory m;
    m.runs = r.i64("a run count");
    m.last = r.time("a last run time");
    for (std::size_t k = r.count("earlier run times", 8), j = 0; j < k; ++j) {
      m.earlier.push_back(r.time("an earlier run time"));
    }
    insert_ordered(r, s.rule_runs, at, {rule, std::move(m)}, "rule memory");
  }
  for (std::size_t n = r.count("timers", 42), i = 0; i < n; ++i) {
    timer t;
    t.due_at = r.time("a timer due time");
    t.sequence = r.u64("a timer sequence");
    const auto at = r.pos();
    t.rule = r.u32("a timer rule index");
    t.action = r.i32("a timer action index");
    const bool is_own = t.action == timer::segment_flip || t.action == timer::score_decay;
    if (is_own && t.rule != 0) {
      r.corrupt(at, fmt::format("engine timer with rule index {} (expected 0)", t.rule));
    }
    t.triggered_at = r.time("a timer trigger time");
    t.trigger_ordinal = r.u64("a timer trigger ordinal");
    {
      const auto kind_at = r.pos();
      const auto kind = r.u8("a timer kind");
      if (kind > static_cast<std::uint8_t>(timer_kind::workflow_date)) {
        r.corrupt(kind_at, fmt::format("timer kind {} (expected 0 to 2)", kind));
      }
      t.kind = static_cast<timer_kind>(kind);
    }
    if (expected != nullptr && t.kind != timer_kind::rule) {
      if (t.rule >= expected->workflow_count()) {
        r.corrupt(at, fmt::format("timer workflow index {} (the program has {} workflows)", t.rule,
                                  expected->workflow_count()));
      }
      const auto steps = expected->compiled().workflows[t.rule].steps.size();
      if (t.kind == timer_kind::workflow_step &&
          (t.action < 0 || static_cast<std::size_t>(t.action) >= steps)) {
        r.corrupt(at, fmt::format("timer step index {} (workflow {} has {} steps)", t.action,
                                  t.rule, steps));
      }
    } else if (expected != nullptr && !is_own) {
      if (t.rule >= expected->rule_count()) {
        r.corrupt(at, fmt::format("timer rule index {} (the program has {} rules)", t.rule,
                                  expected->rule_count()));
      }
      const auto actions = expected->rules().rules[t.rule].actions.size();
      if (t.action < -1 || (t.action >= 0 && static_cast<std::size_t>(t.action) >= actions)) {
        r.corrupt(at, fmt::format("timer action index {} (rule {} has {} actions)", t.action,
                                  t.rule, actions));
      }
    }
    t.deferred = r.boolean("a timer deferred flag");
    if (t.deferred && t.action < 0) {
      r.corrupt(at, "a deferred timer must name an action");
    }
    if (!s.timers.empty() && std::pair{t.due_at, t.sequence} <
                                 std::pair{s.timers.back().due_at, s.timers.back().sequence}) {
      r.corrupt(at, "timers are not sorted by due time and sequence");
    }
    s.timers.push_back(t);
  }
  s.clock = r.time("the contact clock");
  s.events_applied = r.u64("the events-applied counter");
  s.timers_scheduled = r.u64("the timers-scheduled counter");
  for (std::size_t n = r.count("channel send logs", 5), i = 0; i < n; ++i) {
    const auto at = r.pos();
    const std::uint8_t ch = r.u8("a channel");
    if (ch >= channel_count) {
      r.corrupt(at, fmt::format("channel {} (expected 0 to {})", ch, channel_count - 1));
    }
    std::vector<time_point> times;
    for (std::size_t k = r.count("channel send times", 8), j = 0; j < k; ++j) {
      times.push_back(r.time("a channel send time"));
    }
    insert_ordered(r, s.channel_sends, at, {ch, std::move(times)}, "channel send log");
  }
  {
    const std::uint64_t recorded = r.u64("the timeline's recorded count");
    const std::size_t n = r.count("timeline entries", 31);
    if (n > recorded) {
      r.corrupt(r.pos() - 4,
                fmt::format("{} timeline entries, but only {} were ever recorded", n, recorded));
    }
    std::vector<timeline_entry> entries(n);
    for (auto& e : entries) {
      e.ts = r.time("a timeline time");
      e.until = r.time("a timeline until time");
      const auto at = r.pos();
      e.source = r.u32("a timeline source index");
      e.step = r.u32("a timeline step index");
      e.detail = r.u32("a timeline detail");
      auto byte = [&](std::string_view what, unsigned last) {
        const auto pos = r.pos();
        const unsigned v = r.u8(what);
        if (v > last) {
          r.corrupt(pos, fmt::format("{} is {} (expected 0 to {})", what, v, last));
        }
        return static_cast<std::uint8_t>(v);
      };
      e.source_kind = static_cast<timeline_source>(
          byte("a timeline source kind", static_cast<unsigned>(timeline_source::segment)));
      e.what = static_cast<timeline_what>(
          byte("a timeline entry kind", static_cast<unsigned>(timeline_what::merged)));
      e.reason = static_cast<timeline_reason>(
          byte("a timeline reason", static_cast<unsigned>(timeline_reason::step_removed)));
      if (expected != nullptr && e.source_kind == timeline_source::rule &&
          e.what != timeline_what::merged && e.source >= expected->rule_count()) {
        r.corrupt(at, fmt::format("timeline rule index {} (the program has {} rules)", e.source,
                                  expected->rule_count()));
      }
    }
    s.timeline.assign(std::move(entries), recorded);
  }
  for (std::size_t n = r.count("segment memberships", 12), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto name = r.str("a segment name");
    insert_ordered(r, s.segments, at, {std::move(name), r.time("a segment entry time")}, "segment");
  }
  {
    const auto at = r.pos();
    const std::size_t n = r.count("measure slots", 4);
    if (expected != nullptr && n != expected->measure_slot_count()) {
      r.corrupt(at, fmt::format("{} measure slots, the program keeps {}", n,
                                expected->measure_slot_count()));
    }
    s.measures.resize(n);
    for (auto& m : s.measures) {
      for (std::size_t k = r.count("measured values", 16), i = 0; i < k; ++i) {
        timed_value v;
        v.at = r.time("a measured time");
        v.amount = r.f64("a measured amount");
        m.recent.push_back(v);
      }
    }
  }
  for (std::size_t n = r.count("score awards", 20), i = 0; i < n; ++i) {
    const auto at = r.pos();
    const std::uint32_t rule = r.u32("a score rule index");
    if (expected != nullptr && rule >= expected->rules().scoring.rules.size()) {
      r.corrupt(at, fmt::format("score rule index {} (the program has {} score rules)", rule,
                                expected->rules().scoring.rules.size()));
    }
    score_award a;
    a.period = r.i64("a score period");
    a.points = r.f64("awarded points");
    insert_ordered(r, s.score_awards, at, {rule, a}, "score award");
  }
  for (std::size_t n = r.count("reached thresholds", 12), i = 0; i < n; ++i) {
    const auto at = r.pos();
    auto name = r.str("a threshold name");
    insert_ordered(r, s.thresholds_reached, at, {std::move(name), r.time("a threshold time")},
                   "threshold");
  }
  s.merged_into = r.str("the merged-into contact id");
  for (std::size_t n = r.count("workflow runs", 86), i = 0; i < n; ++i) {
    const auto at = r.pos();
    workflow_run run;
    run.workflow = r.u32("a run's workflow index");
    run.version = r.u32("a run's workflow version");
    run.step = r.u32("a run's step index");
    if (expected != nullptr) {
      if (run.workflow >= expected->workflow_count()) {
        r.corrupt(at, fmt::format("run workflow index {} (the program has {} workflows)",
                                  run.workflow, expected->workflow_count()));
      }
      const auto steps = expected->compiled().workflows[run.workflow].steps.size();
      if (run.step >= steps) {
        r.corrupt(at, fmt::format("run step index {} (workflow {} has {} steps)", run.step,
                                  run.workflow, steps));
      }
    }
    run.id = r.u64("a run id");
    run.entry_ordinal = r.u64("a run's entry ordinal");
    run.steps_taken = r.u64("a run's step count");
    run.entered_at = r.time("a run's entry time");
    run.step_at = r.time("a run's step time");
    const auto phase_at = r.pos();
    run.phase = r.u8("a run's wait phase");
    if (run.phase > 2) {
      r.corrupt(phase_at, fmt::format("run phase {} (0, 1 or 2)", run.phase));
    }
    run.held = r.boolean("a run's held flag");
    run.last_send = r.i32("a run's last send step");
    run.last_send_at = r.time("a run's last send time");
    run.last_opened_at = r.time("a run's open time");
    run.last_clicked_at = r.time("a run's click time");
    s.runs.push_back(run);
  }
  for (std::size_t n = r.count("workflow memories", 28), i = 0; i < n; ++i) {
    const auto at = r.pos();
    const std::uint32_t wf = r.u32("a workflow index");
    if (expected != nullptr && wf >= expected->workflow_count()) {
      r.corrupt(at, fmt::format("workflow index {} (the program has {} workflows)", wf,
                                expected->workflow_count()));
    }
    workflow_memory m;
    m.entries = r.i64("an entry count");
    m.last_entry = r.time("a last entry time");
    m.last_date = r.time("a last date entry time");
    m.completed = r.i64("a completed run count");
    m.exited = r.i64("an exited run count");
    insert_ordered(r, s.workflow_history, at, {wf, m}, "workflow memory");
  }
  s.runs_started = r.u64("the runs-started counter");
  s.previous_location = read_location(r, "the previous location");
  return s;
}

}  // namespace snapshot_codec

using snapshot_codec::decode_state;
using snapshot_codec::encode_state;
using snapshot_codec::reader;
using snapshot_codec::writer;

void encode_contact_state(const contact_state& state, std::string& out) {
  writer w{out};
  encode_state(w, state);
}

contact_state decode_contact_state(std::string_view bytes, const program* expected) {
  const std::string name = "contact state";
  reader r{bytes, name};
  auto s = decode_state(r, expected);
  if (r.left() != 0) {
    r.corrupt(r.pos(), fmt::format("{} bytes after the end of the state", r.left()));
  }
  return s;
}

}  // namespace nudge
