// The system time zone database (zoneinfo): the POSIX rule at the end of each TZif file, and
// every zone of a directory read once per process. The only zone code that touches files; the
// core (src/core/compile/time_zones.cpp) calls it through src/core/compile/compile.hpp.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include <nudge/delivery.hpp>

#include "../../core/compile/compile.hpp"

namespace nudge {

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

namespace detail {

// Every zone of a system database: name -> rule, read once per directory per process (the
// database does not change under a running program; compiling many programs reads it once).
std::shared_ptr<const zone_map> system_zones(const std::string& dir) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const zone_map>> cache;
  const std::lock_guard lock{mutex};
  if (auto it = cache.find(dir); it != cache.end()) {
    return it->second;
  }
  auto zones = std::make_shared<zone_map>();
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it{dir, fs::directory_options::skip_permission_denied, ec};
  for (; !ec && it != fs::recursive_directory_iterator{}; it.increment(ec)) {
    const auto name = it->path().lexically_relative(dir).generic_string();
    // posix/ and right/ are copies (right/ with leap seconds, which nudge's UTC has none of).
    if (it->is_directory() && (name == "posix" || name == "right")) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) {
      continue;
    }
    if (auto rule = read_system_zone_rule(name, dir)) {
      if (auto z = zone_rules::parse(*rule)) {
        zones->emplace(name, std::move(*z));
      }
    }
  }
  cache.emplace(dir, zones);
  return zones;
}

}  // namespace detail
}  // namespace nudge
