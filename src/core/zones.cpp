// Time zones as data (nudge/zones.hpp): a zone's table of historical offsets with the POSIX
// rule beyond it (Boost.Date_Time's posix_time_zone reads the rule), and the zone database a
// provider hands to program::compile. No I/O: the system's database is read by
// src/io/zones/system_zones.cpp.
#include <algorithm>
#include <cctype>
#include <stdexcept>

#include <boost/date_time/local_time/posix_time_zone.hpp>
#include <boost/date_time/posix_time/posix_time.hpp>

#include <nudge/zones.hpp>

#include "byte_writer.hpp"

namespace nudge {

struct zone_rules::impl {
  std::int32_t initial = 0;
  std::vector<zone_transition> table;
  // The POSIX rule (absent: a table whose last offset holds).
  std::optional<boost::local_time::posix_time_zone> zone;
  std::int64_t base_seconds = 0;
  std::int64_t dst_seconds = 0;
  bool has_dst = false;

  std::int64_t rule_offset(std::int64_t s) const;
};

namespace {

// Rewrites a POSIX TZ rule into the form Boost's posix_time_zone reads. Two differences:
// abbreviations may be quoted in POSIX ("<+03>-3") but Boost reads letters only (the
// abbreviation carries nothing we use, so they become STD / DST); and Boost takes offsets with
// the ISO sign (east of Greenwich positive), the opposite of POSIX ("CET-1" is UTC+1).
// nullopt if the text does not have the shape name offset [name [offset]] [,rule].
std::optional<std::string> to_boost_form(std::string_view posix) {
  std::string out;
  std::size_t i = 0;
  auto name = [&](std::string_view replacement) {
    if (i < posix.size() && posix[i] == '<') {
      const auto close = posix.find('>', i);
      if (close == std::string_view::npos) {
        return false;
      }
      i = close + 1;
      out += replacement;
      return true;
    }
    const std::size_t start = i;
    while (i < posix.size() && std::isalpha(static_cast<unsigned char>(posix[i])) != 0) {
      ++i;
    }
    if (i - start < 3) {
      return false;
    }
    out.append(posix.substr(start, i - start));
    return true;
  };
  auto offset = [&] {
    char sign = '-';  // unsigned POSIX offsets are west of Greenwich: negative in ISO
    if (i < posix.size() && (posix[i] == '+' || posix[i] == '-')) {
      sign = posix[i] == '+' ? '-' : '+';
      ++i;
    }
    const std::size_t start = i;
    while (i < posix.size() &&
           (std::isdigit(static_cast<unsigned char>(posix[i])) != 0 || posix[i] == ':')) {
      ++i;
    }
    if (i == start) {
      return false;
    }
    out += sign;
    out.append(posix.substr(start, i - start));
    return true;
  };
  if (!name("STD") || !offset()) {
    return std::nullopt;
  }
  if (i < posix.size() && posix[i] != ',') {
    if (!name("DST")) {
      return std::nullopt;
    }
    if (i < posix.size() && posix[i] != ',' && !offset()) {
      return std::nullopt;
    }
  }
  out.append(posix.substr(i));
  return out;
}

std::int64_t to_seconds(const boost::posix_time::time_duration& d) {
  return static_cast<std::int64_t>(d.total_seconds());
}

std::int64_t epoch_of(const boost::posix_time::ptime& t) {
  static const boost::posix_time::ptime epoch{boost::gregorian::date{1970, 1, 1}};
  return to_seconds(t - epoch);
}

}  // namespace

std::int64_t zone_rules::impl::rule_offset(std::int64_t s) const {
  if (!has_dst) {
    return base_seconds;
  }
  // The UTC year of s; transitions lie months away from new year in every real zone, so the
  // local year and the UTC year agree wherever it matters.
  const auto year = static_cast<unsigned short>(
      boost::posix_time::from_time_t(static_cast<std::time_t>(s)).date().year());
  const std::int64_t start = epoch_of(zone->dst_local_start_time(year)) - base_seconds;
  const std::int64_t end = epoch_of(zone->dst_local_end_time(year)) - base_seconds - dst_seconds;
  const bool in_dst = start < end ? (s >= start && s < end) : (s >= start || s < end);
  return base_seconds + (in_dst ? dst_seconds : 0);
}

std::optional<zone_rules> zone_rules::parse(std::string_view posix) {
  if (posix.empty()) {
    return std::nullopt;
  }
  try {
    const auto boost_form = to_boost_form(posix);
    if (!boost_form) {
      return std::nullopt;
    }
    auto i = std::make_shared<impl>();
    const auto& zone = i->zone.emplace(*boost_form);
    i->base_seconds = to_seconds(zone.base_utc_offset());
    i->has_dst = zone.has_dst();
    i->dst_seconds = i->has_dst ? to_seconds(zone.dst_offset()) : 0;
    if (i->has_dst) {
      // Probe the rule once: Boost throws on impossible dates only when asked for them.
      (void)zone.dst_local_start_time(2024);
      (void)zone.dst_local_end_time(2024);
    }
    zone_rules z;
    z.posix_ = std::string{posix};
    z.impl_ = std::move(i);
    return z;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

zone_rules zone_rules::with_history(std::int32_t initial_offset_seconds,
                                    std::vector<zone_transition> transitions,
                                    std::optional<zone_rules> after) {
  for (std::size_t i = 1; i < transitions.size(); ++i) {
    if (transitions[i].at <= transitions[i - 1].at) {
      throw std::invalid_argument("zone_rules::with_history: transitions not in ascending order");
    }
  }
  auto i = std::make_shared<impl>();
  zone_rules z;
  if (after) {
    if (!after->impl_->table.empty()) {
      throw std::invalid_argument("zone_rules::with_history: `after` must be a POSIX rule");
    }
    *i = *after->impl_;
    z.posix_ = after->posix_;
  }
  i->initial = initial_offset_seconds;
  i->table = std::move(transitions);
  z.impl_ = std::move(i);
  return z;
}

duration zone_rules::utc_offset(time_point t) const {
  const impl& z = *impl_;
  const std::int64_t s = to_epoch(t);
  if (!z.table.empty() && (!z.zone || s < z.table.back().at)) {
    // The last transition at or before s; before the first, the initial offset.
    const auto it =
        std::upper_bound(z.table.begin(), z.table.end(), s,
                         [](std::int64_t x, const zone_transition& tr) { return x < tr.at; });
    return duration{it == z.table.begin() ? z.initial : std::prev(it)->offset_seconds};
  }
  if (!z.zone) {
    return duration{z.initial};
  }
  return duration{z.rule_offset(s)};
}

std::int32_t zone_rules::initial_offset_seconds() const noexcept {
  return impl_->initial;
}

std::span<const zone_transition> zone_rules::transitions() const noexcept {
  return impl_->table;
}

zone_database::zone_database(std::vector<std::pair<std::string, zone_rules>> zones,
                             std::string source)
    : source_(std::move(source)) {
  std::vector<const std::pair<std::string, zone_rules>*> order;
  order.reserve(zones.size());
  for (const auto& z : zones) {
    order.push_back(&z);
  }
  // Name order, first of a repeated name kept: the digest does not depend on how the provider
  // listed its zones.
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return a->first < b->first; });
  std::uint64_t h = fnv1a64({});
  std::string bytes;
  for (const auto* z : order) {
    if (!zones_.emplace(z->first, z->second).second) {
      continue;
    }
    bytes.clear();
    {
      byte_codec::writer w{bytes};
      w.str(z->first);
      w.i32(z->second.initial_offset_seconds());
      w.count(z->second.transitions().size());
      for (const auto& t : z->second.transitions()) {
        w.i64(t.at);
        w.i32(t.offset_seconds);
      }
      w.str(z->second.posix());
    }
    h = fnv1a64(bytes, h);
  }
  digest_ = h;
}

const zone_rules* zone_database::find(std::string_view name) const {
  const auto it = zones_.find(name);
  return it == zones_.end() ? nullptr : &it->second;
}

}  // namespace nudge
