// tests/support.hpp: fixtures shared by the Catch2 tests.
//
// A test file takes what it uses with using-declarations (`using test_support::ev;`), so a file
// with a fixture of its own under the same name (a different `lines` format, say) keeps it.
#pragma once

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <unistd.h>

#include <nudge/nudge.hpp>

namespace test_support {

using strings = std::vector<std::string>;

// The tests' origin of time: 2024-01-01T00:00:00Z, a Monday.
inline const nudge::time_point t0 = nudge::from_epoch(1'704'067'200);

// An event of `contact`.
inline nudge::event ev(std::string contact, std::string type, nudge::time_point at,
                       std::string key = {}) {
  return nudge::event{
      .contact = std::move(contact), .type = std::move(type), .ts = at, .key = std::move(key)};
}

// An event of one contact, "ann" unless given.
inline nudge::event ev(std::string type, nudge::time_point at, std::string key = {},
                       std::string contact = "ann") {
  return ev(std::move(contact), std::move(type), at, std::move(key));
}

// `e` with a numeric property.
inline nudge::event with(nudge::event e, std::string prop, double v) {
  e.props[std::move(prop)] = v;
  return e;
}

// A time as the tests write it (2024-01-01T00:00:00Z), and back.
inline std::string at(nudge::time_point t) {
  return nudge::format_time(t);
}
inline nudge::time_point at(const char* iso) {
  return *nudge::parse_time(iso);
}

// "time contact source verb(arg)" per due action; a workflow step's source is "workflow/step".
inline strings lines(const std::vector<nudge::due_action>& actions) {
  strings out;
  for (const auto& a : actions) {
    out.push_back(fmt::format("{} {} {}{}{} {}({})", nudge::format_time(a.ts), a.contact, a.rule,
                              a.from_workflow() ? "/" : "", a.step, a.action(), a.arg));
  }
  return out;
}

// A directory of its own under the system's temporary directory, removed with everything in it
// when the test ends: files for the readers and replay to read.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    static std::atomic<int> count{0};
    path = std::filesystem::temp_directory_path() /
           fmt::format("nudge_test_{}_{}", ::getpid(), count++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~temp_dir() { std::filesystem::remove_all(path); }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  // Writes `text` to the file `name` in it; returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    auto p = path / name;
    std::ofstream{p, std::ios::binary} << text;
    return p.string();
  }
  std::string read(const std::string& name) const {
    std::ifstream in{path / name, std::ios::binary};
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

// A replay's actions as `nudge replay` writes them (CSV, epoch seconds unless told).
inline std::string csv(const nudge::replay_result& r,
                       nudge::time_format f = nudge::time_format::epoch) {
  std::ostringstream out;
  nudge::write_actions_csv(out, r.actions, f);
  return out.str();
}

// A program of `segments`, with rules e-mailing "in_<segment>" / "out_<segment>" on every
// membership change, then `extra`; the event types "app_session" and "probe" are declared.
inline std::shared_ptr<const nudge::program> compile(std::vector<nudge::segment> segments,
                                                     std::vector<nudge::rule> extra = {},
                                                     nudge::scoring scoring = {},
                                                     nudge::name_map<strings> owner_groups = {}) {
  nudge::rule_set rs;
  for (const auto& s : segments) {
    rs.rules.push_back(nudge::rule_builder("enter_" + s.name)
                           .on(nudge::on_segment_entered(s.name))
                           .then(nudge::send_email("in_" + s.name)));
    rs.rules.push_back(nudge::rule_builder("exit_" + s.name)
                           .on(nudge::on_segment_exited(s.name))
                           .then(nudge::send_email("out_" + s.name)));
  }
  rs.rules.insert(rs.rules.end(), extra.begin(), extra.end());
  rs.segments = std::move(segments);
  rs.scoring = std::move(scoring);
  rs.owner_groups = std::move(owner_groups);
  rs.event_types = {"app_session", "probe"};
  return nudge::program::compile(std::move(rs));
}

}  // namespace test_support
