// The default zone provider: the system's tz database read with date/tz.h (its OS-database
// build, USE_OS_TZDB: the binary files under /usr/share/zoneinfo, no download), turned into the
// plain tables of nudge/zones.hpp that the core evaluates without I/O.
#include <chrono>
#include <fstream>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <date/tz.h>
#include <fmt/format.h>

#include <nudge/io/zones.hpp>

namespace nudge {

// date/tz.h's OS build reads this directory (its discover_tz_dir on Linux); the rule after the
// last transition comes from the same files.
constexpr std::string_view system_dir = "/usr/share/zoneinfo";

std::optional<std::string> read_system_zone_rule(std::string_view name,
                                                 std::string_view zoneinfo_dir) {
  if (name.empty() || name.find("..") != std::string_view::npos || name.front() == '/') {
    return std::nullopt;
  }
  std::ifstream in(std::string{zoneinfo_dir} + "/" + std::string{name}, std::ios::binary);
  if (!in) {
    return std::nullopt;
  }
  const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // TZif version 2+ ends with "\n<POSIX rule>\n".
  if (bytes.size() < 6 || bytes.compare(0, 4, "TZif") != 0 || bytes.back() != '\n' ||
      bytes[4] < '2') {
    return std::nullopt;
  }
  const auto open = bytes.rfind('\n', bytes.size() - 2);
  if (open == std::string::npos) {
    return std::nullopt;
  }
  std::string rule = bytes.substr(open + 1, bytes.size() - open - 2);
  if (rule.empty()) {
    return std::nullopt;
  }
  return rule;
}

namespace {

// One zone over nudge's range: date/tz.h's offsets from min_time to the last transition its
// file lists (date holds the last offset after that, which is wrong for a zone that still
// observes daylight saving), then the file's POSIX rule.
zone_rules table_of(const date::time_zone& z) {
  using std::chrono::seconds;
  const date::sys_seconds first{seconds{to_epoch(min_time)}};
  const date::sys_seconds last{seconds{to_epoch(max_time)}};
  date::sys_info info = z.get_info(first);
  const auto initial = static_cast<std::int32_t>(info.offset.count());
  std::vector<zone_transition> table;
  std::int32_t current = initial;
  while (info.end <= last) {
    info = z.get_info(info.end);
    const auto offset = static_cast<std::int32_t>(info.offset.count());
    // Only the offset is read: a change of abbreviation or of the DST flag alone is no change.
    if (offset != current) {
      table.push_back({info.begin.time_since_epoch().count(), offset});
      current = offset;
    }
  }
  std::optional<zone_rules> after;
  if (auto rule = read_system_zone_rule(z.name(), system_dir)) {
    after = zone_rules::parse(*rule);
  }
  return zone_rules::with_history(initial, std::move(table), std::move(after));
}

std::shared_ptr<const zone_database> read_database() {
  std::vector<std::pair<std::string, zone_rules>> zones;
  try {
    const date::tzdb& db = date::get_tzdb();
    zones.reserve(db.zones.size());
    for (const date::time_zone& z : db.zones) {
      // "localtime" names the host's own zone (a link to /etc/localtime), not a place: a
      // contact naming it would get whatever the machine is set to.
      if (z.name() != "localtime") {
        zones.emplace_back(z.name(), table_of(z));
      }
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(
        fmt::format("cannot read the system time zone database ({}): {}", system_dir, e.what()));
  }
  return std::make_shared<const zone_database>(
      std::move(zones), fmt::format("the system time zone database ({})", system_dir));
}

class system_provider final : public zone_provider {
 public:
  std::shared_ptr<const zone_database> zones() const override {
    // Read once per process: the database does not change under a running program, and
    // compiling many programs then reads it once. A failure is not cached: the next compile
    // tries again.
    const std::lock_guard lock{mutex_};
    if (!zones_) {
      zones_ = read_database();
    }
    return zones_;
  }

 private:
  mutable std::mutex mutex_;
  mutable std::shared_ptr<const zone_database> zones_;
};

}  // namespace

std::shared_ptr<const zone_provider> system_zones() {
  static const auto provider = std::make_shared<const system_provider>();
  return provider;
}

}  // namespace nudge
