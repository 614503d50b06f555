// Runs every scenario in examples/rules/: loads <name>.rules.json, applies <name>.contacts.csv
// (if any) and <name>.events.csv, and compares the actions with <name>.expected.csv.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/io/load_rules.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/nudge.hpp>

namespace {

const std::filesystem::path examples_dir =
    std::filesystem::path{NUDGE_SOURCE_DIR} / "examples" / "rules";

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> out{{}};
  for (char c : line) {
    if (c == sep) {
      out.emplace_back();
    } else {
      out.back() += c;
    }
  }
  return out;
}

// Lines of a file without line ends; REQUIREs that it starts with `header`.
std::vector<std::string> read_lines(const std::filesystem::path& p, const std::string& header) {
  std::ifstream in(p);
  REQUIRE(in);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    lines.push_back(line);
  }
  REQUIRE(!lines.empty());
  REQUIRE(lines.front() == header);
  lines.erase(lines.begin());
  return lines;
}

// The W1 event format: ts,contact,type,key,value (value: the purchase amount, or empty), and
// optionally lat,lon: the event's location props (empty: none).
std::vector<nudge::event> read_events(const std::filesystem::path& p) {
  std::vector<nudge::event> events;
  std::string header;
  {
    std::ifstream in(p);
    REQUIRE(std::getline(in, header));
  }
  REQUIRE((header == "ts,contact,type,key,value" || header == "ts,contact,type,key,value,lat,lon"));
  const std::size_t columns = split(header, ',').size();
  for (const auto& line : read_lines(p, header)) {
    const auto f = split(line, ',');
    REQUIRE(f.size() == columns);
    nudge::event e{
        .contact = f[1], .type = f[2], .ts = nudge::from_epoch(std::stoll(f[0])), .key = f[3]};
    if (!f[4].empty()) {
      e.props["value"] = std::stod(f[4]);
    }
    if (columns == 7 && !f[5].empty()) {
      e.props["lat"] = std::stod(f[5]);
      e.props["lon"] = std::stod(f[6]);
    }
    events.push_back(std::move(e));
  }
  return events;
}

// contact,status,stage, then text details by name (company, language, birthday, country, ...),
// as the CLI's contacts reader does; empty fields are left unset. Two columns are not details:
// time_zone sets the contact's zone and consent lists its consented channels separated by ';'.
std::vector<nudge::contact> read_contacts(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string header;
  REQUIRE(std::getline(in, header));
  const auto columns = split(header, ',');
  REQUIRE(columns.size() >= 3);
  REQUIRE(header.starts_with("contact,status,stage"));
  std::vector<nudge::contact> contacts;
  for (const auto& line : read_lines(p, header)) {
    const auto f = split(line, ',');
    REQUIRE(f.size() == columns.size());
    nudge::contact c{.id = f[0]};
    if (!f[1].empty()) {
      c.status = f[1];
    }
    c.stage = f[2];
    for (std::size_t i = 3; i < f.size(); ++i) {
      if (columns[i] == "lat" || columns[i] == "lon") {
        if (!f[i].empty()) {
          auto& here = c.location ? *c.location : c.location.emplace();
          (columns[i] == "lat" ? here.lat : here.lon) = std::stod(f[i]);
        }
      } else if (columns[i] == "time_zone") {
        c.time_zone = f[i];
      } else if (columns[i] == "consent") {
        for (const auto& channel : split(f[i], ';')) {
          if (!channel.empty()) {
            c.consent[channel] = true;
          }
        }
      } else if (!f[i].empty()) {
        c.details[columns[i]] = f[i];
      }
    }
    contacts.push_back(std::move(c));
  }
  return contacts;
}

std::vector<std::string> run_scenario(const std::string& name) {
  const auto program = nudge::load_rules_file((examples_dir / (name + ".rules.json")).string());
  nudge::engine engine{program};
  const auto events = read_events(examples_dir / (name + ".events.csv"));
  REQUIRE(!events.empty());
  // The contacts at the log's first event, as nudge replay loads them.
  std::vector<nudge::due_action> actions;
  const auto contacts_path = examples_dir / (name + ".contacts.csv");
  if (std::filesystem::exists(contacts_path)) {
    actions = engine.upsert_contacts(read_contacts(contacts_path), events.front().ts);
  }
  // The end nudge replay takes by default: the longest delay, then on to the latest pending
  // timer (deferred messages, segment edges, ...) until none is left.
  auto until = events.back().ts + program->longest_delay();
  for (auto& a : engine.process(events, until)) {
    actions.push_back(std::move(a));
  }
  for (auto left = nudge::find_pending_work(engine.store()); left.timers > 0;
       left = nudge::find_pending_work(engine.store())) {
    for (auto& a : engine.advance(left.last)) {
      actions.push_back(std::move(a));
    }
  }
  std::stable_sort(actions.begin(), actions.end(), nudge::due_order);
  std::vector<std::string> lines;
  for (const auto& a : actions) {
    // A workflow step's action names "workflow/step" in the rule column.
    lines.push_back(fmt::format("{},{},{}{}{},{},{}", nudge::to_epoch(a.ts), a.contact, a.rule,
                                a.from_workflow() ? "/" : "", a.step, a.action(), a.arg));
  }
  return lines;
}

}  // namespace

TEST_CASE("examples: every rule-file scenario produces its expected actions", "[examples]") {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(examples_dir)) {
    const std::string file = entry.path().filename().string();
    const std::string suffix = ".rules.json";
    if (file.size() > suffix.size() && file.ends_with(suffix)) {
      names.push_back(file.substr(0, file.size() - suffix.size()));
    }
  }
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"cart_by_event",
                                          "cart_by_url",
                                          "coupon",
                                          "delivery_policy",
                                          "education",
                                          "geo_campaign",
                                          "lead_assignment",
                                          "lifecycle",
                                          "months_recheck",
                                          "reactivation_purchase",
                                          "reactivation_url",
                                          "restaurant_loyalty",
                                          "wf_abandoned_cart",
                                          "wf_best_customer",
                                          "wf_birthday",
                                          "wf_first_purchase_feedback",
                                          "wf_geolocation",
                                          "wf_reactivation",
                                          "wf_replenishment",
                                          "wf_upsell",
                                          "wf_welcome_series"});
  for (const auto& name : names) {
    INFO("scenario " << name);
    const auto expected =
        read_lines(examples_dir / (name + ".expected.csv"), "ts,contact,rule,action,arg");
    CHECK(run_scenario(name) == expected);
  }
}
