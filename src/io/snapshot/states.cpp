// Snapshots: the binary codec for contact states and the snapshot file (docs/snapshot.md), and
// the program fingerprint.
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

#include <nudge/io/snapshot.hpp>

namespace nudge {
namespace {

constexpr std::string_view magic = "NUDGSNAP";

constexpr std::uint64_t fnv_offset = 14695981039346656037ULL;
constexpr std::uint64_t fnv_prime = 1099511628211ULL;

std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = fnv_offset) noexcept {
  for (char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= fnv_prime;
  }
  return h;
}

// ---- Writing: explicit little-endian fixed-width fields ----------------------------------------

class writer {
 public:
  // Appends to `out`. While the writer lives, `out` may hold slack past the written bytes:
  // use out() to see what was written; the destructor trims the slack.
  explicit writer(std::string& out) : out_(out), len_(out.size()) {}
  ~writer() { out_.resize(len_); }
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  void u8(std::uint8_t v) {
    const char b[1] = {static_cast<char>(v)};
    put(b);
  }
  // Whole fields at once into slack reserved ahead: byte-by-byte push_back, and then
  // std::string::append's memcpy call per field, were the SQLite store's main encoding cost.
  void u32(std::uint32_t v) {
    const char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                       static_cast<char>(v >> 24)};
    put(b);
  }
  void u64(std::uint64_t v) {
    const char b[8] = {static_cast<char>(v),       static_cast<char>(v >> 8),
                       static_cast<char>(v >> 16), static_cast<char>(v >> 24),
                       static_cast<char>(v >> 32), static_cast<char>(v >> 40),
                       static_cast<char>(v >> 48), static_cast<char>(v >> 56)};
    put(b);
  }
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v) { u64(std::bit_cast<std::uint64_t>(v)); }
  void time(time_point t) { i64(to_epoch(t)); }
  void dur(duration d) { i64(d.count()); }
  void count(std::size_t n) { u32(static_cast<std::uint32_t>(n)); }
  void raw(std::string_view s) {
    reserve(s.size());
    std::memcpy(out_.data() + len_, s.data(), s.size());
    len_ += s.size();
  }
  void str(std::string_view s) {
    count(s.size());
    raw(s);
  }
  void val(const value& v) {
    u8(static_cast<std::uint8_t>(v.index()));
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            str(x);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            i64(x);
          } else if constexpr (std::is_same_v<T, double>) {
            f64(x);
          } else if constexpr (std::is_same_v<T, bool>) {
            u8(x ? 1 : 0);
          } else {
            time(x);
          }
        },
        v);
  }
  // The bytes written so far (and the ones before the writer), without slack.
  std::string& out() {
    out_.resize(len_);
    return out_;
  }

 private:
  template <std::size_t N>
  void put(const char (&b)[N]) {
    reserve(N);
    std::memcpy(out_.data() + len_, b, N);  // a constant size: a single store, no call
    len_ += N;
  }
  void reserve(std::size_t n) {
    if (out_.size() - len_ < n) {
      // A little slack at a time (std::string's capacity still grows geometrically): a writer
      // per record on a long buffer must not zero-fill the buffer's length each time.
      out_.resize(len_ + n + 1024);
    }
  }

  std::string& out_;
  std::size_t len_;
};

// ---- Reading: every field bounds-checked, errors name the byte offset ---------------------------

class reader {
 public:
  reader(std::string_view bytes, const std::string& name, std::size_t base = 0)
      : bytes_(bytes), name_(name), base_(base) {}

  [[noreturn]] void corrupt(std::size_t at, const std::string& what) const {
    throw snapshot_error(fmt::format("{}: corrupt at byte {}: {}", name_, base_ + at, what));
  }
  const char* take(std::size_t n, std::string_view what) {
    if (bytes_.size() - pos_ < n) {
      throw snapshot_error(
          fmt::format("{}: truncated at byte {}: expected {} bytes of {}, found {}", name_,
                      base_ + pos_, n, what, bytes_.size() - pos_));
    }
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::uint8_t u8(std::string_view what) { return static_cast<std::uint8_t>(*take(1, what)); }
  std::uint32_t u32(std::string_view what) {
    const char* p = take(4, what);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      v |= static_cast<std::uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return v;
  }
  std::uint64_t u64(std::string_view what) {
    const char* p = take(8, what);
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    }
    return v;
  }
  std::int32_t i32(std::string_view what) { return static_cast<std::int32_t>(u32(what)); }
  std::int64_t i64(std::string_view what) { return static_cast<std::int64_t>(u64(what)); }
  double f64(std::string_view what) { return std::bit_cast<double>(u64(what)); }
  time_point time(std::string_view what) {
    const std::size_t at = pos_;
    const time_point t = from_epoch(i64(what));
    if (t < min_time || t > max_time) {
      corrupt(at, fmt::format("{} {} is outside the supported range ({} to {})", what, to_epoch(t),
                              format_time(min_time), format_time(max_time)));
    }
    return t;
  }
  bool boolean(std::string_view what) {
    const std::size_t at = pos_;
    const auto b = u8(what);
    if (b > 1) {
      corrupt(at, fmt::format("{} is {} (expected 0 or 1)", what, b));
    }
    return b == 1;
  }
  /// A count of items each at least `min_size` bytes long: never more than the bytes left.
  std::size_t count(std::string_view what, std::size_t min_size) {
    const std::size_t at = pos_;
    const std::size_t n = u32(what);
    if (n > (bytes_.size() - pos_) / std::max<std::size_t>(min_size, 1)) {
      throw snapshot_error(
          fmt::format("{}: truncated at byte {}: {} {} cannot fit in the {} bytes left", name_,
                      base_ + at, n, what, bytes_.size() - pos_));
    }
    return n;
  }
  std::string str(std::string_view what) {
    const std::size_t n = u32(what);
    return std::string(take(n, what), n);
  }
  value val(std::string_view what) {
    const std::size_t at = pos_;
    switch (u8(what)) {
      case 0:
        return str(what);
      case 1:
        return i64(what);
      case 2:
        return f64(what);
      case 3:
        return boolean(what);
      case 4:
        return time(what);
      default:
        corrupt(at, fmt::format("{} has value kind {} (expected 0 to 4)", what,
                                static_cast<unsigned>(bytes_[at])));
    }
  }
  std::size_t pos() const noexcept { return pos_; }
  std::size_t left() const noexcept { return bytes_.size() - pos_; }
  std::string_view rest() const noexcept { return bytes_.substr(pos_); }
  void skip(std::size_t n) { pos_ += n; }
  const std::string& name() const noexcept { return name_; }
  std::size_t base() const noexcept { return base_; }

 private:
  std::string_view bytes_;
  const std::string& name_;
  std::size_t base_;
  std::size_t pos_ = 0;
};

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
    w.time(e.at);
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
      e.at = r.time("a timeline time");
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
  w.u8(a.when ? 1 : 0);
  if (a.when) {
    canon(w, *a.when);
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
  canon(w, r.when);
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
    canon(w, st.when);
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
  canon(w, wf.entry.when);
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
      canon(w, sg.when);
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
    // The system database's content is not hashed: it belongs to the machine, not the rules.
    w.u8(d.use_system_zones ? 1 : 0);
    w.str(d.zoneinfo_dir);
  }
  return fnv1a(w.out());  // the written bytes, without the writer's slack
}

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

snapshot take_snapshot(const engine& engine, const memory_store& store) {
  snapshot s;
  s.fingerprint = program_fingerprint(engine.program());
  s.states.reserve(store.size());
  store.for_each([&](const contact_state& c) { s.states.push_back(c); });
  std::sort(s.states.begin(), s.states.end(),
            [](const auto& a, const auto& b) { return a.contact.id < b.contact.id; });
  s.stats = engine.stats();
  s.counters = engine.counters();
  s.workflows = engine.workflow_stats();
  return s;
}

namespace {

std::string encode_snapshot(const snapshot& s) {
  std::string out;
  {
    writer w{out};
    w.raw(magic);
    w.u32(snapshot_format_version);
    w.u64(s.fingerprint);
    w.u64(s.states.size());
    std::string record;
    for (const auto& st : s.states) {
      record.clear();
      encode_contact_state(st, record);
      w.str(record);
    }
    w.count(s.stats.size());
    for (const auto& r : s.stats) {
      w.str(r.rule);
      w.u64(r.triggered);
      w.u64(r.passed);
      w.u64(r.failed);
      w.u64(r.suppressed);
      w.u64(r.emitted);
      for (auto n : {r.no_consent, r.capped, r.off_hours, r.deferred_cap, r.deferred_hours}) {
        w.u64(n);
      }
      for (const auto& t : {r.first, r.last}) {
        w.u8(t ? 1 : 0);
        w.time(t.value_or(time_point{}));
      }
    }
    w.count(s.counters.size());
    for (auto c : s.counters) {
      w.u64(c);
    }
    auto when = [&w](const std::optional<time_point>& t) {
      w.u8(t ? 1 : 0);
      w.time(t.value_or(time_point{}));
    };
    auto delivery_counts = [&w](const nudge::delivery_counts& d) {
      for (auto n : {d.no_consent, d.capped, d.off_hours, d.deferred_cap, d.deferred_hours}) {
        w.u64(n);
      }
    };
    w.count(s.workflows.size());
    for (const auto& ws : s.workflows) {
      w.str(ws.workflow);
      for (auto n :
           {ws.entered, ws.completed, ws.exited, ws.sent, ws.opened, ws.clicked, ws.ended}) {
        w.u64(n);
      }
      delivery_counts(ws.delivery);
      w.i64(ws.active);
      when(ws.first);
      when(ws.last);
      w.count(ws.steps.size());
      for (const auto& st : ws.steps) {
        w.str(st.step);
        for (auto n : {st.reached, st.sent, st.opened, st.clicked, st.ended}) {
          w.u64(n);
        }
        delivery_counts(st.delivery);
        w.i64(st.waiting);
        when(st.first);
        when(st.last);
      }
    }
    w.u64(fnv1a(w.out()));  // the written bytes, without the writer's slack
  }
  return out;
}

}  // namespace

void write_snapshot(std::ostream& out, const snapshot& s) {
  const std::string bytes = encode_snapshot(s);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) {
    throw snapshot_error("cannot write the snapshot");
  }
}

namespace {

// A failed step of writing the snapshot file: the path, the step and the system's reason.
[[noreturn]] void write_failed(const std::string& path, const std::string& step, int err) {
  throw snapshot_error(
      fmt::format("{}: cannot write the snapshot ({}): {}", path, step, std::strerror(err)));
}

void write_all(int fd, std::string_view bytes, const std::string& path, const std::string& tmp) {
  while (!bytes.empty()) {
    const auto n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      write_failed(path, "write " + tmp, errno);
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace

// Written to PATH.tmp, fsynced, renamed over PATH, and the directory fsynced: after a crash or a
// power loss PATH is the old snapshot or the new one, whole.
void write_snapshot(const std::string& path, const snapshot& s) {
  const std::string bytes = encode_snapshot(s);
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    write_failed(path, "open " + tmp, errno);
  }
  try {
    write_all(fd, bytes, path, tmp);
    if (::fsync(fd) != 0) {
      write_failed(path, "fsync " + tmp, errno);
    }
  } catch (...) {
    ::close(fd);
    std::remove(tmp.c_str());
    throw;
  }
  if (::close(fd) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    write_failed(path, "close " + tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    write_failed(path, "rename " + tmp, err);
  }
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) {
    write_failed(path, "open the directory " + dir, errno);
  }
  const int rc = ::fsync(dir_fd);
  const int err = errno;
  ::close(dir_fd);
  if (rc != 0) {
    write_failed(path, "fsync the directory " + dir, err);
  }
}

void save_snapshot(const std::string& path, const engine& engine, const memory_store& store) {
  write_snapshot(path, take_snapshot(engine, store));
}

snapshot parse_snapshot(std::string_view bytes, const program* expected, const std::string& name) {
  reader r{bytes, name};
  snapshot s;
  {
    const char* m = r.take(magic.size(), "the magic \"NUDGSNAP\"");
    if (std::string_view{m, magic.size()} != magic) {
      r.corrupt(0, "not a nudge snapshot (the file does not start with \"NUDGSNAP\")");
    }
  }
  const std::uint32_t version = r.u32("the format version");
  if (version != snapshot_format_version) {
    throw snapshot_error(fmt::format("{}: snapshot format version {}, this build reads version {}",
                                     name, version, snapshot_format_version));
  }
  s.fingerprint = r.u64("the program fingerprint");
  if (expected != nullptr) {
    const auto mine = program_fingerprint(*expected);
    if (s.fingerprint != mine) {
      throw snapshot_error(fmt::format(
          "{}: snapshot written for program fingerprint {:016x}, the loaded rules have "
          "fingerprint {:016x} (a snapshot only loads into the rule program that wrote it)",
          name, s.fingerprint, mine));
    }
  }
  {
    const auto at = r.pos();
    const std::uint64_t n = r.u64("the contact count");
    if (n > r.left() / 4) {
      throw snapshot_error(
          fmt::format("{}: truncated at byte {}: {} contact states cannot fit in the {} bytes left",
                      name, at, n, r.left()));
    }
    s.states.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      const std::size_t len = r.u32("a state record length");
      const std::size_t start = r.pos();
      reader sub{std::string_view{r.take(len, "a state record"), len}, name, start};
      s.states.push_back(decode_state(sub, expected));
      if (sub.left() != 0) {
        sub.corrupt(sub.pos(), fmt::format("{} bytes after the end of a state", sub.left()));
      }
      if (s.states.size() > 1 &&
          !(s.states[s.states.size() - 2].contact.id < s.states.back().contact.id)) {
        r.corrupt(start, "contact states are not sorted by contact id");
      }
    }
  }
  {
    const auto at = r.pos();
    const std::size_t n = r.count("rule statistics", 102);
    if (expected != nullptr && n != expected->rule_count()) {
      r.corrupt(at, fmt::format("{} rule statistics, the program has {} rules", n,
                                expected->rule_count()));
    }
    s.stats.resize(n);
    for (auto& st : s.stats) {
      st.rule = r.str("a rule id");
      st.triggered = r.u64("a statistic");
      st.passed = r.u64("a statistic");
      st.failed = r.u64("a statistic");
      st.suppressed = r.u64("a statistic");
      st.emitted = r.u64("a statistic");
      for (auto* c :
           {&st.no_consent, &st.capped, &st.off_hours, &st.deferred_cap, &st.deferred_hours}) {
        *c = r.u64("a statistic");
      }
      for (auto* t : {&st.first, &st.last}) {
        const bool has = r.boolean("a statistic time flag");
        const auto v = r.time("a statistic time");
        if (has) {
          *t = v;
        }
      }
    }
  }
  {
    const std::size_t n = r.count("round-robin counters", 8);
    s.counters.resize(n);
    for (auto& c : s.counters) {
      c = r.u64("a round-robin counter");
    }
  }
  {
    auto when = [&r](std::optional<time_point>& t) {
      const bool has = r.boolean("a statistic time flag");
      const auto v = r.time("a statistic time");
      if (has) {
        t = v;
      }
    };
    const auto at = r.pos();
    auto delivery_counts = [&r](nudge::delivery_counts& d) {
      for (auto* c : {&d.no_consent, &d.capped, &d.off_hours, &d.deferred_cap, &d.deferred_hours}) {
        *c = r.u64("a statistic");
      }
    };
    const std::size_t n = r.count("workflow statistics", 122);
    if (expected != nullptr && n != 0 && n != expected->workflow_count()) {
      r.corrupt(at, fmt::format("{} workflow statistics, the program has {} workflows", n,
                                expected->workflow_count()));
    }
    s.workflows.resize(n);
    for (auto& ws : s.workflows) {
      ws.workflow = r.str("a workflow id");
      for (auto* c :
           {&ws.entered, &ws.completed, &ws.exited, &ws.sent, &ws.opened, &ws.clicked, &ws.ended}) {
        *c = r.u64("a statistic");
      }
      delivery_counts(ws.delivery);
      ws.active = r.i64("a statistic");
      when(ws.first);
      when(ws.last);
      ws.steps.resize(r.count("step statistics", 106));
      for (auto& st : ws.steps) {
        st.step = r.str("a step id");
        for (auto* c : {&st.reached, &st.sent, &st.opened, &st.clicked, &st.ended}) {
          *c = r.u64("a statistic");
        }
        delivery_counts(st.delivery);
        st.waiting = r.i64("a statistic");
        when(st.first);
        when(st.last);
      }
    }
  }
  const auto sum_at = r.pos();
  const std::uint64_t stored = r.u64("the checksum");
  const std::uint64_t computed = fnv1a(bytes.substr(0, sum_at));
  if (stored != computed) {
    r.corrupt(sum_at, fmt::format("checksum {:016x} does not match the content ({:016x})", stored,
                                  computed));
  }
  if (r.left() != 0) {
    r.corrupt(r.pos(), fmt::format("{} bytes after the end of the snapshot", r.left()));
  }
  return s;
}

snapshot read_snapshot(const std::string& path, const program* expected) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    throw snapshot_error(fmt::format("{}: cannot open the snapshot", path));
  }
  std::string bytes{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  if (in.bad()) {
    throw snapshot_error(fmt::format("{}: cannot read the snapshot", path));
  }
  return parse_snapshot(bytes, expected, path);
}

void load_snapshot(const std::string& path, engine& engine) {
  load_snapshot(read_snapshot(path, &engine.program()), engine);
}

void load_snapshot(snapshot s, engine& engine) {
  const auto mine = program_fingerprint(engine.program());
  if (s.fingerprint != mine) {
    throw snapshot_error(fmt::format(
        "snapshot written for program fingerprint {:016x}, the engine's rules have fingerprint "
        "{:016x}",
        s.fingerprint, mine));
  }
  // Check the statistics before touching the store, so a mismatch changes nothing.
  if (s.stats.size() != engine.program().rule_count()) {
    throw snapshot_error(fmt::format("snapshot has statistics for {} rules, the program has {}",
                                     s.stats.size(), engine.program().rule_count()));
  }
  for (std::size_t i = 0; i < s.stats.size(); ++i) {
    if (s.stats[i].rule != engine.program().rules().rules[i].id) {
      throw snapshot_error(fmt::format("snapshot statistics {} are for rule \"{}\", not \"{}\"", i,
                                       s.stats[i].rule, engine.program().rules().rules[i].id));
    }
  }
  engine.store().save(s.states);
  engine.restore(std::move(s.stats), std::move(s.counters), std::move(s.workflows));
}

}  // namespace nudge
