// nudge/geo.hpp: locations on the Earth, distances, and named areas.
//
// A contact has a location (contact::location) that the host sets in the profile (contacts
// file columns `lat` / `lon`, upsert) or with any event carrying the numeric props `lat` and
// `lon` (event_props below). Conditions test it against a circle (`near`) or against the
// previous location (`moved`); named areas (rule_set::areas) raise `area_entered` /
// `area_exited` when the location moves into or out of them (docs/rules.md, "Location").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nudge {

/// A point in WGS84 degrees: latitude -90 to 90 (north positive), longitude -180 to 180 (east
/// positive).
struct geo_point {
  double lat = 0;
  double lon = 0;
  friend bool operator==(const geo_point&, const geo_point&) = default;
};

/// The Earth's mean radius in km (IUGG, of the WGS84 ellipsoid): the sphere distances use.
inline constexpr double earth_radius_km = 6371.0088;

/// Great-circle distance in km by the haversine formula on a sphere of earth_radius_km. Off
/// from the ellipsoidal distance by at most ~0.5 %: fine for "within 5 km of the shop".
double distance_km(geo_point a, geo_point b) noexcept;

/// Why (lat, lon) is not a valid point ("latitude 91 is outside -90 to 90"), or nullopt.
std::optional<std::string> geo_problem(double lat, double lon);

/// A named circle: `radius_km` around `center`. A point at exactly the radius is inside.
struct area {
  std::string name;
  geo_point center;
  double radius_km = 0;
  friend bool operator==(const area&, const area&) = default;
};

/// Property names of an event that sets the contact's location (both, numbers).
namespace location_props {
inline constexpr std::string_view lat = "lat";
inline constexpr std::string_view lon = "lon";
}  // namespace location_props

}  // namespace nudge
