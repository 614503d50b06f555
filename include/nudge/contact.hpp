// nudge/contact.hpp: a contact's profile as the host and the rules see it.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <boost/container/flat_map.hpp>
#include <boost/container/flat_set.hpp>

#include <nudge/geo.hpp>
#include <nudge/time.hpp>
#include <nudge/value.hpp>

namespace nudge {

/// Ordered maps with heterogeneous lookup, small and cache-friendly for the handful of entries a
/// contact has.
template <class Value>
using name_map = boost::container::flat_map<std::string, Value, std::less<>>;
using name_set = boost::container::flat_set<std::string, std::less<>>;

/// A contact's profile: everything a condition can read besides its event history.
///
/// Example:
///
///     nudge::contact c{.id = "c42"};
///     c.details["company"] = std::string{"Ekomed"};
///     c.status = "customer";
struct contact {
  std::string id;               ///< the host's key, unique per contact
  name_map<value> details;      ///< typed details: "company", "language", "birthday", ...
  name_map<time_point> tags;    ///< tag -> when it was added
  double score = 0;             ///< lead score; add_score actions change it
  std::string owner;            ///< the sales rep who owns the contact; empty: none
  std::string status = "lead";  ///< "lead", "customer" or a custom status
  std::string stage;            ///< lifecycle / campaign stage; empty: none
  name_map<bool> consent;       ///< channel ("email", "sms", "web_push") -> granted
  std::string time_zone;        ///< IANA name, e.g. "Europe/Warsaw"; empty: the default zone
  name_set groups;              ///< group memberships
  /// Where the contact is (geo.hpp); none: unknown. Events with props `lat` / `lon` move it.
  std::optional<geo_point> location;

  bool has_tag(std::string_view tag) const { return tags.find(tag) != tags.end(); }
  bool in_group(std::string_view group) const { return groups.find(group) != groups.end(); }
  /// The detail's value, or nullptr if the contact has no such detail.
  const value* detail(std::string_view name) const {
    auto it = details.find(name);
    return it == details.end() ? nullptr : &it->second;
  }

  friend bool operator==(const contact&, const contact&) = default;
};

}  // namespace nudge
