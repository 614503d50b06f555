// The snapshot file (docs/snapshot.md): taking, encoding, writing (atomically), parsing,
// reading and loading a whole engine state. The contact states' codec is states.cpp.
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

using snapshot_codec::decode_state;
using snapshot_codec::reader;
using snapshot_codec::writer;

namespace {

constexpr std::string_view magic = "NUDGSNAP";

}  // namespace

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
    // A rule's, a workflow's and a step's delivery counts: five u64 in this order.
    auto delivery_counts = [&w](const nudge::delivery_counts& d) {
      for (auto n : {d.no_consent, d.capped, d.off_hours, d.deferred_cap, d.deferred_hours}) {
        w.u64(n);
      }
    };
    w.count(s.stats.size());
    for (const auto& r : s.stats) {
      w.str(r.rule);
      w.u64(r.triggered);
      w.u64(r.passed);
      w.u64(r.failed);
      w.u64(r.suppressed);
      w.u64(r.emitted);
      delivery_counts(r.delivery);
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
    w.u64(fnv1a64(w.out()));  // the written bytes, without the writer's slack
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
      for (auto* c : {&st.delivery.no_consent, &st.delivery.capped, &st.delivery.off_hours,
                      &st.delivery.deferred_cap, &st.delivery.deferred_hours}) {
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
  const std::uint64_t computed = fnv1a64(bytes.substr(0, sum_at));
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
