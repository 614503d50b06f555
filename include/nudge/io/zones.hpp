// nudge/io/zones.hpp: the default zone provider, the system's time zone database.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nudge/zones.hpp>

namespace nudge {

/// The default zone provider (nudge/zones.hpp): every zone of the system's tz database
/// (/usr/share/zoneinfo, Debian's tzdata), read with Howard Hinnant's date/tz.h, which reads
/// those files and never the network. Each zone keeps its historical transitions (e.g.
/// Europe/Moscow: +04 all year 2011-2014, +03 since), and the rule at the end of its TZif file
/// for the instants after the last transition the file lists. The database is read once per
/// process, at the first compile that needs it, and shared by every program; a tzdata update
/// is seen by the next process. load_rules and load_rules_file pass this provider by default.
/// Its zones() throws std::runtime_error naming the directory if the database cannot be read.
std::shared_ptr<const zone_provider> system_zones();

/// The POSIX rule at the end of the system's TZif file for `name` under `zoneinfo_dir` (e.g.
/// "Europe/Warsaw" -> "CET-1CEST,M3.5.0,M10.5.0/3"), or nullopt if there is no such zone or no
/// rule. Reads a file.
std::optional<std::string> read_system_zone_rule(std::string_view name,
                                                 std::string_view zoneinfo_dir);

}  // namespace nudge
