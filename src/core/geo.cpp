// Distances on the sphere and coordinate checks (docs/rules.md, "Location").
#include <cmath>
#include <numbers>

#include <fmt/format.h>

#include <nudge/geo.hpp>

namespace nudge {

double distance_km(geo_point a, geo_point b) noexcept {
  constexpr double rad = std::numbers::pi / 180.0;
  const double dlat = (b.lat - a.lat) * rad;
  const double dlon = (b.lon - a.lon) * rad;
  const double s = std::sin(dlat / 2);
  const double t = std::sin(dlon / 2);
  const double h = s * s + std::cos(a.lat * rad) * std::cos(b.lat * rad) * t * t;
  // min: rounding can push h a hair above 1 for antipodal points.
  return 2 * earth_radius_km * std::asin(std::sqrt(std::min(1.0, h)));
}

std::optional<std::string> geo_problem(double lat, double lon) {
  if (!std::isfinite(lat) || lat < -90 || lat > 90) {
    return fmt::format("latitude {} is outside -90 to 90", lat);
  }
  if (!std::isfinite(lon) || lon < -180 || lon > 180) {
    return fmt::format("longitude {} is outside -180 to 180", lon);
  }
  return std::nullopt;
}

}  // namespace nudge
