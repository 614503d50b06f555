// The compiled half of nudge.distributed (a replay partitioned by contact, on Dask): reading one
// byte range of an event log (its identify events, then its events cut by partition), the
// partition of a contact id, and the replay of one partition. Private helpers of the Python
// package (names start with "_distributed_"); nudge/distributed/ holds the plan and the merge.
#include "nudge_py.hpp"

// After nudge_py.hpp, which includes Python.h first as CPython requires.
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

using namespace pybind11::literals;

namespace nudge_py {
namespace {

// ---- A small binary codec for events shuffled between workers --------------------------------
// Events leave a range task and reach a partition task as bytes: length-prefixed strings,
// little-endian integers. Both ends are this file, in one build, so no versioning is needed.

void put_u32(std::string& out, std::uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out.append(b, 4);
}
void put_i64(std::string& out, std::int64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

void put_event(std::string& out, const nudge::event& e) {
  put_str(out, e.contact);
  put_str(out, e.type);
  put_str(out, e.key);
  put_i64(out, nudge::to_epoch(e.ts));
  put_u32(out, static_cast<std::uint32_t>(e.props.size()));
  for (const auto& [name, v] : e.props) {
    put_str(out, name);
    out.push_back(static_cast<char>(v.index()));
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            put_str(out, x);
          } else if constexpr (std::is_same_v<T, std::int64_t>) {
            put_i64(out, x);
          } else if constexpr (std::is_same_v<T, double>) {
            std::int64_t bits = 0;
            std::memcpy(&bits, &x, 8);
            put_i64(out, bits);
          } else if constexpr (std::is_same_v<T, bool>) {
            out.push_back(x ? 1 : 0);
          } else {
            put_i64(out, nudge::to_epoch(x));
          }
        },
        v);
  }
}

class reader {
 public:
  explicit reader(std::string_view in) : in_(in) {}
  bool done() const { return at_ >= in_.size(); }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    std::memcpy(&v, take(4).data(), 4);
    return v;
  }
  std::int64_t i64() {
    std::int64_t v = 0;
    std::memcpy(&v, take(8).data(), 8);
    return v;
  }
  std::string str() { return std::string{take(u32())}; }
  char byte() { return take(1)[0]; }

 private:
  std::string_view take(std::size_t n) {
    if (in_.size() - at_ < n) {
      throw std::runtime_error("nudge.distributed: a shuffled block is truncated");
    }
    auto s = in_.substr(at_, n);
    at_ += n;
    return s;
  }
  std::string_view in_;
  std::size_t at_ = 0;
};

nudge::event get_event(reader& r) {
  nudge::event e;
  e.contact = r.str();
  e.type = r.str();
  e.key = r.str();
  e.ts = nudge::from_epoch(r.i64());
  const auto n = r.u32();
  for (std::uint32_t i = 0; i < n; ++i) {
    auto name = r.str();
    const char kind = r.byte();
    nudge::value v;
    switch (kind) {
      case 0:
        v = r.str();
        break;
      case 1:
        v = r.i64();
        break;
      case 2: {
        const auto bits = r.i64();
        double d = 0;
        std::memcpy(&d, &bits, 8);
        v = d;
        break;
      }
      case 3:
        v = r.byte() != 0;
        break;
      default:
        v = nudge::from_epoch(r.i64());
        break;
    }
    e.props.emplace(std::move(name), std::move(v));
  }
  return e;
}

// The bytes objects of `blocks` as views, without copying them: `blocks` holds them (immutable)
// for the whole call, also while the GIL is released.
std::vector<std::string_view> views_of(const py::list& blocks) {
  std::vector<std::string_view> views;
  for (auto b : blocks) {
    if (!PyBytes_Check(b.ptr())) {
      throw py::type_error("blocks must be bytes");
    }
    views.emplace_back(PyBytes_AS_STRING(b.ptr()),
                       static_cast<std::size_t>(PyBytes_GET_SIZE(b.ptr())));
  }
  return views;
}

// ---- Partitions --------------------------------------------------------------------------------

// The identity pass's answer: every id an identify event named, to its contact's canonical id
// (the smallest id of its merge group, bytewise), so that all ids of one contact share a
// partition. Ids not in it are their own canonical id.
using identity_map = std::unordered_map<std::string, std::string>;

identity_map to_identity_map(const py::object& identities) {
  identity_map m;
  if (identities.is_none()) {
    return m;
  }
  for (auto [k, v] : identities.cast<py::dict>()) {
    m.emplace(k.cast<std::string>(), v.cast<std::string>());
  }
  return m;
}

// XXH3 of the canonical id's bytes: the same on every machine and every run (never Python's
// salted hash()).
std::size_t partition_of(std::string_view id, const identity_map& ids, std::size_t partitions) {
  if (const auto it = ids.find(std::string{id}); it != ids.end()) {
    id = it->second;
  }
  return static_cast<std::size_t>(XXH3_64bits(id.data(), id.size()) % partitions);
}

nudge::file_format format_named(const std::string& format) {
  if (format == "csv") {
    return nudge::file_format::csv;
  }
  if (format == "jsonl") {
    return nudge::file_format::jsonl;
  }
  throw py::value_error(fmt::format("format must be \"csv\" or \"jsonl\", got \"{}\"", format));
}

py::tuple problem_tuple(const nudge::input_problem& p) {
  return py::make_tuple(p.line, p.to_string(), p.reason, py::bytes(p.text), p.file);
}

py::object time_or_none(const std::optional<nudge::time_point>& t) {
  return t ? py::object(py::int_(nudge::to_epoch(*t))) : py::object(py::none());
}

// One byte range of an event log (`text`: the header's `header_lines` lines, if any, then whole
// records whose first line is line `first_line` of the file), read with event_reader as `nudge
// replay` reads the file: the same checks and messages. Problems name `file_name` and the line
// in the whole file.
// Without `identities` (the identity pass) it returns the identify events' (contact, key); with
// them, the accepted events encoded per partition. The first refused line with on_error stop
// comes back as "error" rather than raised: the caller reports the earliest over all ranges.
py::dict scan_range(const nudge::program& program, const py::bytes& text_bytes,
                    const std::string& format, const std::string& file_name,
                    std::size_t header_lines, std::size_t first_line, const py::object& not_before,
                    const py::object& not_after, bool strict, bool skip,
                    const py::object& identities, std::size_t partitions) {
  std::string text = text_bytes.cast<std::string>();
  const bool shuffle = !identities.is_none();
  const auto ids = to_identity_map(identities);
  if (shuffle && partitions == 0) {
    throw py::value_error("partitions must be at least 1");
  }
  nudge::event_read_options options;
  options.program = &program;
  options.strict_columns = strict;
  if (!not_before.is_none()) {
    options.not_before = nudge::from_epoch(not_before.cast<std::int64_t>());
  }
  if (!not_after.is_none()) {
    options.not_after = nudge::from_epoch(not_after.cast<std::int64_t>());
  }
  std::vector<nudge::input_problem> rejects;
  std::optional<nudge::input_problem> error;
  auto relocate = [&](nudge::input_problem p) {
    if (p.line > header_lines) {
      p.line = p.line - header_lines - 1 + first_line;
    }
    // A range's "not before" stands for the previous ranges' last accepted event: say so as
    // the one-process reader does.
    constexpr std::string_view processed =
        ", the time already processed (events must be sorted by ts)";
    if (p.reason.ends_with(processed) && p.reason.starts_with("ts ")) {
      const auto before = p.reason.find(" is before ");
      if (before != std::string::npos) {
        const auto at = before + std::string_view{" is before "}.size();
        p.reason = fmt::format("{}the previous event's ts {} (events must be sorted by ts)",
                               p.reason.substr(0, at),
                               p.reason.substr(at, p.reason.size() - processed.size() - at));
      }
    }
    return p;
  };
  if (skip) {
    options.on_reject = [&](const nudge::input_problem& p) { rejects.push_back(relocate(p)); };
  }
  std::vector<std::pair<std::string, std::string>> identify;
  std::vector<std::string> parts(shuffle ? partitions : 0);
  std::size_t accepted = 0;
  std::optional<nudge::time_point> first;
  std::optional<nudge::time_point> last;
  {
    py::gil_scoped_release release;
    try {
      nudge::event_reader reader{std::move(text), format_named(format), file_name,
                                 std::move(options)};
      std::vector<nudge::event> batch;
      while (reader.read(batch, 1 << 14)) {
        if (!first && !batch.empty()) {
          first = batch.front().ts;
        }
        for (const auto& e : batch) {
          if (!shuffle) {
            if (e.type == nudge::event_types::identify && !e.key.empty() && e.key != e.contact) {
              identify.emplace_back(e.contact, e.key);
            }
          } else {
            put_event(parts[partition_of(e.contact, ids, partitions)], e);
          }
        }
      }
      accepted = reader.events_read();
      last = reader.last_time();
    } catch (const nudge::read_error& e) {
      error = relocate(e.problem());
      if (error->line == 0) {
        error->file = file_name;
      }
    }
  }
  py::dict out("events"_a = accepted, "first"_a = time_or_none(first),
               "last"_a = time_or_none(last));
  out["error"] = error ? py::object(problem_tuple(*error)) : py::object(py::none());
  py::list rej;
  for (const auto& p : rejects) {
    rej.append(problem_tuple(p));
  }
  out["rejects"] = rej;
  if (shuffle) {
    py::list blobs;
    for (const auto& p : parts) {
      blobs.append(py::bytes(p));
    }
    out["parts"] = blobs;
  } else {
    py::list pairs;
    for (const auto& [a, b] : identify) {
      pairs.append(py::make_tuple(py::bytes(a), py::bytes(b)));
    }
    out["identify"] = pairs;
  }
  return out;
}

// As nudge::replay merges the contacts' upsert with the first batch's actions: stably, each
// contact keeping its emission order.
void append(std::vector<nudge::due_action>& to, std::vector<nudge::due_action>&& from) {
  const auto middle = static_cast<std::ptrdiff_t>(to.size());
  const bool in_order = from.empty() || to.empty() || !nudge::due_order(from.front(), to.back());
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
  if (!in_order) {
    std::inplace_merge(to.begin(), to.begin() + middle, to.end(), nudge::due_order);
  }
}

py::dict delivery(const nudge::delivery_counts& c) {
  return py::dict("no_consent"_a = c.no_consent, "capped"_a = c.capped, "off_hours"_a = c.off_hours,
                  "deferred_cap"_a = c.deferred_cap, "deferred_hours"_a = c.deferred_hours);
}

// The contacts file as `nudge replay` reads it (the same checks; problems name `name`, the path
// as the user gave it, though the worker opens `path`), keeping the contacts `keep` accepts.
// `read` counts every contact read.
template <class Keep>
std::vector<nudge::contact> read_contacts(const nudge::program& program, const std::string& path,
                                          const std::string& name, bool skip,
                                          std::vector<nudge::input_problem>& rejects,
                                          std::size_t& read, Keep keep) {
  nudge::contact_read_options co{.program = &program};
  auto rename = [&](nudge::input_problem p) {
    if (p.file == path) {
      p.file = name;
    }
    return p;
  };
  if (skip) {
    co.on_reject = [&](const nudge::input_problem& p) { rejects.push_back(rename(p)); };
  }
  std::vector<nudge::contact> all;
  try {
    all = nudge::read_contacts(path, co);
  } catch (const nudge::read_error& e) {
    throw nudge::read_error(rename(e.problem()));
  }
  read = all.size();
  std::vector<nudge::contact> kept;
  for (auto& c : all) {
    if (keep(c.id)) {
      kept.push_back(std::move(c));
    }
  }
  return kept;
}

// One partition's replay: nudge::replay's loop (replay.cpp) on the partition's events (`blocks`,
// in the order of the log's ranges) and its contacts, with the instants the whole log decides:
// the contacts' upsert at the log's first event (`upsert_at`) and the ends `untils` (the first,
// then each extension of the default end, as the caller found them over all partitions).
py::dict replay_partition(const std::shared_ptr<nudge::program>& program, const py::list& blocks,
                          const std::string& contacts_path, const std::string& contacts_name,
                          const py::object& identities, std::size_t partition,
                          std::size_t partitions, const py::object& upsert_at,
                          const std::vector<std::int64_t>& untils, std::size_t batch_events,
                          bool skip, const std::string& time_format) {
  const auto data = views_of(blocks);
  const auto ids = to_identity_map(identities);
  std::optional<nudge::time_point> at;
  if (!upsert_at.is_none()) {
    at = nudge::from_epoch(upsert_at.cast<std::int64_t>());
  }
  if (untils.empty()) {
    throw py::value_error("untils must name at least one end");
  }
  const auto format = time_format == "epoch" ? nudge::time_format::epoch : nudge::time_format::iso;

  std::vector<nudge::input_problem> contact_rejects;
  std::size_t contacts_read = 0;
  std::vector<nudge::due_action> ready;
  std::ostringstream csv;
  std::vector<std::size_t> ends;
  nudge::pending_work pending;
  std::vector<nudge::rule_stats> stats;
  std::vector<nudge::workflow_stats> workflow_stats;
  std::size_t events = 0;
  {
    py::gil_scoped_release release;
    std::vector<nudge::contact> contacts;
    if (!contacts_path.empty()) {
      contacts = read_contacts(
          *program, contacts_path, contacts_name, skip, contact_rejects, contacts_read,
          [&](const std::string& id) { return partition_of(id, ids, partitions) == partition; });
    }
    nudge::memory_store store{{.undo = false}};
    nudge::engine eng{program, &store};
    if (!contacts.empty()) {
      if (at) {
        append(ready, eng.upsert_contacts(contacts, *at));
      } else {
        eng.upsert_contacts(contacts);  // the log has no events: no instant to evaluate them at
      }
      std::vector<nudge::contact>{}.swap(contacts);
    }
    const std::size_t step = batch_events > 0 ? batch_events : std::size_t{1} << 16;
    std::vector<nudge::event> pending_events;
    for (const auto& block : data) {
      reader r{block};
      while (!r.done()) {
        pending_events.push_back(get_event(r));
        ++events;
        if (batch_events > 0 && pending_events.size() >= step) {
          // As nudge::replay: every event before the latest instant, the clock just before it.
          const auto latest = pending_events.back().ts;
          const std::size_t cut = nudge::events_before_last_instant(pending_events);
          if (cut > 0) {
            append(ready, eng.process(std::span<const nudge::event>{pending_events.data(), cut},
                                      latest - nudge::seconds(1)));
            pending_events.erase(pending_events.begin(),
                                 pending_events.begin() + static_cast<std::ptrdiff_t>(cut));
          }
        }
      }
    }
    append(ready, eng.process(pending_events, nudge::from_epoch(untils.front())));
    for (std::size_t i = 1; i < untils.size(); ++i) {
      append(ready, eng.advance(nudge::from_epoch(untils[i])));
    }
    pending = nudge::find_pending_work(eng.store());
    stats = eng.stats();
    workflow_stats = eng.workflow_stats();
    // Each action's CSV line exactly as `nudge replay` writes it; the caller merges the
    // partitions' lines by (ts, contact).
    nudge::actions_csv_writer writer{csv, format};
    const auto header = static_cast<std::size_t>(csv.tellp());
    for (std::size_t i = 0; i < ready.size(); ++i) {
      writer.write(std::span<const nudge::due_action>{&ready[i], 1});
      ends.push_back(static_cast<std::size_t>(csv.tellp()) - header);
    }
  }
  // The actions as one block (ts, contact, CSV line each) for _distributed_merge: one bytes
  // object crosses the wire per partition, not a Python object per action.
  const std::string text = csv.str();
  const std::string_view lines = std::string_view{text}.substr(text.find('\n') + 1);
  std::string block;
  std::size_t begin = 0;
  for (std::size_t i = 0; i < ready.size(); ++i) {
    put_i64(block, nudge::to_epoch(ready[i].ts));
    put_str(block, ready[i].contact);
    put_str(block, lines.substr(begin, ends[i] - begin));
    begin = ends[i];
  }
  py::list rule_stats;
  for (const auto& s : stats) {
    rule_stats.append(py::dict("rule"_a = s.rule, "triggered"_a = s.triggered,
                               "passed"_a = s.passed, "failed"_a = s.failed,
                               "suppressed"_a = s.suppressed, "emitted"_a = s.emitted,
                               "delivery"_a = delivery(s.delivery),
                               "first"_a = time_or_none(s.first), "last"_a = time_or_none(s.last)));
  }
  py::list wf_stats;
  for (const auto& w : workflow_stats) {
    py::list steps;
    for (const auto& st : w.steps) {
      steps.append(py::dict("step"_a = st.step, "reached"_a = st.reached, "sent"_a = st.sent,
                            "opened"_a = st.opened, "clicked"_a = st.clicked,
                            "waiting"_a = st.waiting, "ended"_a = st.ended,
                            "first"_a = time_or_none(st.first), "last"_a = time_or_none(st.last),
                            "delivery"_a = delivery(st.delivery)));
    }
    wf_stats.append(py::dict(
        "workflow"_a = w.workflow, "entered"_a = w.entered, "completed"_a = w.completed,
        "exited"_a = w.exited, "ended"_a = w.ended, "sent"_a = w.sent, "opened"_a = w.opened,
        "clicked"_a = w.clicked, "active"_a = w.active, "first"_a = time_or_none(w.first),
        "last"_a = time_or_none(w.last), "delivery"_a = delivery(w.delivery), "steps"_a = steps));
  }
  py::list rej;
  for (const auto& p : contact_rejects) {
    rej.append(problem_tuple(p));
  }
  return py::dict(
      "actions"_a = py::bytes(block), "action_count"_a = ready.size(), "stats"_a = rule_stats,
      "workflow_stats"_a = wf_stats, "events"_a = events, "contacts_read"_a = contacts_read,
      "contact_rejects"_a = rej, "pending"_a = pending.timers,
      "last_pending"_a = pending.timers > 0 ? py::object(py::int_(nudge::to_epoch(pending.last)))
                                            : py::object(py::none()),
      "recurring"_a = pending.recurring);
}

// The partitions' action blocks merged k-way by (ts, contact) into `nudge replay`'s CSV (header
// included), written to `out_path`, or returned when it is empty. One contact lives in one
// partition, so equal keys come from one block, whose order (emission order) is kept.
py::object merge_actions(const py::list& blocks, const std::string& out_path) {
  const auto data = views_of(blocks);
  std::string out;
  {
    py::gil_scoped_release release;
    struct head {
      std::int64_t ts;
      std::string contact;
      std::string line;
      std::size_t from;
    };
    auto later = [](const head& a, const head& b) {
      return a.ts != b.ts             ? a.ts > b.ts
             : a.contact != b.contact ? a.contact > b.contact
                                      : a.from > b.from;
    };
    std::vector<reader> readers;
    std::vector<head> heap;
    for (std::size_t i = 0; i < data.size(); ++i) {
      readers.emplace_back(data[i]);
    }
    auto next = [&](std::size_t i) {
      if (!readers[i].done()) {
        head h;
        h.ts = readers[i].i64();
        h.contact = readers[i].str();
        h.line = readers[i].str();
        h.from = i;
        heap.push_back(std::move(h));
        std::push_heap(heap.begin(), heap.end(), later);
      }
    };
    for (std::size_t i = 0; i < readers.size(); ++i) {
      next(i);
    }
    out = "ts,contact,rule,action,arg\n";
    std::ofstream file;
    if (!out_path.empty()) {
      file.exceptions(std::ios::failbit | std::ios::badbit);
      file.open(out_path, std::ios::binary | std::ios::trunc);
    }
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      head h = std::move(heap.back());
      heap.pop_back();
      out += h.line;
      if (file.is_open() && out.size() > (1 << 20)) {
        file.write(out.data(), static_cast<std::streamsize>(out.size()));
        out.clear();
      }
      next(h.from);
    }
    if (file.is_open()) {
      file.write(out.data(), static_cast<std::streamsize>(out.size()));
      file.close();
      out.clear();
    }
  }
  if (!out_path.empty()) {
    return py::none();
  }
  return py::bytes(out);
}

// What a distributed replay cannot split by contact: round-robin owner counters run across
// contacts in the order one process sees them. Returns a description of each such action.
std::vector<std::string> cross_contact_state(const nudge::program& program) {
  std::vector<std::string> found;
  const auto& rs = program.rules();
  for (const auto& r : rs.rules) {
    for (const auto& a : r.actions) {
      if (a.kind == nudge::action_kind::assign_owner && a.pick == nudge::owner_pick::round_robin) {
        found.push_back(fmt::format("rule \"{}\"", r.id));
        break;
      }
    }
  }
  for (const auto& w : rs.workflows) {
    auto scan = [&](const auto& steps) {
      for (const auto& st : steps) {
        if (st.act.kind == nudge::action_kind::assign_owner &&
            st.act.pick == nudge::owner_pick::round_robin) {
          found.push_back(fmt::format("workflow \"{}\" step \"{}\"", w.id, st.id));
        }
      }
    };
    scan(w.steps);
    for (const auto& pv : w.previous_versions) {
      scan(pv.steps);
    }
  }
  return found;
}

}  // namespace

void register_distributed(py::module_& m) {
  m.def("_distributed_scan", &scan_range, "program"_a, "text"_a, "format"_a, "file_name"_a,
        "header_lines"_a, "first_line"_a, "not_before"_a, "not_after"_a, "strict"_a, "skip"_a,
        "identities"_a, "partitions"_a,
        "nudge.distributed: read one byte range of an event log (private).");
  m.def("_distributed_replay", &replay_partition, "program"_a, "blocks"_a, "contacts_path"_a,
        "contacts_name"_a, "identities"_a, "partition"_a, "partitions"_a, "upsert_at"_a, "untils"_a,
        "batch_events"_a, "skip"_a, "time_format"_a,
        "nudge.distributed: replay one partition (private).");
  m.def(
      "_distributed_check_contacts",
      [](const nudge::program& program, const std::string& path, const std::string& name) {
        // With on_error stop: the contacts file's first problem, raised, before any event's.
        std::vector<nudge::input_problem> rejects;
        std::size_t read = 0;
        py::gil_scoped_release release;
        read_contacts(program, path, name, false, rejects, read,
                      [](const std::string&) { return false; });
      },
      "program"_a, "path"_a, "name"_a,
      "nudge.distributed: read the contacts file, raising its first problem (private).");
  m.def("_distributed_merge", &merge_actions, "blocks"_a, "out_path"_a,
        "nudge.distributed: the partitions' actions merged into the CSV (private).");
  m.def(
      "_distributed_parse_until",
      [](const std::string& text) -> py::tuple {
        // `nudge replay --until`'s reading and messages (src/cli/common.cpp), "now" included:
        // the wall clock when the command starts (the command line's clock, not the engine's).
        if (text == "now") {
          const auto now =
              std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
          return py::make_tuple(static_cast<std::int64_t>(now.time_since_epoch().count()),
                                py::none());
        }
        nudge::time_error why = nudge::time_error::none;
        const auto t = nudge::parse_time(text, &why);
        if (t) {
          return py::make_tuple(nudge::to_epoch(*t), py::none());
        }
        return py::make_tuple(
            py::none(),
            why == nudge::time_error::out_of_range
                ? fmt::format("--until: \"{}\" is outside the supported range ({})", text,
                              nudge::input_range_text)
                : fmt::format(
                      "--until: \"{}\" is not an ISO-8601 time with offset, epoch seconds or now",
                      text));
      },
      "text"_a, "nudge.distributed: `nudge replay --until` (epoch, None) or (None, message).");
  m.def(
      "_distributed_epoch",
      [](const py::handle& t) { return nudge::to_epoch(to_time(t, "until")); }, "t"_a,
      "nudge.distributed: a time as Engine.replay's until reads it, in epoch seconds.");
  m.def(
      "_distributed_partition_of",
      [](const std::string& id, std::size_t partitions) {
        if (partitions == 0) {
          throw py::value_error("partitions must be at least 1");
        }
        return partition_of(id, {}, partitions);
      },
      "id"_a, "partitions"_a,
      "nudge.distributed: the partition of a canonical contact id (XXH3 of its bytes).");
  m.def("_distributed_cross_contact_state", &cross_contact_state, "program"_a,
        "nudge.distributed: the rules and workflow steps whose state spans contacts (round-robin "
        "owner picks).");
}

}  // namespace nudge_py
