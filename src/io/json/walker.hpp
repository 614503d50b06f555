// Private to the JSON rule-file loader (src/io/json): the walker that maps a parsed DOM to a
// rule_set, collecting every problem, and the helpers its sections share. The walker's
// member functions live in one file per section of a rule file (rules.cpp, conditions.cpp,
// delivery.cpp, ...); load.cpp holds the public entry points of nudge/io/load_rules.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <deque>
#include <limits>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>

#include <nudge/event.hpp>
#include <nudge/io/load_rules.hpp>

namespace nudge::json_rules {

namespace json = boost::json;

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

// Windowed counts and frequency caps keep one time per counted event per contact, so their
// bounds are capped to keep a hostile file from reserving unbounded memory per contact.
inline constexpr std::int64_t max_kept_count = 1000;
inline constexpr std::int64_t max_timeline_size = 100000;  // entries per contact: 3.2 MB at most

// A problem found while walking the DOM, before it is located in the text.
struct problem {
  std::string pointer;
  bool at_key = false;  // locate the member's key rather than its value
  std::string code;
  std::string message;
};

// ---- JSON pointers --------------------------------------------------------------------------

inline std::string token(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// A JSON pointer kept as a chain of stack frames while walking, turned into text only when
// there is a problem to report: most values never need theirs.
struct path {
  const path* parent = nullptr;
  std::string_view key;
  std::size_t index = npos;  // an array element, or npos for an object member

  std::string str() const {
    if (parent == nullptr) {
      return {};
    }
    std::string out = parent->str();
    out += '/';
    if (index != npos) {
      out += std::to_string(index);
    } else {
      out += token(key);
    }
    return out;
  }
};

// The member or element of `at`; `at` must outlive the result.
inline path child(const path& at, std::string_view key) {
  return {&at, key, npos};
}
inline path child(const path& at, std::size_t index) {
  return {&at, {}, index};
}

// ---- Suggestions (suggest.cpp) ------------------------------------------------------------

// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
std::size_t edit_distance(std::string_view a, std::string_view b, bool fold_case);

// The closest candidate, if it is close enough to be a likely typo: at most 1 edit for words
// of up to 4 characters, at most 2 for longer ones, and never the whole word.
template <class Range>
std::optional<std::string> closest(std::string_view word, const Range& candidates) {
  const std::size_t limit = word.size() <= 4 ? 1 : 2;
  std::optional<std::string> best;
  std::size_t best_distance = npos;
  for (const auto& c : candidates) {
    const std::string_view cand{c};
    // Ties go to the candidate that also matches the case ("CRAT" -> "CART", not "cart").
    const std::size_t folded = edit_distance(word, cand, true);
    if (folded > limit || folded >= std::max(word.size(), cand.size())) {
      continue;
    }
    const std::size_t d =
        folded * 256 + std::min<std::size_t>(edit_distance(word, cand, false), 255);
    if (d < best_distance) {
      best_distance = d;
      best = std::string{cand};
    }
  }
  return best;
}

// "a, b, c or d"
template <class Range>
std::string list_words(const Range& words) {
  std::string out;
  std::size_t i = 0;
  const auto n = static_cast<std::size_t>(std::distance(std::begin(words), std::end(words)));
  for (const auto& w : words) {
    if (i > 0) {
      out += i + 1 == n ? " or " : ", ";
    }
    out += std::string_view{w};
    ++i;
  }
  return out;
}

std::string quoted(std::string_view s);

// "\"a\", \"b\" or \"c\""
template <class Range>
std::string quoted_words(const Range& words) {
  std::vector<std::string> q;
  for (const auto& w : words) {
    q.push_back(quoted(w));
  }
  return list_words(q);
}

// A value as it appears in a message: scalars as JSON (long ones shortened), containers by kind.
std::string describe(const json::value& v);

inline constexpr std::array<std::string_view, 21> builtin_types{
    event_types::page_view,       event_types::cart,           event_types::purchase,
    event_types::email_open,      event_types::email_click,    event_types::signup,
    event_types::tag_added,       event_types::tag_removed,    event_types::stage_entered,
    event_types::status_changed,  event_types::owner_assigned, event_types::group_added,
    event_types::group_removed,   event_types::detail_set,     event_types::score_changed,
    event_types::segment_entered, event_types::segment_exited, event_types::score_crossed,
    event_types::identify,        event_types::area_entered,   event_types::area_exited};

// Event forms whose value is the key: {"tag_added": "vip"} is {"event": "tag_added", "key":
// "vip"}.
inline constexpr std::array<std::string_view, 7> key_shorthands{
    "tag_added",     "stage_entered", "segment_entered", "segment_exited",
    "score_crossed", "area_entered",  "area_exited"};

inline constexpr std::array<std::string_view, 17> verbs{
    "send_email", "send_sms",  "web_push",     "notify_owner", "generate_coupon",  "webhook",
    "show_popup", "send_chat", "add_tag",      "remove_tag",   "set_detail",       "set_status",
    "add_score",  "set_stage", "assign_owner", "add_to_group", "remove_from_group"};

inline constexpr std::array<std::string_view, 10> operators{
    "eq", "ne", "lt", "le", "gt", "ge", "in", "contains", "prefix", "exists"};

inline constexpr std::array<std::string_view, 21> condition_forms{"all",
                                                                  "any",
                                                                  "not",
                                                                  "detail",
                                                                  "field",
                                                                  "status",
                                                                  "stage",
                                                                  "has_tag",
                                                                  "in_group",
                                                                  "happened",
                                                                  "not_happened",
                                                                  "in_segment",
                                                                  "sum",
                                                                  "average",
                                                                  "first_seen",
                                                                  "last_seen",
                                                                  "in_workflow",
                                                                  "completed_workflow",
                                                                  "exited_workflow",
                                                                  "near",
                                                                  "moved"};

// ---- The walker: DOM -> rule_set, collecting problems -----------------------------------------

class walker {
 public:
  explicit walker(const program_limits& limits) : limits_(limits) {}

  std::vector<problem> problems;
  rule_set run(const json::value& root);

 private:
  const program_limits& limits_;
  const path root_at{};
  const path rules_at{&root_at, "rules"};
  const path types_at{&root_at, "event_types"};
  const path groups_at{&root_at, "owner_groups"};
  const path workflows_at_{&root_at, "workflows"};
  std::vector<std::string> declared_types_;  // custom event types the file declares
  std::vector<std::string> segment_names_;   // in file order ("" where a name is missing)
  std::size_t current_segment_ = npos;       // the segment being read; npos in rules
  const name_map<std::vector<std::string>>* groups_ = nullptr;
  const delivery_settings* delivery_defaults_ = nullptr;
  void fail(const path& at, std::string code, std::string message, bool at_key = false);

  // ---- typed accessors: each reports a wrong type and returns nothing ----
  void wrong_type(const json::value& v, const path& at, std::string_view expected);
  const json::object* object_at(const json::value& v, const path& at);
  const json::array* array_at(const json::value& v, const path& at);
  std::optional<std::string> string(const json::value& v, const path& at);
  std::optional<std::string> name(const json::value& v, const path& at, std::string_view what);
  std::optional<bool> boolean(const json::value& v, const path& at);
  std::optional<std::int64_t> integer(const json::value& v, const path& at);
  std::optional<std::int64_t> count(const json::value& v, const path& at, std::int64_t min,
                                    std::int64_t max);
  std::optional<duration> span(const json::value& v, const path& at);
  std::optional<months> calendar(const json::value& v, const path& at, bool is_window,
                                 duration& fixed, bool& ok);
  std::optional<duration> delay(const json::value& v, const path& at);
  std::optional<duration> window(const json::value& v, const path& at);
  std::optional<time_point> instant(const json::value& v, const path& at);
  std::optional<value> val(const json::value& v, const path& at);
  bool check_fields(const json::object& o, const path& at,
                    std::initializer_list<std::string_view> allowed);
  template <class Range>
  void unknown_field(std::string_view k, const path& at, const Range& allowed) {
    // The delivery section's zone: "time_zone" is one edit from "time_zones" (a map of POSIX
    // rules), but a zone name meant for every contact belongs in default_time_zone.
    constexpr std::string_view default_zone = "default_time_zone";
    if ((k == "time_zone" || k == "timezone" || k == "zone" || k == "tz") &&
        std::find(std::begin(allowed), std::end(allowed), default_zone) != std::end(allowed)) {
      fail(child(at, k), "unknown_field",
           fmt::format("unknown field {} (did you mean {}?)", quoted(k), quoted(default_zone)),
           true);
      return;
    }
    if (auto s = closest(k, allowed)) {
      fail(child(at, k), "unknown_field",
           fmt::format("unknown field {} (did you mean {}?)", quoted(k), quoted(*s)), true);
    } else {
      fail(child(at, k), "unknown_field",
           fmt::format("unknown field {} (expected {})", quoted(k), list_words(allowed)), true);
    }
  }

  // ---- declarations ----
  void event_types(const json::value& v, rule_set& out);
  void owner_groups(const json::value& v, rule_set& out);

  // ---- delivery policy ----
  std::optional<local_hours> hours_at(const json::value& v, const path& at);
  std::optional<on_refusal> refusal_at(const json::value& v, const path& at);
  std::optional<std::uint8_t> weekdays_at(const json::value& v, const path& at);
  void policy_fields_at(const json::object& o, const path& at, delivery_policy& p);
  void delivery_at(const json::value& v, const path& at, rule_set& out);
  void own_delivery_at(const json::value& v, const path& at, std::optional<delivery_policy>& out);
  void timeline_at(const json::value& v, const path& at, rule_set& out);

  // ---- rules ----
  rule rule_at(const json::value& v, const path& at,
               std::unordered_map<std::string_view, std::size_t>& first_with_id, std::size_t index);
  void reentry_at(const json::value& v, const path& at, rule& r);
  void cap_at(const json::value& v, const path& at, rule& r);

  // ---- events ----
  bool is_known_type(std::string_view t) const;
  std::optional<event_match> match_at(const json::object& o, const path& at);
  std::optional<event_match> trigger(const json::value& v, const path& at);

  // ---- conditions ----
  std::optional<condition> condition_at(const json::value& v, const path& at, std::size_t depth);
  std::optional<condition> aggregate_at(const json::value& v, const path& at, aggregate_fn fn);
  std::optional<condition> occurred_at(const json::value& v, const path& at, occurrence which);
  std::optional<double> number(const json::value& v, const path& at);

  // ---- segments and scoring ----
  bool circle_at(const json::object& o, const path& at, geo_point* p, double& km);
  void areas_at(const json::value& v, rule_set& out);
  void segments(const json::value& v, rule_set& out);
  void scoring_at(const json::value& v, nudge::scoring& out);
  std::optional<score_rule> score_rule_at(const json::value& v, const path& at);
  std::optional<condition> happened_at(const json::value& v, const path& at, bool is_not);
  std::optional<condition> comparison(const json::object& o, const path& at);
  static const char* field_label(field f);

  // ---- actions ----
  std::optional<action> action_at(const json::value& v, const path& at);

  // ---- workflows ----
  void workflows_at(const json::value& v, rule_set& out);
  workflow workflow_at(const json::value& v, const path& at);
  void entry_at(const json::value& v, const path& at, workflow_entry& e);
  void workflow_reentry_at(const json::value& v, const path& at, workflow& w);
  std::optional<std::int32_t> clock_time(const json::value& v, const path& at);
  std::optional<duration> offset(const json::value& v, const path& at);
  std::string step_ref(const json::object& o, const path& at, std::string_view field);
  workflow_step step_at(const json::value& v, const path& at);
  void wait_at(const json::value& v, const path& at, workflow_step& st);
  void unknown_group(const std::string& g, const path& at);
  static const char* arg_meaning(action_kind k);
};

}  // namespace nudge::json_rules
