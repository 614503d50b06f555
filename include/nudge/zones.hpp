// nudge/zones.hpp: time zones as plain data, and the zone provider a host hands to
// program::compile.
//
// A program reads local time (quiet hours, send windows, weekdays, time-of-day and date waits,
// calendar months) on each contact's clock. The zones come from the host, like the store and
// the sink: program::compile asks the provider once for its zone database and keeps it, so
// evaluation never reads a file and a program behaves the same wherever it runs, given the same
// zone data. The default provider, nudge::system_zones() (nudge/io/zones.hpp), reads the
// system's tz database with its historical transitions; a host may pass its own (a pinned
// tzdata, zones from a database, a test's fixed zones) or none.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nudge/detail/string_map.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// From `at` (seconds since the epoch, UTC) on, local wall time is UTC + offset_seconds.
struct zone_transition {
  std::int64_t at = 0;
  std::int32_t offset_seconds = 0;
  friend bool operator==(const zone_transition&, const zone_transition&) = default;
};

/// One zone's rules: a table of UTC offsets by instant (the historical transitions), and a
/// POSIX TZ rule for the instants after the table's last transition (the zone's current rules,
/// repeated yearly). A zone parsed from a POSIX rule alone has no table: the rule holds at every
/// instant. Immutable; copies share their data.
class zone_rules {
 public:
  /// Parses a POSIX TZ rule; nullopt if it is not one (e.g. "CET-1CEST,M3.5.0,M10.5.0/3").
  static std::optional<zone_rules> parse(std::string_view posix);
  /// A zone with history: `initial_offset_seconds` before the first transition, each
  /// transition's offset from its instant on, and from the last transition on `after` (its
  /// current rules; nullopt: the last offset holds forever).
  /// @throws std::invalid_argument if the transitions are not in strictly ascending order.
  static zone_rules with_history(std::int32_t initial_offset_seconds,
                                 std::vector<zone_transition> transitions,
                                 std::optional<zone_rules> after);
  /// UTC offset in effect at `t` (local wall time = t + offset).
  duration utc_offset(time_point t) const;
  /// The POSIX rule for instants after the table ("" for a table whose last offset holds).
  const std::string& posix() const noexcept { return posix_; }
  /// The offset before the first transition (with no table: 0; the POSIX rule holds).
  std::int32_t initial_offset_seconds() const noexcept;
  /// The historical transitions, ascending (empty for a zone parsed from a POSIX rule).
  std::span<const zone_transition> transitions() const noexcept;

  struct impl;

 private:
  std::string posix_;
  std::shared_ptr<const impl> impl_;
};

/// Zones by name (IANA-style, "Europe/Warsaw"): what a zone provider hands to a program.
/// Immutable once built; programs compiled with it share it.
class zone_database {
 public:
  zone_database() = default;
  /// `source` says where the zones come from in messages (e.g. "the system time zone database
  /// (/usr/share/zoneinfo)"). A repeated name keeps its first rules.
  zone_database(std::vector<std::pair<std::string, zone_rules>> zones, std::string source);

  /// The zone named `name`, or nullptr.
  const zone_rules* find(std::string_view name) const;
  std::size_t size() const noexcept { return zones_.size(); }
  const std::string& source() const noexcept { return source_; }
  /// A 64-bit FNV-1a hash of every name with its table and rule, in name order: equal zone data
  /// gives equal digests on every platform. The program fingerprint includes it, so that state
  /// saved under one tzdata is not resumed under different zone data (nudge/program.hpp).
  std::uint64_t digest() const noexcept { return digest_; }

 private:
  detail::string_map<zone_rules> zones_;
  std::string source_;
  std::uint64_t digest_ = 0;
};

/// Where a program's named zones come from. program::compile calls zones() once, when the rules
/// read local time and their `use_system_zones` is true, and keeps the database it returns: the
/// provider is never called during evaluation.
///
/// Example (a host's own zones):
///
///     struct my_zones : nudge::zone_provider {
///       std::shared_ptr<const nudge::zone_database> zones() const override {
///         return std::make_shared<nudge::zone_database>(
///             std::vector<std::pair<std::string, nudge::zone_rules>>{
///                 {"Europe/Warsaw", *nudge::zone_rules::parse("CET-1CEST,M3.5.0,M10.5.0/3")}},
///             "my zones");
///       }
///     };
///     auto program = nudge::program::compile(rules, {}, std::make_shared<my_zones>());
///
/// Thread-safety: zones() may be called from several threads at once.
class zone_provider {
 public:
  virtual ~zone_provider() = default;
  /// Every zone the provider offers.
  /// @throws std::exception when the zones cannot be read (the compile fails with it).
  virtual std::shared_ptr<const zone_database> zones() const = 0;
};

}  // namespace nudge
