// Rule files (JSON, docs/rules.md) to rule sets and programs, with every problem located by
// JSON pointer and line:column.
//
// Boost.JSON parses the text (and rejects bad syntax and hostile nesting); a walker then maps
// the DOM to the plain structs of rule.hpp, collecting every problem it meets instead of
// stopping at the first. Boost.JSON's DOM keeps no positions, so only when there is something
// to report does a second, tiny scanner walk the (already valid) text and record where each
// value and key starts, keyed by JSON pointer. A file without problems pays for that scan only
// once, to catch duplicate keys, which the DOM silently merges.
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <sys/stat.h>

#include <nudge/event.hpp>
#include <nudge/load_rules.hpp>

#include "check_all.hpp"

namespace nudge {
namespace {

namespace json = boost::json;

constexpr std::size_t npos = static_cast<std::size_t>(-1);

// Windowed counts and frequency caps keep one time per counted event per contact, so their
// bounds are capped to keep a hostile file from reserving unbounded memory per contact.
constexpr std::int64_t max_kept_count = 1000;
constexpr std::int64_t max_timeline_size = 100000;  // entries per contact: 3.2 MB at most

// A problem found while walking the DOM, before it is located in the text.
struct problem {
  std::string pointer;
  bool at_key = false;  // locate the member's key rather than its value
  std::string code;
  std::string message;
};

// ---- JSON pointers --------------------------------------------------------------------------

std::string token(std::string_view key) {
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
path child(const path& at, std::string_view key) {
  return {&at, key, npos};
}
path child(const path& at, std::size_t index) {
  return {&at, {}, index};
}

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

std::string quoted(std::string_view s) {
  return json::serialize(json::string_view{s});
}

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

constexpr std::array<std::string_view, 21> builtin_types{
    event_types::page_view,       event_types::cart,           event_types::purchase,
    event_types::email_open,      event_types::email_click,    event_types::signup,
    event_types::tag_added,       event_types::tag_removed,    event_types::stage_entered,
    event_types::status_changed,  event_types::owner_assigned, event_types::group_added,
    event_types::group_removed,   event_types::detail_set,     event_types::score_changed,
    event_types::segment_entered, event_types::segment_exited, event_types::score_crossed,
    event_types::identify,        event_types::area_entered,   event_types::area_exited};

// Event forms whose value is the key: {"tag_added": "vip"} is {"event": "tag_added", "key":
// "vip"}.
constexpr std::array<std::string_view, 7> key_shorthands{
    "tag_added",     "stage_entered", "segment_entered", "segment_exited",
    "score_crossed", "area_entered",  "area_exited"};

constexpr std::array<std::string_view, 17> verbs{
    "send_email", "send_sms",  "web_push",     "notify_owner", "generate_coupon",  "webhook",
    "show_popup", "send_chat", "add_tag",      "remove_tag",   "set_detail",       "set_status",
    "add_score",  "set_stage", "assign_owner", "add_to_group", "remove_from_group"};

constexpr std::array<std::string_view, 10> operators{"eq", "ne", "lt",       "le",     "gt",
                                                     "ge", "in", "contains", "prefix", "exists"};

constexpr std::array<std::string_view, 21> condition_forms{"all",
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

  rule_set run(const json::value& root) {
    rule_set out;
    const json::object* top = object_at(root, root_at);
    if (top == nullptr) {
      return out;
    }
    check_fields(*top, root_at,
                 {"version", "description", "event_types", "owner_groups", "rules", "workflows",
                  "segments", "timeline", "scoring", "delivery", "areas"});
    // Declarations first: rules refer to them wherever they appear in the file.
    if (const auto* v = top->if_contains("version")) {
      if (auto n = integer(*v, child(root_at, "version"))) {
        if (*n != 1) {
          fail(child(root_at, "version"), "bad_version",
               fmt::format("unsupported version {} (expected 1)", *n));
        }
      }
    }
    if (const auto* v = top->if_contains("description")) {
      string(*v, child(root_at, "description"));
    }
    if (const auto* v = top->if_contains("event_types")) {
      event_types(*v, out);
      declared_types_ = out.event_types;
    }
    if (const auto* v = top->if_contains("owner_groups")) {
      owner_groups(*v, out);
    }
    if (const auto* v = top->if_contains("timeline")) {
      timeline_at(*v, child(root_at, "timeline"), out);
    }
    if (const auto* v = top->if_contains("segments")) {
      segments(*v, out);
    }
    if (const auto* v = top->if_contains("areas")) {
      areas_at(*v, out);
    }
    if (const auto* v = top->if_contains("scoring")) {
      scoring_at(*v, out.scoring);
    }
    if (const auto* v = top->if_contains("delivery")) {
      delivery_at(*v, child(root_at, "delivery"), out);
    }
    if (const auto* v = top->if_contains("workflows")) {
      workflows_at(*v, out);
    }
    const auto* rules = top->if_contains("rules");
    if (rules == nullptr) {
      fail(root_at, "missing_field", "missing required field \"rules\"");
      return out;
    }
    const json::array* list = array_at(*rules, rules_at);
    if (list == nullptr) {
      return out;
    }
    if (list->size() > limits_.max_rules) {
      fail(rules_at, "too_many_rules",
           fmt::format("{} rules; at most {} are allowed", list->size(), limits_.max_rules));
      return out;
    }
    out.rules.reserve(list->size());
    std::unordered_map<std::string_view, std::size_t> first_with_id;
    for (std::size_t i = 0; i < list->size(); ++i) {
      out.rules.push_back(rule_at((*list)[i], child(rules_at, i), first_with_id, i));
    }
    return out;
  }

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

  void fail(const path& at, std::string code, std::string message, bool at_key = false) {
    problems.push_back({at.str(), at_key, std::move(code), std::move(message)});
  }

  // ---- typed accessors: each reports a wrong type and returns nothing ----
  void wrong_type(const json::value& v, const path& at, std::string_view expected) {
    fail(at, "wrong_type", fmt::format("expected {}, got {}", expected, describe(v)));
  }
  const json::object* object_at(const json::value& v, const path& at) {
    if (const auto* o = v.if_object()) {
      return o;
    }
    wrong_type(v, at, "an object");
    return nullptr;
  }
  const json::array* array_at(const json::value& v, const path& at) {
    if (const auto* a = v.if_array()) {
      return a;
    }
    wrong_type(v, at, "an array");
    return nullptr;
  }
  std::optional<std::string> string(const json::value& v, const path& at) {
    if (const auto* s = v.if_string()) {
      return std::string{*s};
    }
    wrong_type(v, at, "a string");
    return std::nullopt;
  }
  std::optional<std::string> name(const json::value& v, const path& at, std::string_view what) {
    auto s = string(v, at);
    if (s && s->empty()) {
      fail(at, "empty_name", fmt::format("{} cannot be empty", what));
      return std::nullopt;
    }
    return s;
  }
  std::optional<bool> boolean(const json::value& v, const path& at) {
    if (const auto* b = v.if_bool()) {
      return *b;
    }
    wrong_type(v, at, "true or false");
    return std::nullopt;
  }
  std::optional<std::int64_t> integer(const json::value& v, const path& at) {
    if (const auto* i = v.if_int64()) {
      return *i;
    }
    if (v.is_uint64()) {
      fail(at, "bad_value",
           fmt::format("{} is too large (at most {})", describe(v),
                       std::numeric_limits<std::int64_t>::max()));
      return std::nullopt;
    }
    wrong_type(v, at, "an integer");
    return std::nullopt;
  }
  std::optional<std::int64_t> count(const json::value& v, const path& at, std::int64_t min,
                                    std::int64_t max) {
    auto n = integer(v, at);
    if (n && (*n < min || *n > max)) {
      fail(at, "bad_count", fmt::format("{} is out of range (expected {} to {})", *n, min, max));
      return std::nullopt;
    }
    return n;
  }
  std::optional<duration> span(const json::value& v, const path& at) {
    const auto* s = v.if_string();
    if (s == nullptr) {
      wrong_type(v, at, "a duration (e.g. \"60d\")");
      return std::nullopt;
    }
    auto d = parse_duration(std::string_view{*s});
    if (!d && parse_months(std::string_view{*s})) {
      fail(at, "bad_duration",
           fmt::format("{} counts calendar months, which only rule delays, \"within\" / "
                       "\"older_than\" windows and fixed workflow waits take (use a fixed "
                       "length here, e.g. \"30d\")",
                       describe(v)));
    } else if (!d) {
      fail(at, "bad_duration",
           fmt::format("{} is not a duration (expected a whole number and a unit: {}; e.g. "
                       "\"60d\")",
                       describe(v), duration_units));
    }
    return d;
  }
  // A delay or window that may be calendar months ("2mo", "1y"): months, or nullopt for a
  // fixed length (then `fixed` holds it, checked by delay() / window()). Sets `ok` false on a
  // problem (reported).
  std::optional<months> calendar(const json::value& v, const path& at, bool is_window,
                                 duration& fixed, bool& ok) {
    if (const auto* s = v.if_string()) {
      if (auto m = parse_months(std::string_view{*s})) {
        if ((is_window && m->count == 0) || longest(*m) > limits_.max_delay) {
          fail(at, is_window ? "bad_window" : "bad_delay",
               fmt::format("calendar months must be {} to {} (a month counts as 31 days against "
                           "the limit of {})",
                           is_window ? 1 : 0, limits_.max_delay / days(31),
                           format_duration(limits_.max_delay)));
          ok = false;
          return std::nullopt;
        }
        return m;
      }
    }
    auto d = is_window ? window(v, at) : delay(v, at);
    ok = d.has_value();
    fixed = d.value_or(duration{0});
    return std::nullopt;
  }
  // A delay: 0s up to the limit.
  std::optional<duration> delay(const json::value& v, const path& at) {
    auto d = span(v, at);
    if (d && *d > limits_.max_delay) {
      fail(at, "bad_delay",
           fmt::format("a delay must be between 0s and {}", format_duration(limits_.max_delay)));
      return std::nullopt;
    }
    return d;
  }
  // A window: longer than 0s, up to the limit.
  std::optional<duration> window(const json::value& v, const path& at) {
    auto d = span(v, at);
    if (d && (*d <= duration{0} || *d > limits_.max_delay)) {
      fail(at, "bad_window",
           fmt::format("a window must be longer than 0s and at most {}",
                       format_duration(limits_.max_delay)));
      return std::nullopt;
    }
    return d;
  }
  std::optional<time_point> instant(const json::value& v, const path& at) {
    std::optional<time_point> t;
    time_error why = time_error::none;
    if (const auto* s = v.if_string()) {
      t = parse_time(std::string_view{*s}, &why);
    } else if (const auto* i = v.if_int64()) {
      t = from_epoch(*i);
    } else if (v.is_uint64()) {
      why = time_error::out_of_range;
    } else {
      wrong_type(v, at, "a time (ISO-8601 with an offset, or epoch seconds)");
      return std::nullopt;
    }
    if (!t && why != time_error::out_of_range) {
      fail(at, "bad_time",
           fmt::format("{} is not a time (expected e.g. \"2024-01-01T10:00:00Z\" or epoch "
                       "seconds)",
                       describe(v)));
      return std::nullopt;
    }
    if (!t || !in_input_range(*t)) {
      fail(at, "bad_time",
           fmt::format("{} is outside the supported range ({})", describe(v), input_range_text));
      return std::nullopt;
    }
    return t;
  }
  // VALUE: string, integer, decimal, bool, or {"time": TIME}.
  std::optional<value> val(const json::value& v, const path& at) {
    switch (v.kind()) {
      case json::kind::string:
        return value{std::string{v.get_string()}};
      case json::kind::int64:
        return value{v.get_int64()};
      case json::kind::uint64:
        fail(at, "bad_value",
             fmt::format("{} is too large (at most {})", describe(v),
                         std::numeric_limits<std::int64_t>::max()));
        return std::nullopt;
      case json::kind::double_:
        if (!std::isfinite(v.get_double())) {
          fail(at, "bad_value", "the number is out of range for a decimal");
          return std::nullopt;
        }
        return value{v.get_double()};
      case json::kind::bool_:
        return value{v.get_bool()};
      case json::kind::object: {
        const auto& o = v.get_object();
        check_fields(o, at, {"time"});
        if (const auto* t = o.if_contains("time")) {
          if (auto tp = instant(*t, child(at, "time"))) {
            return value{*tp};
          }
          return std::nullopt;
        }
        fail(at, "missing_field", "missing required field \"time\"");
        return std::nullopt;
      }
      default:
        break;
    }
    wrong_type(v, at, "a value (string, number, true, false or {\"time\": ...})");
    return std::nullopt;
  }

  // Reports members not in `allowed`, at their keys, with a suggestion when one is close.
  bool check_fields(const json::object& o, const path& at,
                    std::initializer_list<std::string_view> allowed) {
    bool ok = true;
    for (const auto& m : o) {
      const std::string_view k{m.key()};
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) {
        continue;
      }
      ok = false;
      unknown_field(k, at, allowed);
    }
    return ok;
  }
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
  void event_types(const json::value& v, rule_set& out) {
    const json::array* a = array_at(v, types_at);
    if (a == nullptr) {
      return;
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const path at = child(types_at, i);
      auto t = name((*a)[i], at, "an event type");
      if (!t) {
        continue;
      }
      if (std::find(out.event_types.begin(), out.event_types.end(), *t) != out.event_types.end()) {
        fail(at, "duplicate_event_type",
             fmt::format("event type {} is declared twice", quoted(*t)));
        continue;
      }
      out.event_types.push_back(*t);
    }
  }

  void owner_groups(const json::value& v, rule_set& out) {
    const json::object* o = object_at(v, groups_at);
    if (o == nullptr) {
      return;
    }
    for (const auto& m : *o) {
      const path at = child(groups_at, m.key());
      if (m.key().empty()) {
        fail(at, "empty_name", "an owner group name cannot be empty", true);
        continue;
      }
      const json::array* members = array_at(m.value(), at);
      if (members == nullptr) {
        continue;
      }
      if (members->empty()) {
        fail(at, "empty_group", "an owner group needs at least one member");
        continue;
      }
      std::vector<std::string> names;
      for (std::size_t i = 0; i < members->size(); ++i) {
        if (auto s = name((*members)[i], child(at, i), "an owner")) {
          names.push_back(std::move(*s));
        }
      }
      out.owner_groups[std::string{m.key()}] = std::move(names);
    }
    groups_ = &out.owner_groups;
  }

  // ---- delivery policy ----
  std::optional<local_hours> hours_at(const json::value& v, const path& at) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    check_fields(*o, at, {"from", "to"});
    local_hours h;
    bool ok = true;
    for (auto [field, target] : {std::pair{"from", &h.from_seconds}, {"to", &h.to_seconds}}) {
      if (const auto* x = o->if_contains(field)) {
        auto t = clock_time(*x, child(at, field));
        ok = ok && t.has_value();
        *target = t.value_or(0);
      } else {
        fail(at, "missing_field", fmt::format("missing required field \"{}\"", field));
        ok = false;
      }
    }
    if (ok && h.from_seconds == h.to_seconds) {
      fail(at, "bad_hours", "\"from\" and \"to\" must differ");
      ok = false;
    }
    return ok ? std::optional{h} : std::nullopt;
  }

  std::optional<on_refusal> refusal_at(const json::value& v, const path& at) {
    if (const auto* s = v.if_string()) {
      if (*s == "defer") {
        return on_refusal::defer;
      }
      if (*s == "skip") {
        return on_refusal::skip;
      }
    }
    fail(at, "bad_refusal", fmt::format("{} is not \"defer\" or \"skip\"", describe(v)));
    return std::nullopt;
  }

  // The policy fields present in `o`, over `p`.
  // ["mon", ..., "sun"] (send windows, time-of-day waits) -> bit 0 Monday ... bit 6 Sunday;
  // nullopt when nothing valid was named (each problem is reported).
  std::optional<std::uint8_t> weekdays_at(const json::value& v, const path& at) {
    static constexpr std::array<std::string_view, 7> names{"mon", "tue", "wed", "thu",
                                                           "fri", "sat", "sun"};
    const json::array* a = array_at(v, at);
    if (a == nullptr) {
      return std::nullopt;
    }
    if (a->empty()) {
      fail(at, "bad_weekdays", "at least one weekday must be allowed");
    }
    std::uint8_t mask = 0;
    for (std::size_t k = 0; k < a->size(); ++k) {
      auto s = string((*a)[k], child(at, k));
      if (!s) {
        continue;
      }
      auto it = std::find(names.begin(), names.end(), *s);
      if (it == names.end()) {
        fail(child(at, k), "bad_weekday",
             fmt::format("unknown weekday {} (expected {})", quoted(*s), list_words(names)));
        continue;
      }
      mask = static_cast<std::uint8_t>(mask | (1U << (it - names.begin())));
    }
    return mask == 0 ? std::nullopt : std::optional{mask};
  }

  void policy_fields_at(const json::object& o, const path& at, delivery_policy& p) {
    if (const auto* v = o.if_contains("consent")) {
      p.require_consent = boolean(*v, child(at, "consent")).value_or(p.require_consent);
    }
    if (const auto* v = o.if_contains("caps")) {
      const path cat = child(at, "caps");
      if (const json::array* a = array_at(*v, cat)) {
        p.caps.clear();
        for (std::size_t k = 0; k < a->size(); ++k) {
          const path kat = child(cat, k);
          const json::object* c = object_at((*a)[k], kat);
          if (c == nullptr) {
            continue;
          }
          check_fields(*c, kat, {"channel", "max", "per"});
          channel_cap cap;
          bool ok = true;
          if (const auto* ch = c->if_contains("channel")) {
            auto name = string(*ch, child(kat, "channel"));
            auto parsed = name ? channel_from_name(*name) : std::nullopt;
            if (name && !parsed) {
              fail(child(kat, "channel"), "unknown_channel",
                   fmt::format("unknown channel {} (expected email, sms, web_push, popup or chat)",
                               quoted(*name)));
            }
            ok = ok && parsed.has_value();
            cap.on = parsed.value_or(channel::email);
          } else {
            fail(kat, "missing_field", "missing required field \"channel\"");
            ok = false;
          }
          if (const auto* m = c->if_contains("max")) {
            auto n = count(*m, child(kat, "max"), 1, max_kept_count);
            ok = ok && n.has_value();
            cap.max_messages = n.value_or(1);
          } else {
            fail(kat, "missing_field", "missing required field \"max\"");
            ok = false;
          }
          if (const auto* w = c->if_contains("per")) {
            auto d = window(*w, child(kat, "per"));
            ok = ok && d.has_value();
            cap.per = d.value_or(duration{0});
          } else {
            fail(kat, "missing_field", "missing required field \"per\"");
            ok = false;
          }
          if (ok) {
            p.caps.push_back(cap);
          }
        }
      }
    }
    if (const auto* v = o.if_contains("quiet_hours")) {
      p.quiet_hours = hours_at(*v, child(at, "quiet_hours"));
    }
    if (const auto* v = o.if_contains("send_hours")) {
      p.send_hours = hours_at(*v, child(at, "send_hours"));
    }
    if (const auto* v = o.if_contains("weekdays")) {
      p.weekdays = weekdays_at(*v, child(at, "weekdays")).value_or(p.weekdays);
    }
    if (const auto* v = o.if_contains("on_cap")) {
      p.on_cap = refusal_at(*v, child(at, "on_cap")).value_or(p.on_cap);
    }
    if (const auto* v = o.if_contains("on_quiet_hours")) {
      p.on_quiet_hours = refusal_at(*v, child(at, "on_quiet_hours")).value_or(p.on_quiet_hours);
    }
    if (const auto* v = o.if_contains("priority")) {
      auto n = count(*v, child(at, "priority"), -1'000'000, 1'000'000);
      p.priority = static_cast<std::int32_t>(n.value_or(p.priority));
    }
  }

  void delivery_at(const json::value& v, const path& at, rule_set& out) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return;
    }
    check_fields(
        *o, at,
        {"consent", "caps", "quiet_hours", "send_hours", "weekdays", "on_cap", "on_quiet_hours",
         "priority", "default_time_zone", "time_zones", "use_system_zones"});
    delivery_settings d;
    policy_fields_at(*o, at, d.defaults);
    if (const auto* x = o->if_contains("default_time_zone")) {
      d.default_time_zone = name(*x, child(at, "default_time_zone"), "a time zone name")
                                .value_or(d.default_time_zone);
    }
    if (const auto* x = o->if_contains("time_zones")) {
      const path zat = child(at, "time_zones");
      if (const json::object* z = object_at(*x, zat)) {
        for (const auto& m : *z) {
          if (auto rule = string(m.value(), child(zat, m.key()))) {
            d.time_zones.insert_or_assign(std::string{m.key()}, std::move(*rule));
          }
        }
      }
    }
    if (const auto* x = o->if_contains("use_system_zones")) {
      d.use_system_zones = boolean(*x, child(at, "use_system_zones")).value_or(d.use_system_zones);
    }
    out.delivery = std::move(d);
    delivery_defaults_ = &*out.delivery;
  }

  // A rule's or workflow's "delivery": the file's defaults with these fields replaced.
  void own_delivery_at(const json::value& v, const path& at, std::optional<delivery_policy>& out) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return;
    }
    check_fields(*o, at,
                 {"consent", "caps", "quiet_hours", "send_hours", "weekdays", "on_cap",
                  "on_quiet_hours", "priority"});
    delivery_policy p =
        delivery_defaults_ != nullptr ? delivery_defaults_->defaults : delivery_policy{};
    policy_fields_at(*o, at, p);
    out = std::move(p);
  }

  // {"size": N}: entries kept per contact timeline (0: none).
  void timeline_at(const json::value& v, const path& at, rule_set& out) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return;
    }
    check_fields(*o, at, {"size"});
    if (const auto* n = o->if_contains("size")) {
      if (auto size = count(*n, child(at, "size"), 0, max_timeline_size)) {
        out.timeline_size = static_cast<std::uint32_t>(*size);
      }
    } else {
      fail(at, "missing_field", "missing required field \"size\"");
    }
  }

  // ---- rules ----
  rule rule_at(const json::value& v, const path& at,
               std::unordered_map<std::string_view, std::size_t>& first_with_id,
               std::size_t index) {
    rule r;
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return r;
    }
    check_fields(*o, at,
                 {"id", "description", "on", "delay", "if", "then", "reentry", "cap", "delivery"});
    if (const auto* id = o->if_contains("id")) {
      if (auto s = name(*id, child(at, "id"), "a rule id")) {
        r.id = std::move(*s);
        const auto& key = id->get_string();
        if (auto [it, fresh] = first_with_id.emplace(std::string_view{key}, index); !fresh) {
          fail(child(at, "id"), "duplicate_id",
               fmt::format("duplicate rule id {} (first used by /rules/{})", quoted(r.id),
                           it->second));
        }
      }
    } else {
      fail(at, "missing_field", "missing required field \"id\"");
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    if (const auto* on = o->if_contains("on")) {
      if (auto m = trigger(*on, child(at, "on"))) {
        r.trigger = std::move(*m);
      }
    } else {
      fail(at, "missing_field", "missing required field \"on\"");
    }
    if (const auto* d = o->if_contains("delay")) {
      bool ok = true;
      if (auto m = calendar(*d, child(at, "delay"), false, r.delay, ok)) {
        r.delay_months = m->count;
      }
    }
    if (const auto* c = o->if_contains("if")) {
      if (auto cc = condition_at(*c, child(at, "if"), 1)) {
        r.when = std::move(*cc);
      }
    }
    if (const auto* t = o->if_contains("then")) {
      const path tat = child(at, "then");
      if (const json::array* list = array_at(*t, tat)) {
        if (list->empty()) {
          fail(tat, "empty_list", "a rule needs at least one action");
        }
        for (std::size_t j = 0; j < list->size(); ++j) {
          if (auto a = action_at((*list)[j], child(tat, j))) {
            r.actions.push_back(std::move(*a));
          }
        }
      }
    } else {
      fail(at, "missing_field", "missing required field \"then\"");
    }
    if (const auto* re = o->if_contains("reentry")) {
      reentry_at(*re, child(at, "reentry"), r);
    }
    if (const auto* c = o->if_contains("cap")) {
      cap_at(*c, child(at, "cap"), r);
    }
    if (const auto* d = o->if_contains("delivery")) {
      own_delivery_at(*d, child(at, "delivery"), r.delivery);
    }
    return r;
  }

  void reentry_at(const json::value& v, const path& at, rule& r) {
    if (const auto* s = v.if_string()) {
      if (*s == "always") {
        r.reentry_policy = reentry::always;
      } else if (*s == "once") {
        r.reentry_policy = reentry::once;
      } else {
        fail(at, "bad_reentry",
             fmt::format("unknown re-entry policy {} (expected \"always\", \"once\" or "
                         "{{\"once_per\": DURATION}})",
                         describe(v)));
      }
      return;
    }
    if (const auto* o = v.if_object()) {
      check_fields(*o, at, {"once_per"});
      if (const auto* w = o->if_contains("once_per")) {
        if (auto d = window(*w, child(at, "once_per"))) {
          r.reentry_policy = reentry::once_per;
          r.reentry_window = *d;
        }
      } else {
        fail(at, "missing_field", "missing required field \"once_per\"");
      }
      return;
    }
    wrong_type(v, at, "\"always\", \"once\" or {\"once_per\": DURATION}");
  }

  void cap_at(const json::value& v, const path& at, rule& r) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return;
    }
    check_fields(*o, at, {"max", "per"});
    frequency_cap c;
    bool ok = true;
    if (const auto* m = o->if_contains("max")) {
      auto n = count(*m, child(at, "max"), 1, max_kept_count);
      ok = ok && n.has_value();
      c.max_runs = n.value_or(1);
    } else {
      fail(at, "missing_field", "missing required field \"max\"");
      ok = false;
    }
    if (const auto* p = o->if_contains("per")) {
      auto d = window(*p, child(at, "per"));
      ok = ok && d.has_value();
      c.per = d.value_or(duration{0});
    } else {
      fail(at, "missing_field", "missing required field \"per\"");
      ok = false;
    }
    if (ok) {
      r.cap = c;
    }
  }

  // ---- events ----
  bool is_known_type(std::string_view t) const {
    return is_builtin_event_type(t) ||
           std::find(declared_types_.begin(), declared_types_.end(), t) != declared_types_.end();
  }

  // The event part of a trigger or a happened leaf: {"event": T, "key"|"key_prefix": K} or
  // the shorthands {"tag_added": TAG}, {"stage_entered": STAGE}. Other members of `o` are the
  // caller's to check.
  std::optional<event_match> match_at(const json::object& o, const path& at) {
    const json::value* ev = o.if_contains("event");
    std::string_view shorthand;
    const json::value* short_value = nullptr;
    int forms = ev != nullptr ? 1 : 0;
    for (auto f : key_shorthands) {
      if (const json::value* v = o.if_contains(f)) {
        ++forms;
        shorthand = f;
        short_value = v;
      }
    }
    if (forms == 0) {
      fail(at, "missing_field",
           fmt::format("missing the event: \"event\", {}", quoted_words(key_shorthands)));
      return std::nullopt;
    }
    if (forms > 1) {
      fail(at, "ambiguous_form",
           fmt::format("give exactly one of \"event\", {}", quoted_words(key_shorthands)));
      return std::nullopt;
    }
    const json::value* key = o.if_contains("key");
    const json::value* prefix = o.if_contains("key_prefix");
    if (ev == nullptr) {
      for (const char* extra : {"key", "key_prefix"}) {
        if (o.if_contains(extra)) {
          fail(child(at, extra), "field_not_allowed",
               fmt::format("{} does not combine with {} (it is the key already)", quoted(extra),
                           quoted(shorthand)),
               true);
        }
      }
      const char* what = shorthand == "tag_added"        ? "a tag"
                         : shorthand == "stage_entered"  ? "a stage"
                         : shorthand == "score_crossed"  ? "a threshold"
                         : shorthand.starts_with("area") ? "an area"
                                                         : "a segment";
      auto k = name(*short_value, child(at, shorthand), what);
      if (!k) {
        return std::nullopt;
      }
      return event_match{std::string{shorthand}, key_match::exact, std::move(*k)};
    }
    auto t = name(*ev, child(at, "event"), "an event type");
    bool ok = t.has_value();
    if (t && !is_known_type(*t)) {
      std::vector<std::string> candidates(builtin_types.begin(), builtin_types.end());
      candidates.insert(candidates.end(), declared_types_.begin(), declared_types_.end());
      if (auto s = closest(*t, candidates)) {
        fail(child(at, "event"), "unknown_event_type",
             edit_distance(*t, *s, true) == 0
                 ? fmt::format("unknown event type {} (did you mean {}? or declare {} in "
                               "\"event_types\")",
                               quoted(*t), quoted(*s), quoted(*t))
                 : fmt::format("unknown event type {} (did you mean {}?)", quoted(*t), quoted(*s)));
      } else {
        fail(child(at, "event"), "unknown_event_type",
             fmt::format("unknown event type {} (declare custom types in \"event_types\")",
                         quoted(*t)));
      }
      ok = false;
    }
    event_match m;
    if (t) {
      m.type = std::move(*t);
    }
    if (key != nullptr && prefix != nullptr) {
      fail(child(at, "key_prefix"), "ambiguous_form", "give \"key\" or \"key_prefix\", not both",
           true);
      return std::nullopt;
    }
    if (key != nullptr) {
      auto k = string(*key, child(at, "key"));
      ok = ok && k.has_value();
      m.match = key_match::exact;
      m.key = k.value_or("");
    } else if (prefix != nullptr) {
      auto k = string(*prefix, child(at, "key_prefix"));
      if (k && k->empty()) {
        fail(child(at, "key_prefix"), "bad_value",
             "an empty prefix matches every key (leave \"key_prefix\" out)");
        ok = false;
      }
      ok = ok && k.has_value();
      m.match = key_match::prefix;
      m.key = k.value_or("");
    }
    if (!ok) {
      return std::nullopt;
    }
    return m;
  }

  std::optional<event_match> trigger(const json::value& v, const path& at) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    check_fields(*o, at,
                 {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
                  "segment_exited", "score_crossed", "area_entered", "area_exited"});
    return match_at(*o, at);
  }

  // ---- conditions ----
  std::optional<condition> condition_at(const json::value& v, const path& at, std::size_t depth) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    if (depth > limits_.max_condition_depth) {
      fail(at, "too_deep",
           fmt::format("condition nested deeper than {} levels", limits_.max_condition_depth));
      return std::nullopt;
    }
    if (o->contains("detail") || o->contains("field")) {
      return comparison(*o, at);
    }
    if (o->contains("in_workflow")) {
      // {"in_workflow": ID} or {"in_workflow": ID, "step": STEP}: a form with two keys, like a
      // comparison. Whether they exist is checked by program::compile (located there too).
      if (!check_fields(*o, at, {"in_workflow", "step"})) {
        return std::nullopt;
      }
      auto w = name(o->at("in_workflow"), child(at, "in_workflow"), "a workflow id");
      std::optional<std::string> step{std::string{}};
      if (const auto* st = o->if_contains("step")) {
        step = name(*st, child(at, "step"), "a step id");
      }
      if (!w || !step) {
        return std::nullopt;
      }
      return in_workflow(std::move(*w), std::move(*step));
    }
    if (o->empty()) {
      fail(at, "missing_field",
           fmt::format("empty condition (expected one of {})", list_words(condition_forms)));
      return std::nullopt;
    }
    // Exactly one form: report unknown keys, then more than one known form.
    std::string_view form;
    bool ok = true;
    for (const auto& m : *o) {
      const std::string_view k{m.key()};
      if (std::find(condition_forms.begin(), condition_forms.end(), k) == condition_forms.end()) {
        if (auto s = closest(k, condition_forms)) {
          fail(child(at, k), "unknown_condition",
               fmt::format("unknown condition {} (did you mean {}?)", quoted(k), quoted(*s)), true);
        } else {
          fail(child(at, k), "unknown_condition",
               fmt::format("unknown condition {} (expected one of {})", quoted(k),
                           list_words(condition_forms)),
               true);
        }
        ok = false;
      } else if (form.empty()) {
        form = k;
      } else {
        fail(child(at, k), "ambiguous_form",
             fmt::format("a condition has exactly one form; found {} and {} (combine them with "
                         "\"all\" or \"any\")",
                         quoted(form), quoted(k)),
             true);
        ok = false;
      }
    }
    if (!ok || form.empty()) {
      return std::nullopt;
    }
    const json::value& arg = o->at(form);
    const path aat = child(at, form);
    if (form == "all" || form == "any") {
      const json::array* list = array_at(arg, aat);
      if (list == nullptr) {
        return std::nullopt;
      }
      if (list->empty()) {
        fail(aat, "empty_list", fmt::format("{} needs at least one condition", quoted(form)));
        return std::nullopt;
      }
      std::vector<condition> kids;
      for (std::size_t i = 0; i < list->size(); ++i) {
        if (auto c = condition_at((*list)[i], child(aat, i), depth + 1)) {
          kids.push_back(std::move(*c));
        } else {
          ok = false;
        }
      }
      if (!ok) {
        return std::nullopt;
      }
      return form == "all" ? all(std::move(kids)) : any(std::move(kids));
    }
    if (form == "not") {
      auto c = condition_at(arg, aat, depth + 1);
      if (!c) {
        return c;
      }
      return negate(std::move(*c));
    }
    if (form == "status" || form == "stage") {
      auto s = string(arg, aat);
      if (!s) {
        return std::nullopt;
      }
      return form == "status" ? nudge::status().eq(std::move(*s))
                              : nudge::stage().eq(std::move(*s));
    }
    if (form == "has_tag" || form == "in_group") {
      auto s = name(arg, aat, form == "has_tag" ? "a tag" : "a group");
      if (!s) {
        return std::nullopt;
      }
      return form == "has_tag" ? has_tag(std::move(*s)) : in_group(std::move(*s));
    }
    if (form == "near" || form == "moved") {
      const json::object* c = object_at(arg, aat);
      if (c == nullptr) {
        return std::nullopt;
      }
      const bool is_near = form == "near";
      if (!check_fields(*c, aat,
                        is_near ? std::initializer_list<std::string_view>{"lat", "lon", "km"}
                                : std::initializer_list<std::string_view>{"km"})) {
        return std::nullopt;
      }
      geo_point p;
      double km = 0;
      if (!circle_at(*c, aat, is_near ? &p : nullptr, km)) {
        return std::nullopt;
      }
      return is_near ? near(p, km) : moved_more_than(km);
    }
    if (form == "completed_workflow" || form == "exited_workflow") {
      auto s = name(arg, aat, "a workflow id");
      if (!s) {
        return std::nullopt;
      }
      return form == "completed_workflow" ? completed_workflow(std::move(*s))
                                          : exited_workflow(std::move(*s));
    }
    if (form == "in_segment") {
      auto s = name(arg, aat, "a segment");
      if (!s) {
        return std::nullopt;
      }
      // The same checks as program::compile, here so that they come in the same pass as the
      // rest: a segment sees only the segments before it, a rule sees them all.
      const auto visible = segment_names_.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                        current_segment_, segment_names_.size()));
      const auto found = std::find(segment_names_.begin(), segment_names_.end(), *s);
      if (found == segment_names_.end()) {
        fail(aat, "unknown_segment", fmt::format("no segment {} is defined", quoted(*s)));
        return std::nullopt;
      }
      if (found >= visible) {
        const auto index = static_cast<std::size_t>(found - segment_names_.begin());
        fail(aat, "segment_order",
             index == current_segment_
                 ? fmt::format("segment {} cannot refer to itself", quoted(*s))
                 : fmt::format("segment {} is defined after this one (/segments/{}); a segment "
                               "may only name segments defined before it",
                               quoted(*s), index));
        return std::nullopt;
      }
      return in_segment(std::move(*s));
    }
    if (form == "sum" || form == "average") {
      return aggregate_at(arg, aat, form == "sum" ? aggregate_fn::sum : aggregate_fn::average);
    }
    if (form == "first_seen" || form == "last_seen") {
      return occurred_at(arg, aat, form == "first_seen" ? occurrence::first : occurrence::last);
    }
    return happened_at(arg, aat, form == "not_happened");
  }

  // {"event": ..., "property": P, "within": W, "ge": N} (one of eq, ne, lt, le, gt, ge)
  std::optional<condition> aggregate_at(const json::value& v, const path& at, aggregate_fn fn) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    static constexpr std::array<std::string_view, 6> ops{"eq", "ne", "lt", "le", "gt", "ge"};
    bool ok =
        check_fields(*o, at,
                     {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
                      "segment_exited", "score_crossed", "area_entered", "area_exited", "property",
                      "within", "eq", "ne", "lt", "le", "gt", "ge"});
    auto m = match_at(*o, at);
    ok = ok && m.has_value();
    aggregate_builder b = aggregate_of(fn, m.value_or(event_match{}), {});
    if (const auto* p = o->if_contains("property")) {
      auto n = name(*p, child(at, "property"), "a property name");
      ok = ok && n.has_value();
      b.node.property = n.value_or("");
    } else {
      fail(at, "missing_field", "missing required field \"property\"");
      ok = false;
    }
    if (const auto* w = o->if_contains("within")) {
      duration d{0};
      bool fine = true;
      if (auto cm = calendar(*w, child(at, "within"), true, d, fine)) {
        b.within(*cm);
      } else {
        b.within(d);
      }
      ok = ok && fine;
    } else {
      fail(at, "missing_field", "missing required field \"within\"");
      ok = false;
    }
    std::optional<condition> out;
    const char* found = nullptr;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const json::value* n = o->if_contains(ops[i]);
      if (n == nullptr) {
        continue;
      }
      const path nat = child(at, ops[i]);
      if (found != nullptr) {
        fail(nat, "ambiguous_form",
             fmt::format("give one comparison; found {} and {}", quoted(found), quoted(ops[i])),
             true);
        ok = false;
        continue;
      }
      found = ops[i].data();
      auto x = number(*n, nat);
      ok = ok && x.has_value();
      condition c = b.node;
      c.op = static_cast<compare_op>(i);  // eq..ge lead compare_op in this order
      c.operands = {value{x.value_or(0)}};
      out = std::move(c);
    }
    if (found == nullptr) {
      fail(at, "missing_field", fmt::format("missing the comparison (one of {})", list_words(ops)));
      ok = false;
    }
    if (!ok) {
      return std::nullopt;
    }
    return out;
  }

  // {"event": ..., "within": W} or {"event": ..., "older_than": W}
  std::optional<condition> occurred_at(const json::value& v, const path& at, occurrence which) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    bool ok = check_fields(
        *o, at,
        {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
         "segment_exited", "score_crossed", "area_entered", "area_exited", "within", "older_than"});
    auto m = match_at(*o, at);
    ok = ok && m.has_value();
    occurred_builder b = which == occurrence::first ? first_seen(m.value_or(event_match{}))
                                                    : last_seen(m.value_or(event_match{}));
    const json::value* within = o->if_contains("within");
    const json::value* older = o->if_contains("older_than");
    condition c;
    if (within != nullptr && older != nullptr) {
      fail(child(at, "older_than"), "ambiguous_form", "give \"within\" or \"older_than\", not both",
           true);
      return std::nullopt;
    }
    if (within == nullptr && older == nullptr) {
      fail(at, "missing_field", "missing the window: \"within\" or \"older_than\"");
      return std::nullopt;
    }
    const bool is_older = older != nullptr;
    duration d{0};
    bool fine = true;
    auto cm = calendar(is_older ? *older : *within, child(at, is_older ? "older_than" : "within"),
                       true, d, fine);
    if (!ok || !fine) {
      return std::nullopt;
    }
    if (cm) {
      return is_older ? b.older_than(*cm) : b.within(*cm);
    }
    return is_older ? b.older_than(d) : b.within(d);
  }

  std::optional<double> number(const json::value& v, const path& at) {
    if (!v.is_number()) {
      wrong_type(v, at, "a number");
      return std::nullopt;
    }
    const double d = v.to_number<double>();
    if (!std::isfinite(d)) {
      fail(at, "bad_value", "the number is out of range for a decimal");
      return std::nullopt;
    }
    return d;
  }

  // ---- segments and scoring ----
  // The members of a circle: "lat", "lon" (when `p` is given) and "km", each a required number.
  // Ranges are program::compile's to check (located the same way). False on a problem.
  bool circle_at(const json::object& o, const path& at, geo_point* p, double& km) {
    bool ok = true;
    auto read = [&](std::string_view key, double& into) {
      const auto* v = o.if_contains(key);
      if (v == nullptr) {
        fail(at, "missing_field", fmt::format("missing required field {}", quoted(key)));
        ok = false;
      } else if (auto d = number(*v, child(at, key))) {
        into = *d;
      } else {
        ok = false;
      }
    };
    if (p != nullptr) {
      read("lat", p->lat);
      read("lon", p->lon);
    }
    read("km", km);
    return ok;
  }

  // "areas": [{"name", "lat", "lon", "km", "description"}]
  void areas_at(const json::value& v, rule_set& out) {
    const path aat = child(root_at, "areas");
    const json::array* a = array_at(v, aat);
    if (a == nullptr) {
      return;
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const path at = child(aat, i);
      const json::object* o = object_at((*a)[i], at);
      if (o == nullptr) {
        continue;
      }
      check_fields(*o, at, {"name", "description", "lat", "lon", "km"});
      area ar;
      if (const auto* n = o->if_contains("name")) {
        if (auto nm = name(*n, child(at, "name"), "an area name")) {
          ar.name = std::move(*nm);
        }
      } else {
        fail(at, "missing_field", "missing required field \"name\"");
      }
      if (const auto* d = o->if_contains("description")) {
        string(*d, child(at, "description"));
      }
      circle_at(*o, at, &ar.center, ar.radius_km);
      out.areas.push_back(std::move(ar));
    }
  }

  void segments(const json::value& v, rule_set& out) {
    const path sat = child(root_at, "segments");
    const json::array* a = array_at(v, sat);
    if (a == nullptr) {
      return;
    }
    std::unordered_map<std::string_view, std::size_t> first_with_name;
    // Names first: a segment may refer to an earlier one, rules to any.
    for (const auto& item : *a) {
      const json::value* n = item.is_object() ? item.get_object().if_contains("name") : nullptr;
      segment_names_.push_back(n != nullptr && n->is_string() ? std::string{n->get_string()}
                                                              : std::string{});
    }
    for (std::size_t i = 0; i < a->size(); ++i) {
      const path at = child(sat, i);
      const json::object* o = object_at((*a)[i], at);
      current_segment_ = i;
      if (o == nullptr) {
        continue;
      }
      check_fields(*o, at, {"name", "description", "if"});
      segment sg;
      if (const auto* n = o->if_contains("name")) {
        if (auto nm = name(*n, child(at, "name"), "a segment name")) {
          sg.name = std::move(*nm);
          if (auto [it, fresh] = first_with_name.emplace(std::string_view{n->get_string()}, i);
              !fresh) {
            fail(child(at, "name"), "duplicate_name",
                 fmt::format("duplicate segment name {} (first used by /segments/{})",
                             quoted(sg.name), it->second));
          }
        }
      } else {
        fail(at, "missing_field", "missing required field \"name\"");
      }
      if (const auto* d = o->if_contains("description")) {
        string(*d, child(at, "description"));
      }
      if (const auto* c = o->if_contains("if")) {
        if (auto cc = condition_at(*c, child(at, "if"), 1)) {
          sg.when = std::move(*cc);
        }
      } else {
        fail(at, "missing_field", "missing required field \"if\"");
      }
      out.segments.push_back(std::move(sg));
    }
    current_segment_ = npos;
  }

  void scoring_at(const json::value& v, nudge::scoring& out) {
    const path sat = child(root_at, "scoring");
    const json::object* o = object_at(v, sat);
    if (o == nullptr) {
      return;
    }
    check_fields(*o, sat, {"rules", "decay", "thresholds"});
    if (const auto* r = o->if_contains("rules")) {
      const path rat = child(sat, "rules");
      if (const json::array* list = array_at(*r, rat)) {
        for (std::size_t i = 0; i < list->size(); ++i) {
          if (auto sr = score_rule_at((*list)[i], child(rat, i))) {
            out.rules.push_back(std::move(*sr));
          }
        }
      }
    }
    if (const auto* d = o->if_contains("decay")) {
      const path dat = child(sat, "decay");
      if (const json::object* dobj = object_at(*d, dat)) {
        check_fields(*dobj, dat, {"every", "factor", "subtract"});
        score_decay decay;
        bool ok = true;
        if (const auto* e = dobj->if_contains("every")) {
          auto w = window(*e, child(dat, "every"));
          ok = ok && w.has_value();
          decay.every = w.value_or(duration{0});
        } else {
          fail(dat, "missing_field", "missing required field \"every\"");
          ok = false;
        }
        if (const auto* f = dobj->if_contains("factor")) {
          auto x = number(*f, child(dat, "factor"));
          if (x && (*x < 0 || *x > 1)) {
            fail(child(dat, "factor"), "bad_value", "a decay factor must be between 0 and 1");
            x.reset();
          }
          ok = ok && x.has_value();
          decay.factor = x.value_or(1);
        }
        if (const auto* sub = dobj->if_contains("subtract")) {
          auto x = number(*sub, child(dat, "subtract"));
          if (x && *x < 0) {
            fail(child(dat, "subtract"), "bad_value", "decay subtracts a number of 0 or more");
            x.reset();
          }
          ok = ok && x.has_value();
          decay.subtract = x.value_or(0);
        }
        if (ok && !dobj->contains("factor") && !dobj->contains("subtract")) {
          fail(dat, "missing_field", "a decay needs \"factor\", \"subtract\" or both");
          ok = false;
        }
        if (ok) {
          out.decay = decay;
        }
      }
    }
    if (const auto* t = o->if_contains("thresholds")) {
      const path tat = child(sat, "thresholds");
      if (const json::array* list = array_at(*t, tat)) {
        std::unordered_map<std::string_view, std::size_t> first_with_name;
        for (std::size_t i = 0; i < list->size(); ++i) {
          const path at = child(tat, i);
          const json::object* th = object_at((*list)[i], at);
          if (th == nullptr) {
            continue;
          }
          check_fields(*th, at, {"name", "at"});
          score_threshold st;
          bool ok = true;
          if (const auto* n = th->if_contains("name")) {
            auto nm = name(*n, child(at, "name"), "a threshold name");
            ok = nm.has_value();
            if (nm) {
              st.name = std::move(*nm);
              if (auto [it, fresh] = first_with_name.emplace(std::string_view{n->get_string()}, i);
                  !fresh) {
                fail(child(at, "name"), "duplicate_name",
                     fmt::format("duplicate threshold {} (first used by /scoring/thresholds/{})",
                                 quoted(st.name), it->second));
                ok = false;
              }
            }
          } else {
            fail(at, "missing_field", "missing required field \"name\"");
            ok = false;
          }
          if (const auto* a = th->if_contains("at")) {
            auto x = number(*a, child(at, "at"));
            ok = ok && x.has_value();
            st.at = x.value_or(0);
          } else {
            fail(at, "missing_field", "missing required field \"at\"");
            ok = false;
          }
          if (ok) {
            out.thresholds.push_back(std::move(st));
          }
        }
      }
    }
  }

  std::optional<score_rule> score_rule_at(const json::value& v, const path& at) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    check_fields(*o, at, {"id", "description", "on", "points", "cap"});
    score_rule r;
    bool ok = true;
    if (const auto* id = o->if_contains("id")) {
      auto s = name(*id, child(at, "id"), "a score rule id");
      ok = s.has_value();
      r.id = s.value_or("");
    } else {
      fail(at, "missing_field", "missing required field \"id\"");
      ok = false;
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    if (const auto* on = o->if_contains("on")) {
      auto m = trigger(*on, child(at, "on"));
      ok = ok && m.has_value();
      if (m) {
        r.on = std::move(*m);
      }
    } else {
      fail(at, "missing_field", "missing required field \"on\"");
      ok = false;
    }
    if (const auto* p = o->if_contains("points")) {
      auto x = number(*p, child(at, "points"));
      ok = ok && x.has_value();
      r.points = x.value_or(0);
    } else {
      fail(at, "missing_field", "missing required field \"points\"");
      ok = false;
    }
    if (const auto* c = o->if_contains("cap")) {
      const path cat = child(at, "cap");
      if (const json::object* co = object_at(*c, cat)) {
        check_fields(*co, cat, {"max", "per"});
        score_cap cap;
        if (const auto* m = co->if_contains("max")) {
          auto x = number(*m, child(cat, "max"));
          if (x && *x <= 0) {
            fail(child(cat, "max"), "bad_cap", "a score cap must be more than 0 points");
            x.reset();
          }
          ok = ok && x.has_value();
          cap.max_points = x.value_or(0);
        } else {
          fail(cat, "missing_field", "missing required field \"max\"");
          ok = false;
        }
        if (const auto* p = co->if_contains("per")) {
          auto w = window(*p, child(cat, "per"));
          ok = ok && w.has_value();
          cap.per = w.value_or(duration{0});
        } else {
          fail(cat, "missing_field", "missing required field \"per\"");
          ok = false;
        }
        r.cap = cap;
      } else {
        ok = false;
      }
    }
    if (!ok) {
      return std::nullopt;
    }
    return r;
  }

  std::optional<condition> happened_at(const json::value& v, const path& at, bool is_not) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    bool ok = true;
    if (is_not) {
      ok = check_fields(*o, at,
                        {"event", "key", "key_prefix", "tag_added", "stage_entered",
                         "segment_entered", "segment_exited", "score_crossed", "area_entered",
                         "area_exited", "within", "since_trigger"});
    } else {
      ok = check_fields(
          *o, at,
          {"event", "key", "key_prefix", "tag_added", "stage_entered", "segment_entered",
           "segment_exited", "score_crossed", "area_entered", "area_exited", "within",
           "since_trigger", "at_least", "at_most", "exactly"});
    }
    auto m = match_at(*o, at);
    ok = ok && m.has_value();
    condition c = happened(m.value_or(event_match{}));
    const json::value* within = o->if_contains("within");
    const json::value* since = o->if_contains("since_trigger");
    if (within != nullptr && since != nullptr) {
      fail(child(at, "since_trigger"), "ambiguous_form",
           "give \"within\" or \"since_trigger\", not both", true);
      ok = false;
    } else if (within != nullptr) {
      bool fine = true;
      if (auto cm = calendar(*within, child(at, "within"), true, c.window_length, fine)) {
        c.window_months = cm->count;
      }
      ok = ok && fine;
      c.window = window_kind::within;
    } else if (since != nullptr) {
      auto b = boolean(*since, child(at, "since_trigger"));
      if (b && !*b) {
        fail(child(at, "since_trigger"), "bad_value",
             "\"since_trigger\" can only be true (leave it out to count over the lifetime)");
        b.reset();
      }
      ok = ok && b.has_value();
      c.window = window_kind::since_trigger;
    }
    const bool windowed = c.window != window_kind::lifetime;
    if (is_not) {
      c.count = count_op::at_most;
      c.count_bound = 0;
    } else {
      const char* found = nullptr;
      for (auto [key, op] :
           {std::pair{"at_least", count_op::at_least}, std::pair{"at_most", count_op::at_most},
            std::pair{"exactly", count_op::exactly}}) {
        const json::value* n = o->if_contains(key);
        if (n == nullptr) {
          continue;
        }
        if (found != nullptr) {
          fail(child(at, key), "ambiguous_form",
               fmt::format("give one count bound; found {} and {}", quoted(found), quoted(key)),
               true);
          ok = false;
          continue;
        }
        found = key;
        auto b = count(*n, child(at, key), 0,
                       windowed ? max_kept_count : std::numeric_limits<std::int64_t>::max());
        ok = ok && b.has_value();
        c.count = op;
        c.count_bound = b.value_or(0);
      }
    }
    if (!ok) {
      return std::nullopt;
    }
    return c;
  }

  std::optional<condition> comparison(const json::object& o, const path& at) {
    const json::value* d = o.if_contains("detail");
    const json::value* f = o.if_contains("field");
    bool ok = true;
    if (d != nullptr && f != nullptr) {
      fail(child(at, "field"), "ambiguous_form", "give \"detail\" or \"field\", not both", true);
      return std::nullopt;
    }
    field target = field::detail;
    std::string detail_name;
    if (d != nullptr) {
      auto n = name(*d, child(at, "detail"), "a detail name");
      ok = n.has_value();
      detail_name = n.value_or("");
    } else {
      static constexpr std::array<std::pair<std::string_view, field>, 5> fields{
          {{"status", field::status},
           {"stage", field::stage},
           {"owner", field::owner},
           {"score", field::score},
           {"time_zone", field::time_zone}}};
      const path fat = child(at, "field");
      if (auto s = string(*f, fat)) {
        auto it = std::find_if(fields.begin(), fields.end(),
                               [&](const auto& p) { return p.first == *s; });
        if (it != fields.end()) {
          target = it->second;
        } else {
          std::array<std::string_view, 5> names{};
          std::transform(fields.begin(), fields.end(), names.begin(),
                         [](const auto& p) { return p.first; });
          auto hint = closest(*s, names);
          fail(fat, "unknown_field_name",
               hint ? fmt::format("unknown profile field {} (did you mean {}?)", describe(*f),
                                  quoted(*hint))
                    : fmt::format("unknown profile field {} (expected {}; use \"detail\" for "
                                  "contact details)",
                                  describe(*f), list_words(names)));
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    // The operator: exactly one of the operator keys; anything else is unknown.
    std::string_view op_name;
    for (const auto& m : o) {
      const std::string_view k{m.key()};
      if (k == "detail" || k == "field") {
        continue;
      }
      if (std::find(operators.begin(), operators.end(), k) == operators.end()) {
        auto hint = closest(k, operators);
        fail(child(at, k), "unknown_operator",
             hint ? fmt::format("unknown operator {} (did you mean {}?)", quoted(k), quoted(*hint))
                  : fmt::format("unknown operator {} (expected {})", quoted(k),
                                list_words(operators)),
             true);
        ok = false;
      } else if (op_name.empty()) {
        op_name = k;
      } else {
        fail(child(at, k), "ambiguous_form",
             fmt::format("give one operator per comparison; found {} and {} (combine "
                         "comparisons with \"all\")",
                         quoted(op_name), quoted(k)),
             true);
        ok = false;
      }
    }
    if (op_name.empty()) {
      if (ok) {
        fail(at, "missing_field",
             fmt::format("missing the operator (one of {})", list_words(operators)));
      }
      return std::nullopt;
    }
    const auto op = static_cast<compare_op>(std::find(operators.begin(), operators.end(), op_name) -
                                            operators.begin());
    const json::value& arg = o.at(op_name);
    const path oat = child(at, op_name);
    const bool is_text = target != field::detail && target != field::score;
    // Checks one operand against what the field holds.
    auto operand = [&](const json::value& v, const path& vat) -> std::optional<value> {
      auto x = val(v, vat);
      if (!x) {
        return x;
      }
      if (is_text && !std::holds_alternative<std::string>(*x)) {
        fail(vat, "bad_value",
             fmt::format("{} holds text; {} is not a string", field_label(target), describe(v)));
        return std::nullopt;
      }
      if (target == field::score && !std::holds_alternative<std::int64_t>(*x) &&
          !std::holds_alternative<double>(*x)) {
        fail(vat, "bad_value", fmt::format("score is a number; {} is not", describe(v)));
        return std::nullopt;
      }
      return x;
    };
    std::vector<value> operands;
    bool negated = false;
    switch (op) {
      case compare_op::exists: {
        auto b = boolean(arg, oat);
        ok = ok && b.has_value();
        negated = b.has_value() && !*b;
        break;
      }
      case compare_op::in: {
        const json::array* list = array_at(arg, oat);
        if (list == nullptr) {
          return std::nullopt;
        }
        if (list->empty()) {
          fail(oat, "empty_list", "\"in\" needs at least one candidate");
          return std::nullopt;
        }
        for (std::size_t i = 0; i < list->size(); ++i) {
          auto x = operand((*list)[i], child(oat, i));
          ok = ok && x.has_value();
          if (x) {
            operands.push_back(std::move(*x));
          }
        }
        break;
      }
      case compare_op::contains:
      case compare_op::prefix: {
        if (target == field::score) {
          fail(oat, "bad_value",
               fmt::format("{} compares text; score is a number", quoted(op_name)));
          return std::nullopt;
        }
        auto s = string(arg, oat);
        ok = ok && s.has_value();
        if (s) {
          operands.emplace_back(std::move(*s));
        }
        break;
      }
      default: {
        auto x = operand(arg, oat);
        ok = ok && x.has_value();
        if (x) {
          operands.push_back(std::move(*x));
        }
        break;
      }
    }
    if (!ok) {
      return std::nullopt;
    }
    condition c = compare(target, std::move(detail_name), op, std::move(operands));
    return negated ? negate(std::move(c)) : c;
  }

  static const char* field_label(field f) {
    switch (f) {
      case field::status:
        return "status";
      case field::stage:
        return "stage";
      case field::owner:
        return "owner";
      case field::time_zone:
        return "time_zone";
      case field::score:
        return "score";
      case field::detail:
        break;
    }
    return "detail";
  }

  // ---- actions ----
  std::optional<action> action_at(const json::value& v, const path& at) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return std::nullopt;
    }
    static constexpr std::array<std::string_view, 10> all_fields{
        "do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt", "transactional"};
    const json::value* verb = o->if_contains("do");
    if (verb == nullptr) {
      check_fields(*o, at,
                   {"do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt",
                    "transactional"});
      fail(at, "missing_field", "missing required field \"do\"");
      return std::nullopt;
    }
    auto verb_name = string(*verb, child(at, "do"));
    if (!verb_name) {
      return std::nullopt;
    }
    auto kind = action_from_name(*verb_name);
    if (!kind) {
      auto hint = closest(*verb_name, verbs);
      fail(child(at, "do"), "unknown_action",
           hint ? fmt::format("unknown action {} (did you mean {}?)", quoted(*verb_name),
                              quoted(*hint))
                : fmt::format("unknown action {} (expected {})", quoted(*verb_name),
                              list_words(verbs)));
      check_fields(*o, at,
                   {"do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt",
                    "transactional"});
      return std::nullopt;
    }
    const action_kind k = *kind;
    // Which optional fields apply to this verb.
    auto applies = [k](std::string_view f) {
      if (f == "do" || f == "delay" || f == "if" || f == "params") {
        return true;
      }
      if (f == "arg") {
        return k != action_kind::add_score;
      }
      if (f == "notify") {
        return !is_external(k);
      }
      if (f == "value") {
        return k == action_kind::set_detail || k == action_kind::add_score;
      }
      if (f == "pick" || f == "salt") {
        return k == action_kind::assign_owner;
      }
      if (f == "transactional") {
        return channel_of(k).has_value();
      }
      return false;
    };
    bool ok = true;
    for (const auto& m : *o) {
      const std::string_view f{m.key()};
      if (std::find(all_fields.begin(), all_fields.end(), f) == all_fields.end()) {
        std::vector<std::string_view> fitting;
        for (auto a : all_fields) {
          if (applies(a)) {
            fitting.push_back(a);
          }
        }
        unknown_field(f, at, fitting);
        ok = false;
      } else if (!applies(f)) {
        fail(child(at, f), "field_not_allowed",
             fmt::format("{} does not apply to {}", quoted(f), *verb_name), true);
        ok = false;
      }
    }
    action a;
    a.kind = k;
    if (k != action_kind::add_score) {
      if (const auto* arg = o->if_contains("arg")) {
        // The description is only needed for a message: check the common case first.
        auto s = arg->is_string() && !arg->get_string().empty()
                     ? std::optional<std::string>{std::string{arg->get_string()}}
                     : name(*arg, child(at, "arg"), fmt::format("the argument of {}", *verb_name));
        ok = ok && s.has_value();
        a.arg = s.value_or("");
        if (s && k == action_kind::assign_owner && groups_ != nullptr &&
            groups_->find(*s) == groups_->end()) {
          unknown_group(*s, child(at, "arg"));
          ok = false;
        } else if (s && k == action_kind::assign_owner && groups_ == nullptr) {
          unknown_group(*s, child(at, "arg"));
          ok = false;
        }
      } else {
        fail(at, "missing_field",
             fmt::format("missing required field \"arg\" ({} needs {})", *verb_name,
                         arg_meaning(k)));
        ok = false;
      }
    }
    if (k == action_kind::set_detail || k == action_kind::add_score) {
      if (const auto* x = o->if_contains("value")) {
        const path vat = child(at, "value");
        if (k == action_kind::add_score) {
          if (x->is_number() && std::isfinite(x->to_number<double>())) {
            a.val = x->to_number<double>();
          } else if (x->is_number()) {
            fail(vat, "bad_value", "the number is out of range for a decimal");
            ok = false;
          } else {
            wrong_type(*x, vat, "a number of points");
            ok = false;
          }
        } else {
          auto y = val(*x, vat);
          ok = ok && y.has_value();
          if (y) {
            a.val = std::move(*y);
          }
        }
      } else {
        fail(at, "missing_field",
             fmt::format("missing required field \"value\" ({} needs {})", *verb_name,
                         k == action_kind::add_score ? "the points" : "the value to set"));
        ok = false;
      }
    }
    if (const auto* d = o->if_contains("delay")) {
      auto dd = delay(*d, child(at, "delay"));
      ok = ok && dd.has_value();
      a.delay = dd.value_or(duration{0});
    }
    if (const auto* c = o->if_contains("if")) {
      auto cc = condition_at(*c, child(at, "if"), 1);
      ok = ok && cc.has_value();
      if (cc) {
        a.when = std::move(*cc);
      }
    }
    if (const auto* p = o->if_contains("params"); p != nullptr && applies("params")) {
      const path pat = child(at, "params");
      if (const json::object* po = object_at(*p, pat)) {
        for (const auto& m : *po) {
          if (auto s = string(m.value(), child(pat, m.key()))) {
            a.params[std::string{m.key()}] = std::move(*s);
          } else {
            ok = false;
          }
        }
      } else {
        ok = false;
      }
    }
    if (const auto* n = o->if_contains("transactional"); n != nullptr && applies("transactional")) {
      auto b = boolean(*n, child(at, "transactional"));
      ok = ok && b.has_value();
      a.transactional = b.value_or(false);
    }
    if (const auto* n = o->if_contains("notify"); n != nullptr && applies("notify")) {
      auto b = boolean(*n, child(at, "notify"));
      ok = ok && b.has_value();
      a.notify = b.value_or(false);
    }
    if (k == action_kind::assign_owner) {
      if (const auto* p = o->if_contains("pick")) {
        const path pat = child(at, "pick");
        if (auto s = string(*p, pat)) {
          if (*s == "hash") {
            a.pick = owner_pick::hash;
          } else if (*s == "round_robin") {
            a.pick = owner_pick::round_robin;
          } else {
            fail(pat, "bad_value",
                 fmt::format("unknown pick {} (expected \"hash\" or \"round_robin\")",
                             describe(*p)));
            ok = false;
          }
        } else {
          ok = false;
        }
      }
      if (const auto* s = o->if_contains("salt")) {
        auto ss = string(*s, child(at, "salt"));
        ok = ok && ss.has_value();
        a.salt = ss.value_or("");
        if (ss && a.pick == owner_pick::round_robin) {
          fail(child(at, "salt"), "field_not_allowed", "\"salt\" applies to the \"hash\" pick only",
               true);
          ok = false;
        }
      }
    }
    if (!ok) {
      return std::nullopt;
    }
    return a;
  }

  // ---- workflows ----
  void workflows_at(const json::value& v, rule_set& out) {
    const path& wat = workflows_at_;
    const json::array* list = array_at(v, wat);
    if (list == nullptr) {
      return;
    }
    std::unordered_map<std::string_view, std::size_t> first_with_id;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const path at = child(wat, i);
      const json::value& item = (*list)[i];
      if (const auto* o = item.if_object()) {
        if (const auto* id = o->if_contains("id"); id != nullptr && id->is_string()) {
          if (auto [it, fresh] = first_with_id.emplace(std::string_view{id->get_string()}, i);
              !fresh) {
            fail(child(at, "id"), "duplicate_id",
                 fmt::format("duplicate workflow id {} (first used by /workflows/{})",
                             quoted(id->get_string()), it->second));
          }
        }
      }
      out.workflows.push_back(workflow_at(item, at));
    }
  }

  workflow workflow_at(const json::value& v, const path& at) {
    workflow w;
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return w;
    }
    check_fields(
        *o, at,
        {"id", "description", "version", "status", "on_new_version", "entry", "exit_on", "exit_if",
         "reentry", "max_active_runs", "on_complete", "delivery", "steps", "previous_versions"});
    if (const auto* id = o->if_contains("id")) {
      if (auto s = name(*id, child(at, "id"), "a workflow id")) {
        w.id = std::move(*s);
      }
    } else {
      fail(at, "missing_field", "missing required field \"id\"");
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    if (const auto* n = o->if_contains("version")) {
      if (auto x = count(*n, child(at, "version"), 1, std::numeric_limits<std::uint32_t>::max())) {
        w.version = static_cast<std::uint32_t>(*x);
      }
    }
    if (const auto* s = o->if_contains("status")) {
      const path sat = child(at, "status");
      if (auto t = string(*s, sat)) {
        if (*t == "draft") {
          w.status = workflow_status::draft;
        } else if (*t == "active") {
          w.status = workflow_status::active;
        } else if (*t == "paused") {
          w.status = workflow_status::paused;
        } else if (*t == "archived") {
          w.status = workflow_status::archived;
        } else {
          fail(sat, "bad_value",
               fmt::format("unknown status {} (expected \"draft\", \"active\", \"paused\" or "
                           "\"archived\")",
                           describe(*s)));
        }
      }
    }
    if (const auto* s = o->if_contains("on_new_version")) {
      const path sat = child(at, "on_new_version");
      if (auto t = string(*s, sat)) {
        if (*t == "finish_on_old") {
          w.on_new_version = version_policy::finish_on_old;
        } else if (*t == "move_by_step_id") {
          w.on_new_version = version_policy::move_by_step_id;
        } else {
          fail(sat, "bad_value",
               fmt::format("unknown version policy {} (expected \"finish_on_old\" or "
                           "\"move_by_step_id\")",
                           describe(*s)));
        }
      }
    }
    if (const auto* e = o->if_contains("entry")) {
      entry_at(*e, child(at, "entry"), w.entry);
    } else {
      fail(at, "missing_field", "missing required field \"entry\"");
    }
    if (const auto* e = o->if_contains("exit_on")) {
      const path eat = child(at, "exit_on");
      if (const json::array* a = array_at(*e, eat)) {
        for (std::size_t j = 0; j < a->size(); ++j) {
          if (auto m = trigger((*a)[j], child(eat, j))) {
            w.exit_on.push_back(std::move(*m));
          }
        }
      }
    }
    if (const auto* c = o->if_contains("exit_if")) {
      if (auto cc = condition_at(*c, child(at, "exit_if"), 1)) {
        w.exit_when = std::move(*cc);
      }
    }
    if (const auto* re = o->if_contains("reentry")) {
      workflow_reentry_at(*re, child(at, "reentry"), w);
    }
    if (const auto* n = o->if_contains("max_active_runs")) {
      if (auto x = count(*n, child(at, "max_active_runs"), 1, max_kept_count)) {
        w.max_active_runs = static_cast<std::uint32_t>(*x);
      }
    }
    if (const auto* d = o->if_contains("delivery")) {
      own_delivery_at(*d, child(at, "delivery"), w.delivery);
    }
    if (const auto* c = o->if_contains("on_complete")) {
      const path cat = child(at, "on_complete");
      if (const json::object* co = object_at(*c, cat)) {
        check_fields(*co, cat, {"copy_to_group", "move_to_group", "from_group"});
        const auto* copy = co->if_contains("copy_to_group");
        const auto* move = co->if_contains("move_to_group");
        const auto* from = co->if_contains("from_group");
        if ((copy != nullptr) == (move != nullptr)) {
          fail(cat, copy != nullptr ? "ambiguous_form" : "missing_field",
               "give exactly one of \"copy_to_group\" and \"move_to_group\"");
        } else if (copy != nullptr) {
          if (from != nullptr) {
            fail(child(cat, "from_group"), "field_not_allowed",
                 "\"from_group\" goes with \"move_to_group\"", true);
          }
          if (auto g = name(*copy, child(cat, "copy_to_group"), "a group")) {
            w.complete_to_group = std::move(*g);
          }
        } else {
          if (auto g = name(*move, child(cat, "move_to_group"), "a group")) {
            w.complete_to_group = std::move(*g);
          }
          if (from == nullptr) {
            fail(cat, "missing_field",
                 "missing required field \"from_group\" (a move needs the group it leaves)");
          } else if (auto g = name(*from, child(cat, "from_group"), "a group")) {
            w.complete_from_group = std::move(*g);
          }
        }
      }
    }
    if (const auto* s = o->if_contains("steps")) {
      const path sat = child(at, "steps");
      if (const json::array* a = array_at(*s, sat)) {
        if (a->empty()) {
          fail(sat, "empty_list", "a workflow needs at least one step");
        }
        for (std::size_t j = 0; j < a->size(); ++j) {
          w.steps.push_back(step_at((*a)[j], child(sat, j)));
        }
      }
    } else {
      fail(at, "missing_field", "missing required field \"steps\"");
    }
    if (const auto* pvs = o->if_contains("previous_versions")) {
      const path pat = child(at, "previous_versions");
      if (const json::array* a = array_at(*pvs, pat)) {
        for (std::size_t k = 0; k < a->size(); ++k) {
          const path vat = child(pat, k);
          const json::object* vo = object_at((*a)[k], vat);
          if (vo == nullptr) {
            continue;
          }
          check_fields(*vo, vat, {"version", "steps"});
          workflow_version pv;
          if (const auto* n = vo->if_contains("version")) {
            if (auto x = count(*n, child(vat, "version"), 1,
                               std::numeric_limits<std::uint32_t>::max())) {
              pv.version = static_cast<std::uint32_t>(*x);
            }
          } else {
            fail(vat, "missing_field", "missing required field \"version\"");
          }
          if (const auto* s = vo->if_contains("steps")) {
            const path sat = child(vat, "steps");
            if (const json::array* steps = array_at(*s, sat)) {
              if (steps->empty()) {
                fail(sat, "empty_list", "a workflow version needs at least one step");
              }
              for (std::size_t j = 0; j < steps->size(); ++j) {
                pv.steps.push_back(step_at((*steps)[j], child(sat, j)));
              }
            }
          } else {
            fail(vat, "missing_field", "missing required field \"steps\"");
          }
          w.previous_versions.push_back(std::move(pv));
        }
      }
    }
    return w;
  }

  void entry_at(const json::value& v, const path& at, workflow_entry& e) {
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return;
    }
    check_fields(*o, at, {"on", "yearly", "if"});
    const auto* on = o->if_contains("on");
    const auto* yearly = o->if_contains("yearly");
    if ((on != nullptr) == (yearly != nullptr)) {
      fail(at, on != nullptr ? "ambiguous_form" : "missing_field",
           "give exactly one of \"on\" (an event) and \"yearly\" (a date detail)");
    } else if (on != nullptr) {
      e.kind = entry_kind::event;
      if (auto m = trigger(*on, child(at, "on"))) {
        e.on = std::move(*m);
      }
    } else {
      e.kind = entry_kind::date;
      const path yat = child(at, "yearly");
      if (const json::object* y = object_at(*yearly, yat)) {
        check_fields(*y, yat, {"detail", "at", "offset_days"});
        if (const auto* d = y->if_contains("detail")) {
          if (auto s = name(*d, child(yat, "detail"), "a detail name")) {
            e.detail = std::move(*s);
          }
        } else {
          fail(yat, "missing_field", "missing required field \"detail\"");
        }
        if (const auto* t = y->if_contains("at")) {
          if (auto s = clock_time(*t, child(yat, "at"))) {
            e.time_of_day = *s;
          }
        }
        if (const auto* d = y->if_contains("offset_days")) {
          if (auto n = count(*d, child(yat, "offset_days"), -366, 366)) {
            e.offset_days = static_cast<std::int32_t>(*n);
          }
        }
      }
    }
    if (const auto* c = o->if_contains("if")) {
      if (auto cc = condition_at(*c, child(at, "if"), 1)) {
        e.when = std::move(*cc);
      }
    }
  }

  void workflow_reentry_at(const json::value& v, const path& at, workflow& w) {
    if (const auto* s = v.if_string()) {
      if (*s == "always") {
        w.reentry = workflow_reentry::always;
      } else if (*s == "never") {
        w.reentry = workflow_reentry::never;
      } else {
        fail(at, "bad_reentry",
             fmt::format("unknown re-entry policy {} (expected \"always\", \"never\" or "
                         "{{\"cool_down\": DURATION}})",
                         describe(v)));
      }
      return;
    }
    if (const auto* o = v.if_object()) {
      check_fields(*o, at, {"cool_down"});
      if (const auto* d = o->if_contains("cool_down")) {
        if (auto x = window(*d, child(at, "cool_down"))) {
          w.reentry = workflow_reentry::cool_down;
          w.cool_down = *x;
        }
      } else {
        fail(at, "missing_field", "missing required field \"cool_down\"");
      }
      return;
    }
    wrong_type(v, at, "\"always\", \"never\" or {\"cool_down\": DURATION}");
  }

  // "HH:MM" or "HH:MM:SS" -> seconds after midnight.
  std::optional<std::int32_t> clock_time(const json::value& v, const path& at) {
    auto s = string(v, at);
    if (!s) {
      return std::nullopt;
    }
    auto two = [&](std::size_t pos) {
      return pos + 2 <= s->size() && std::isdigit(static_cast<unsigned char>((*s)[pos])) != 0 &&
                     std::isdigit(static_cast<unsigned char>((*s)[pos + 1])) != 0
                 ? ((*s)[pos] - '0') * 10 + ((*s)[pos + 1] - '0')
                 : -1;
    };
    const bool shape = (s->size() == 5 || (s->size() == 8 && (*s)[5] == ':')) && (*s)[2] == ':';
    const int h = two(0), m = two(3), sec = s->size() == 8 ? two(6) : 0;
    if (!shape || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59) {
      fail(at, "bad_time",
           fmt::format("{} is not a time of day (expected \"HH:MM\" or \"HH:MM:SS\", e.g. "
                       "\"09:30\")",
                       describe(v)));
      return std::nullopt;
    }
    return h * 3600 + m * 60 + sec;
  }

  // A duration that may be negative: "-3d" or "3d".
  std::optional<duration> offset(const json::value& v, const path& at) {
    const auto* s = v.if_string();
    if (s == nullptr) {
      wrong_type(v, at, "a duration, possibly negative (e.g. \"-3d\")");
      return std::nullopt;
    }
    std::string_view text{*s};
    const bool negative = text.starts_with('-');
    if (negative) {
      text.remove_prefix(1);
    }
    auto d = parse_duration(text);
    if (!d || *d > limits_.max_delay) {
      fail(at, "bad_duration",
           fmt::format("{} is not an offset (expected e.g. \"-3d\" or \"12h\", at most {})",
                       describe(v), format_duration(limits_.max_delay)));
      return std::nullopt;
    }
    return negative ? -*d : *d;
  }

  std::string step_ref(const json::object& o, const path& at, std::string_view field) {
    if (const auto* n = o.if_contains(field)) {
      if (auto s = name(*n, child(at, field), "a step id")) {
        return std::move(*s);
      }
    }
    return {};
  }

  workflow_step step_at(const json::value& v, const path& at) {
    workflow_step st;
    const json::object* o = object_at(v, at);
    if (o == nullptr) {
      return st;
    }
    static constexpr std::array<std::string_view, 7> forms{"send",     "act",   "wait", "if",
                                                           "wait_for", "split", "end"};
    check_fields(*o, at,
                 {"id", "description", "send", "act", "wait", "if", "wait_for", "split", "end",
                  "next", "yes", "no", "within", "from_previous_message"});
    if (const auto* id = o->if_contains("id")) {
      if (auto s = name(*id, child(at, "id"), "a step id")) {
        st.id = std::move(*s);
      }
    } else {
      fail(at, "missing_field", "missing required field \"id\"");
    }
    if (const auto* d = o->if_contains("description")) {
      string(*d, child(at, "description"));
    }
    std::string_view form;
    int found = 0;
    for (auto f : forms) {
      if (o->if_contains(f) != nullptr) {
        form = form.empty() ? f : form;
        ++found;
      }
    }
    if (found != 1) {
      fail(at, found == 0 ? "missing_field" : "ambiguous_form",
           fmt::format("a step needs exactly one of {}", list_words(forms)));
      return st;
    }
    // Which of next / yes / no / within / from_previous_message the form takes.
    auto allow = [&](std::initializer_list<std::string_view> ok) {
      for (auto f : {"next", "yes", "no", "within", "from_previous_message"}) {
        if (o->if_contains(f) != nullptr &&
            std::find(ok.begin(), ok.end(), std::string_view{f}) == ok.end()) {
          fail(child(at, f), "field_not_allowed",
               fmt::format("{} does not apply to a {} step", quoted(f), quoted(form)), true);
        }
      }
    };
    const json::value& body = *o->if_contains(form);
    const path bat = child(at, form);
    if (form == "send" || form == "act") {
      st.kind = form == "send" ? step_kind::send : step_kind::act;
      allow({"next"});
      if (auto a = action_at(body, bat)) {
        st.act = std::move(*a);
      }
      st.next = step_ref(*o, at, "next");
    } else if (form == "wait") {
      st.kind = step_kind::wait;
      allow({"next"});
      wait_at(body, bat, st);
      st.next = step_ref(*o, at, "next");
    } else if (form == "if") {
      st.kind = step_kind::branch;
      allow({"yes", "no"});
      if (auto c = condition_at(body, bat, 1)) {
        st.when = std::move(*c);
      }
      st.yes = step_ref(*o, at, "yes");
      st.no = step_ref(*o, at, "no");
    } else if (form == "wait_for") {
      st.kind = step_kind::wait_for;
      allow({"yes", "no", "within", "from_previous_message"});
      if (auto m = trigger(body, bat)) {
        st.event = std::move(*m);
      }
      if (const auto* w = o->if_contains("within")) {
        if (auto d = window(*w, child(at, "within"))) {
          st.timeout = *d;
        }
      }
      if (const auto* f = o->if_contains("from_previous_message")) {
        st.from_previous_message = boolean(*f, child(at, "from_previous_message")).value_or(false);
      }
      st.yes = step_ref(*o, at, "yes");
      st.no = step_ref(*o, at, "no");
    } else if (form == "split") {
      st.kind = step_kind::split;
      allow({});
      if (const json::array* a = array_at(body, bat)) {
        for (std::size_t k = 0; k < a->size(); ++k) {
          const path pat = child(bat, k);
          const json::object* po = object_at((*a)[k], pat);
          if (po == nullptr) {
            continue;
          }
          check_fields(*po, pat, {"percent", "next"});
          split_path sp;
          if (const auto* p = po->if_contains("percent")) {
            sp.percent =
                static_cast<std::uint32_t>(count(*p, child(pat, "percent"), 0, 100).value_or(0));
          } else {
            fail(pat, "missing_field", "missing required field \"percent\"");
          }
          if (po->if_contains("next") == nullptr) {
            fail(pat, "missing_field", "missing required field \"next\"");
          }
          sp.next = step_ref(*po, pat, "next");
          st.paths.push_back(std::move(sp));
        }
      }
    } else {
      st.kind = step_kind::end;
      allow({});
      if (auto b = boolean(body, bat); b && !*b) {
        fail(bat, "bad_value", "\"end\" must be true");
      }
    }
    return st;
  }

  // WAIT: "1d" | {"after": "delivered"|"opened"|"clicked", "plus", "timeout", "no"}
  //       | {"until_time": "09:00", "weekdays": [...]} | {"until_date": DETAIL, "offset"}
  void wait_at(const json::value& v, const path& at, workflow_step& st) {
    if (v.is_string()) {
      st.wait = wait_kind::fixed;
      bool ok = true;
      if (auto m = calendar(v, at, true, st.length, ok)) {
        st.length_months = m->count;
      }
      return;
    }
    const json::object* o = v.if_object();
    if (o == nullptr) {
      wrong_type(v, at, "a duration or an object with \"after\", \"until_time\" or \"until_date\"");
      return;
    }
    const auto* after = o->if_contains("after");
    const auto* time = o->if_contains("until_time");
    const auto* date = o->if_contains("until_date");
    if ((after != nullptr) + (time != nullptr) + (date != nullptr) != 1) {
      fail(at, "missing_field", "give exactly one of \"after\", \"until_time\" and \"until_date\"");
      return;
    }
    if (after != nullptr) {
      st.wait = wait_kind::after_message;
      check_fields(*o, at, {"after", "plus", "timeout", "no"});
      const path aat = child(at, "after");
      if (auto s = string(*after, aat)) {
        if (*s == "delivered") {
          st.moment = message_moment::delivered;
        } else if (*s == "opened") {
          st.moment = message_moment::opened;
        } else if (*s == "clicked") {
          st.moment = message_moment::clicked;
        } else {
          fail(aat, "bad_value",
               fmt::format("unknown moment {} (expected \"delivered\", \"opened\" or "
                           "\"clicked\")",
                           describe(*after)));
        }
      }
      if (const auto* p = o->if_contains("plus")) {
        st.length = delay(*p, child(at, "plus")).value_or(duration{0});
      }
      if (const auto* t = o->if_contains("timeout")) {
        st.timeout = window(*t, child(at, "timeout")).value_or(duration{0});
      }
      st.no = step_ref(*o, at, "no");
    } else if (time != nullptr) {
      st.wait = wait_kind::time_of_day;
      check_fields(*o, at, {"until_time", "weekdays"});
      st.time_of_day = clock_time(*time, child(at, "until_time")).value_or(0);
      if (const auto* w = o->if_contains("weekdays")) {
        st.weekdays = weekdays_at(*w, child(at, "weekdays")).value_or(st.weekdays);
      }
    } else {
      st.wait = wait_kind::date;
      check_fields(*o, at, {"until_date", "offset"});
      if (auto s = name(*date, child(at, "until_date"), "a detail name")) {
        st.detail = std::move(*s);
      }
      if (const auto* d = o->if_contains("offset")) {
        st.length = offset(*d, child(at, "offset")).value_or(duration{0});
      }
    }
  }

  void unknown_group(const std::string& g, const path& at) {
    std::vector<std::string> names;
    if (groups_ != nullptr) {
      for (const auto& [n, members] : *groups_) {
        names.push_back(n);
      }
    }
    if (auto hint = closest(g, names)) {
      fail(
          at, "unknown_group",
          fmt::format("no owner group {} is defined (did you mean {}?)", quoted(g), quoted(*hint)));
    } else {
      fail(at, "unknown_group",
           fmt::format("no owner group {} is defined (define it in \"owner_groups\")", quoted(g)));
    }
  }

  static const char* arg_meaning(action_kind k) {
    switch (k) {
      case action_kind::send_email:
      case action_kind::send_sms:
      case action_kind::web_push:
      case action_kind::show_popup:
      case action_kind::send_chat:
      case action_kind::notify_owner:
        return "a template";
      case action_kind::generate_coupon:
        return "a coupon kind";
      case action_kind::webhook:
        return "a URL";
      case action_kind::add_tag:
      case action_kind::remove_tag:
        return "a tag";
      case action_kind::set_detail:
        return "a detail name";
      case action_kind::set_status:
        return "a status";
      case action_kind::set_stage:
        return "a stage";
      case action_kind::assign_owner:
        return "an owner group";
      case action_kind::add_to_group:
      case action_kind::remove_from_group:
        return "a group";
      case action_kind::add_score:
        break;
    }
    return "an argument";
  }
};

// ---- Locating pointers in the text ------------------------------------------------------------

// Walks text that Boost.JSON has already accepted (so it is well-formed and its nesting is
// bounded) and finds duplicate keys, which the DOM merges without a word. Given the pointers to
// report, it also records where each of them (and each of their ancestors) starts: the value,
// and the key for object members. Subtrees that hold no wanted pointer are skipped over without
// building their pointers, so locating a few problems in a large file stays cheap.
class locator {
 public:
  struct place {
    std::size_t key = npos;  // the member's key, for object members
    std::size_t value = 0;
  };
  struct duplicate {
    std::string pointer;  // empty unless the locator records
    std::string key;
    std::size_t first = 0, second = 0;  // key offsets
  };

  /// `wanted`: the pointers to record, with all their ancestors; null to record nothing.
  /// `all_paths`: build every pointer, so that duplicates anywhere are reported with theirs.
  locator(std::string_view text, std::size_t start, const std::unordered_set<std::string>* wanted,
          bool all_paths)
      : text_(text), pos_(start), wanted_(wanted), all_paths_(all_paths) {}

  void run() {
    skip_ws();
    std::string path;
    value(path, npos, wanted_ != nullptr);
  }

  std::unordered_map<std::string, place> places;
  std::vector<duplicate> duplicates;

 private:
  struct key_entry {
    std::string_view key;  // unescaped: into the text, or into owned_
    std::size_t offset;
  };
  std::string_view text_;
  std::size_t pos_;
  const std::unordered_set<std::string>* wanted_;
  bool all_paths_;
  std::vector<key_entry> keys_;    // a stack: the keys of each open object
  std::deque<std::string> owned_;  // unescaped keys that had escapes (stable addresses)

  void skip_ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  // Skips a string starting at pos_ (the opening quote); returns its raw contents.
  std::string_view string_raw() {
    const std::size_t begin = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != '"') {
      pos_ += text_[pos_] == '\\' ? 2 : 1;
    }
    const std::string_view raw = text_.substr(begin, pos_ - begin);
    ++pos_;
    return raw;
  }

  std::string_view unescape(std::string_view raw, std::size_t begin_quote) {
    if (raw.find('\\') == std::string_view::npos) {
      return raw;
    }
    json::error_code ec;
    auto v = json::parse(text_.substr(begin_quote, raw.size() + 2), ec);
    owned_.push_back(ec ? std::string{raw} : std::string{v.as_string()});
    return owned_.back();
  }

  void value(std::string& path, std::size_t key_at, bool recording) {
    // `recording`: `path` is being built for this value.
    if (recording) {
      const bool is_wanted = wanted_->count(path) > 0;
      if (is_wanted) {
        places[path] = place{key_at, pos_};
      }
      recording = is_wanted || all_paths_;
    }
    if (pos_ >= text_.size()) {
      return;
    }
    const char c = text_[pos_];
    if (c == '{') {
      ++pos_;
      skip_ws();
      if (pos_ < text_.size() && text_[pos_] == '}') {
        ++pos_;
        return;
      }
      const std::size_t frame = keys_.size();
      while (pos_ < text_.size()) {
        const std::size_t kat = pos_;
        const std::string_view key = unescape(string_raw(), kat);
        skip_ws();
        ++pos_;  // ':'
        skip_ws();
        const std::size_t len = path.size();
        if (recording) {
          path += '/';
          path += token(key);
        }
        value(path, kat, recording);
        path.resize(len);
        keys_.push_back({key, kat});
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          skip_ws();
          continue;
        }
        ++pos_;  // '}'
        break;
      }
      find_duplicates(path, frame, recording);
      keys_.resize(frame);
      return;
    }
    if (c == '[') {
      ++pos_;
      skip_ws();
      if (pos_ < text_.size() && text_[pos_] == ']') {
        ++pos_;
        return;
      }
      for (std::size_t i = 0; pos_ < text_.size(); ++i) {
        const std::size_t len = path.size();
        if (recording) {
          path += '/';
          path += std::to_string(i);
        }
        value(path, npos, recording);
        path.resize(len);
        skip_ws();
        if (pos_ < text_.size() && text_[pos_] == ',') {
          ++pos_;
          skip_ws();
          continue;
        }
        ++pos_;  // ']'
        break;
      }
      return;
    }
    if (c == '"') {
      string_raw();
      return;
    }
    while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != ']' && text_[pos_] != '}' &&
           text_[pos_] != ' ' && text_[pos_] != '\t' && text_[pos_] != '\n' &&
           text_[pos_] != '\r') {
      ++pos_;
    }
  }

  // Reports each later occurrence of a key in the object whose keys are keys_[frame...].
  void find_duplicates(const std::string& path, std::size_t frame, bool recording) {
    const std::size_t n = keys_.size() - frame;
    if (n < 2) {
      return;
    }
    auto report = [&](const key_entry& first, const key_entry& later) {
      duplicates.push_back({recording ? path + "/" + token(later.key) : std::string{},
                            std::string{later.key}, first.offset, later.offset});
    };
    if (n <= 32) {  // rule objects are small: pairwise, without allocating
      for (std::size_t i = frame + 1; i < keys_.size(); ++i) {
        for (std::size_t j = frame; j < i; ++j) {
          if (keys_[j].key == keys_[i].key) {
            report(keys_[j], keys_[i]);
            break;
          }
        }
      }
      return;
    }
    std::vector<key_entry> sorted(keys_.begin() + static_cast<std::ptrdiff_t>(frame), keys_.end());
    std::stable_sort(sorted.begin(), sorted.end(),
                     [](const key_entry& a, const key_entry& b) { return a.key < b.key; });
    for (std::size_t i = 1, first = 0; i < sorted.size(); ++i) {
      if (sorted[i].key != sorted[first].key) {
        first = i;
      } else {
        report(sorted[first], sorted[i]);
      }
    }
  }
};

// The pointers to locate and all their ancestors ("/a/b" -> "/a/b", "/a", "").
std::unordered_set<std::string> with_ancestors(const std::vector<std::string>& pointers) {
  std::unordered_set<std::string> out;
  for (std::string p : pointers) {
    for (;;) {
      if (!out.insert(p).second) {
        break;  // its ancestors are in already
      }
      if (p.empty()) {
        break;
      }
      p.resize(p.rfind('/'));
    }
  }
  return out;
}

// Offsets to 1-based line and column; columns count UTF-8 characters, not bytes.
class line_index {
 public:
  explicit line_index(std::string_view text) : text_(text) {
    starts_.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\n') {
        starts_.push_back(i + 1);
      }
    }
  }
  std::pair<std::size_t, std::size_t> at(std::size_t offset) const {
    offset = std::min(offset, text_.size());
    const auto it = std::upper_bound(starts_.begin(), starts_.end(), offset) - 1;
    std::size_t column = 1;
    for (std::size_t i = *it; i < offset; ++i) {
      if ((static_cast<unsigned char>(text_[i]) & 0xC0U) != 0x80U) {
        ++column;
      }
    }
    return {static_cast<std::size_t>(it - starts_.begin()) + 1, column};
  }

 private:
  std::string_view text_;
  std::vector<std::size_t> starts_;
};

// Everything one load produced: the rules, or the located problems.
struct parsed {
  rule_set rules;
  std::vector<diagnostic> diagnostics;
  bool walked = false;  // `rules` holds what the walker could read (also with problems)
};

diagnostic make(const std::string& file, const line_index& lines, std::size_t offset,
                std::string pointer, std::string code, std::string message) {
  diagnostic d;
  d.file = file;
  std::tie(d.line, d.column) = lines.at(offset);
  d.json_pointer = std::move(pointer);
  d.code = std::move(code);
  d.message = std::move(message);
  return d;
}

// Where `pointer` starts in the text, falling back to its nearest ancestor that is there (the
// compiler names parts like "/rules/0/on/event" that a shorthand does not spell out).
std::size_t offset_of(const locator& loc, std::string pointer, bool at_key) {
  for (;;) {
    if (auto it = loc.places.find(pointer); it != loc.places.end()) {
      if (at_key && it->second.key != npos) {
        return it->second.key;
      }
      return it->second.value;
    }
    if (pointer.empty()) {
      return 0;
    }
    pointer.resize(pointer.rfind('/'));
    at_key = false;
  }
}

std::string syntax_message(const json::error_code& ec, std::size_t max_depth, std::string_view text,
                           std::size_t at) {
  if (ec == json::error::too_deep) {
    return fmt::format("JSON nested deeper than {} levels", max_depth);
  }
  if (ec == json::error::incomplete) {
    return "JSON syntax error: the text ends before the JSON value does";
  }
  if (ec == json::error::extra_data) {
    return "JSON syntax error: unexpected text after the JSON value";
  }
  if (ec == json::error::exponent_overflow) {
    return "JSON syntax error: number out of range";
  }
  if (ec == json::error::syntax && at < text.size()) {
    const auto c = static_cast<unsigned char>(text[at]);
    if (c >= 0x20 && c < 0x7F) {
      return fmt::format("JSON syntax error: unexpected {}", quoted(text.substr(at, 1)));
    }
    return fmt::format("JSON syntax error: unexpected byte 0x{:02X}", c);
  }
  return fmt::format("JSON syntax error: {}", ec.message());
}

// The nesting Boost.JSON allows: rule file structure around the deepest allowed condition
// (each condition level takes an object and an array).
std::size_t max_json_depth(const program_limits& limits) {
  return 2 * limits.max_condition_depth + 16;
}

std::size_t bom_length(std::string_view text) {
  return text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;  // as some editors write
}

// Positions for `problems` (and duplicate keys, when asked), sorted by position in the text.
std::vector<diagnostic> locate(std::string_view text, const std::string& file,
                               std::vector<problem> problems, bool with_duplicates) {
  std::vector<std::string> pointers;
  pointers.reserve(problems.size());
  for (const auto& pr : problems) {
    pointers.push_back(pr.pointer);
  }
  const auto wanted = with_ancestors(pointers);
  locator loc{text, bom_length(text), &wanted, with_duplicates};
  loc.run();
  const line_index lines(text);
  std::vector<std::pair<std::size_t, diagnostic>> found;
  for (const auto& d : loc.duplicates) {
    const auto [line, column] = lines.at(d.first);
    found.emplace_back(d.second, make(file, lines, d.second, d.pointer, "duplicate_key",
                                      fmt::format("duplicate field {} (first at {}:{})",
                                                  quoted(d.key), line, column)));
  }
  for (auto& pr : problems) {
    const std::size_t at = offset_of(loc, pr.pointer, pr.at_key);
    found.emplace_back(at, make(file, lines, at, std::move(pr.pointer), std::move(pr.code),
                                std::move(pr.message)));
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<diagnostic> out;
  out.reserve(found.size());
  for (auto& [at, d] : found) {
    out.push_back(std::move(d));
  }
  return out;
}

// Strings and field names longer than the limit. A long field name is reported at its object:
// a pointer holding the name would be as long as the name.
void check_lengths(const json::value& v, const path& at, std::size_t max,
                   std::vector<problem>& out) {
  auto too_long = [&](std::string_view what, std::size_t size) {
    out.push_back({at.str(), false, "too_long",
                   fmt::format("{} of {} bytes; at most {} are allowed (max_string_bytes)", what,
                               size, max)});
  };
  switch (v.kind()) {
    case json::kind::string:
      if (v.get_string().size() > max) {
        too_long("a string", v.get_string().size());
      }
      return;
    case json::kind::array: {
      const auto& a = v.get_array();
      for (std::size_t i = 0; i < a.size(); ++i) {
        check_lengths(a[i], child(at, i), max, out);
      }
      return;
    }
    case json::kind::object:
      for (const auto& m : v.get_object()) {
        if (m.key().size() > max) {
          too_long("a field name", m.key().size());
          continue;
        }
        check_lengths(m.value(), child(at, m.key()), max, out);
      }
      return;
    default:
      return;
  }
}

diagnostic too_large(const std::string& file, std::size_t size, std::size_t max) {
  diagnostic d;
  d.file = file;
  d.code = "too_large";
  d.message =
      fmt::format("the rule file has {} bytes; at most {} are allowed (max_text_bytes)", size, max);
  return d;
}

parsed parse_impl(std::string_view text, const load_options& options) {
  parsed out;
  if (text.size() > options.limits.max_text_bytes) {
    out.diagnostics.push_back(
        too_large(options.file_name, text.size(), options.limits.max_text_bytes));
    return out;
  }
  const std::size_t start = bom_length(text);
  json::parse_options opts;
  opts.max_depth = max_json_depth(options.limits);
  // The DOM lives in an arena (the parser's constructor argument is only its scratch space): one
  // allocation per block instead of one per value, and no walk to free it.
  json::monotonic_resource arena;
  json::parser p({}, opts);
  p.reset(&arena);
  json::error_code ec;
  const std::size_t used = p.write(text.data() + start, text.size() - start, ec);
  if (ec) {
    const line_index lines(text);
    const std::size_t at = ec == json::error::incomplete ? text.size() : start + used;
    out.diagnostics.push_back(make(options.file_name, lines, at, "",
                                   ec == json::error::too_deep ? "too_deep" : "syntax",
                                   syntax_message(ec, opts.max_depth, text, at)));
    return out;
  }
  const json::value root = p.release();
  {
    // Before the walker, which would quote the long strings in its own messages.
    std::vector<problem> long_strings;
    check_lengths(root, path{}, options.limits.max_string_bytes, long_strings);
    if (!long_strings.empty()) {
      out.diagnostics = locate(text, options.file_name, std::move(long_strings), false);
      return out;
    }
  }
  walker w{options.limits};
  out.rules = w.run(root);
  out.walked = true;
  locator scan{text, start, nullptr, false};
  scan.run();
  if (!w.problems.empty() || !scan.duplicates.empty()) {
    out.diagnostics =
        locate(text, options.file_name, std::move(w.problems), !scan.duplicates.empty());
  }
  return out;
}

load_result load_impl(std::string_view text, const load_options& options) {
  load_result r;
  parsed p = parse_impl(text, options);
  if (!p.diagnostics.empty()) {
    r.diagnostics = std::move(p.diagnostics);
    if (p.walked) {
      // Every problem at once: the compiler's too, where the parser's cannot have caused them.
      try {
        program::compile(std::move(p.rules), options.limits);
      } catch (const rule_error& e) {
        std::vector<problem> more;
        for (const auto& d : detail::independent_problems(r.diagnostics, e.diagnostics())) {
          more.push_back({d.json_pointer, false, d.code, d.message});
        }
        for (auto& d : locate(text, options.file_name, std::move(more), false)) {
          r.diagnostics.push_back(std::move(d));
        }
        std::stable_sort(r.diagnostics.begin(), r.diagnostics.end(),
                         [](const auto& x, const auto& y) {
                           return std::tie(x.line, x.column) < std::tie(y.line, y.column);
                         });
      }
    }
    return r;
  }
  try {
    r.program = program::compile(std::move(p.rules), options.limits);
  } catch (const rule_error& e) {
    // The compiler knows pointers, not positions: locate them in the text.
    std::vector<problem> problems;
    for (const auto& d : e.diagnostics()) {
      problems.push_back({d.json_pointer, false, d.code, d.message});
    }
    r.diagnostics = locate(text, options.file_name, std::move(problems), false);
  }
  return r;
}

}  // namespace

rule_set parse_rules(std::string_view json_text, const load_options& options) {
  parsed p = parse_impl(json_text, options);
  if (!p.diagnostics.empty()) {
    throw rule_error(std::move(p.diagnostics));
  }
  return std::move(p.rules);
}

std::shared_ptr<const program> load_rules(std::string_view json_text, const load_options& options) {
  load_result r = load_impl(json_text, options);
  if (!r) {
    throw rule_error(std::move(r.diagnostics));
  }
  return std::move(r.program);
}

load_result try_load_rules(std::string_view json_text, const load_options& options) {
  return load_impl(json_text, options);
}

std::shared_ptr<const program> load_rules_file(const std::string& path, program_limits limits) {
  {
    // Refuse an oversized file before reading it (a pipe is bounded while reading, below).
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        static_cast<std::uint64_t>(st.st_size) > limits.max_text_bytes) {
      throw rule_error(
          {too_large(path, static_cast<std::size_t>(st.st_size), limits.max_text_bytes)});
    }
  }
  std::string text;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  int error = f == nullptr ? errno : 0;
  if (f != nullptr) {
    std::array<char, 65536> buffer{};
    std::size_t n = 0;
    while ((n = std::fread(buffer.data(), 1, buffer.size(), f)) > 0) {
      text.append(buffer.data(), n);
      if (text.size() > limits.max_text_bytes) {
        break;  // load_rules reports it; no need to read the rest
      }
    }
    if (std::ferror(f) != 0) {
      error = errno != 0 ? errno : EIO;
    }
    std::fclose(f);
  }
  if (error != 0) {
    diagnostic d;
    d.file = path;
    d.code = "io";
    d.message = fmt::format("cannot read the file: {}", std::strerror(error));
    throw rule_error({std::move(d)});
  }
  return load_rules(text, {.file_name = path, .limits = limits});
}

}  // namespace nudge
