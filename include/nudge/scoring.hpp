// nudge/scoring.hpp: lead scoring as data: points per event, caps, decay and thresholds.
//
// Scoring changes `contact::score`, the same number `add_score` actions change and conditions
// compare. Score rules award points when a matching event is applied (before the rules that
// event triggers run, so they see the new score); decay lowers the score at fixed instants;
// crossing a threshold upwards raises a `score_crossed` event whose key is the threshold's name.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nudge/condition.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// At most `max_points` (in absolute value) from one score rule per period. Periods are fixed
/// and aligned to the Unix epoch: a period of 1d is a UTC calendar day, [00:00:00, 24:00:00).
struct score_cap {
  double max_points = 0;
  duration per{0};
  friend bool operator==(const score_cap&, const score_cap&) = default;
};

/// `points` (negative: subtract) for every applied event matching `on`, up to the cap.
struct score_rule {
  std::string id;
  event_match on;
  double points = 0;
  std::optional<score_cap> cap;
  friend bool operator==(const score_rule&, const score_rule&) = default;
};

/// How a score decays: at every instant that is a whole multiple of `every` since the Unix
/// epoch (a UTC-midnight-aligned grid for whole days), a non-zero score is multiplied by
/// `factor` (0.5 halves it), then moved `subtract` points towards 0 (never past 0). The engine
/// applies it with a per-contact timer at exactly that instant, so a condition at any time sees
/// the decayed score.
struct score_decay {
  duration every{0};
  double factor = 1;
  double subtract = 0;
  friend bool operator==(const score_decay&, const score_decay&) = default;
};

/// A named score level: when the score goes from below `at` to `at` or more, the engine raises
/// `score_crossed` with key `name`. Falling below `at` again re-arms it.
struct score_threshold {
  std::string name;
  double at = 0;
  friend bool operator==(const score_threshold&, const score_threshold&) = default;
};

/// The scoring part of a rule set.
///
/// Example: +1 per page view, at most +50 a day; +20 per purchase; halve every 30 days;
/// "hot" at 100.
///
///     nudge::scoring s;
///     s.rules.push_back({"views", nudge::on("page_view"), 1, nudge::score_cap{50,
///     nudge::days(1)}}); s.rules.push_back({"buys", nudge::on("purchase"), 20, std::nullopt});
///     s.decay = nudge::score_decay{nudge::days(30), 0.5, 0};
///     s.thresholds.push_back({"hot", 100});
struct scoring {
  std::vector<score_rule> rules;
  std::optional<score_decay> decay;
  std::vector<score_threshold> thresholds;
  bool empty() const noexcept { return rules.empty() && !decay && thresholds.empty(); }
  friend bool operator==(const scoring&, const scoring&) = default;
};

}  // namespace nudge
