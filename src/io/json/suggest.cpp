// "Did you mean" suggestions and the words of messages: edit distance, quoting, describing a
// value, and the unknown owner group.
#include "walker.hpp"

namespace nudge::json_rules {

// ---- Suggestions ----------------------------------------------------------------------------

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b, bool fold_case) {
  auto lower = [fold_case](char c) {
    return (fold_case && c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  };
  const std::size_t n = a.size(), m = b.size();
  std::vector<std::size_t> prev2(m + 1), prev(m + 1), cur(m + 1);
  for (std::size_t j = 0; j <= m; ++j) {
    prev[j] = j;
  }
  for (std::size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1])) {
        cur[j] = std::min(cur[j], prev2[j - 2] + 1);
      }
    }
    std::swap(prev2, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

std::string quoted(std::string_view s) {
  return json::serialize(json::string_view{s});
}

// A value as it appears in a message: scalars as JSON (long ones shortened), containers by kind.
std::string describe(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object:
      return "an object";
    case json::kind::array:
      return "an array";
    case json::kind::null:
      return "null";
    case json::kind::double_:
      // fmt's shortest round-trip form ("2.5"), not Boost's "2.5E0".
      return std::isfinite(v.get_double()) ? fmt::format("{}", v.get_double()) : "the number";
    default:
      break;
  }
  std::string s = json::serialize(v);
  if (s.size() > 40) {
    s = s.substr(0, 37) + "...";
  }
  return s;
}

void walker::unknown_group(const std::string& g, const path& at) {
  std::vector<std::string> names;
  if (groups_ != nullptr) {
    for (const auto& [n, members] : *groups_) {
      names.push_back(n);
    }
  }
  if (auto hint = closest(g, names)) {
    fail(at, "unknown_group",
         fmt::format("no owner group {} is defined (did you mean {}?)", quoted(g), quoted(*hint)));
  } else {
    fail(at, "unknown_group",
         fmt::format("no owner group {} is defined (define it in \"owner_groups\")", quoted(g)));
  }
}

}  // namespace nudge::json_rules
