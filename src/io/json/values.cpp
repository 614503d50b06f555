// The walker's typed accessors (each reports a wrong type and returns nothing), its problem
// list and the check for unknown fields.
#include "walker.hpp"

namespace nudge::json_rules {

void walker::fail(const path& at, std::string code, std::string message, bool at_key) {
  problems.push_back({at.str(), at_key, std::move(code), std::move(message)});
}

void walker::wrong_type(const json::value& v, const path& at, std::string_view expected) {
  fail(at, "wrong_type", fmt::format("expected {}, got {}", expected, describe(v)));
}

const json::object* walker::object_at(const json::value& v, const path& at) {
  if (const auto* o = v.if_object()) {
    return o;
  }
  wrong_type(v, at, "an object");
  return nullptr;
}

const json::array* walker::array_at(const json::value& v, const path& at) {
  if (const auto* a = v.if_array()) {
    return a;
  }
  wrong_type(v, at, "an array");
  return nullptr;
}

std::optional<std::string> walker::string(const json::value& v, const path& at) {
  if (const auto* s = v.if_string()) {
    return std::string{*s};
  }
  wrong_type(v, at, "a string");
  return std::nullopt;
}

std::optional<std::string> walker::name(const json::value& v, const path& at,
                                        std::string_view what) {
  auto s = string(v, at);
  if (s && s->empty()) {
    fail(at, "empty_name", fmt::format("{} cannot be empty", what));
    return std::nullopt;
  }
  return s;
}

std::optional<bool> walker::boolean(const json::value& v, const path& at) {
  if (const auto* b = v.if_bool()) {
    return *b;
  }
  wrong_type(v, at, "true or false");
  return std::nullopt;
}

std::optional<std::int64_t> walker::integer(const json::value& v, const path& at) {
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

std::optional<std::int64_t> walker::count(const json::value& v, const path& at, std::int64_t min,
                                          std::int64_t max) {
  auto n = integer(v, at);
  if (n && (*n < min || *n > max)) {
    fail(at, "bad_count", fmt::format("{} is out of range (expected {} to {})", *n, min, max));
    return std::nullopt;
  }
  return n;
}

std::optional<duration> walker::span(const json::value& v, const path& at) {
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
std::optional<months> walker::calendar(const json::value& v, const path& at, bool is_window,
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
std::optional<duration> walker::delay(const json::value& v, const path& at) {
  auto d = span(v, at);
  if (d && *d > limits_.max_delay) {
    fail(at, "bad_delay",
         fmt::format("a delay must be between 0s and {}", format_duration(limits_.max_delay)));
    return std::nullopt;
  }
  return d;
}

// A window: longer than 0s, up to the limit.
std::optional<duration> walker::window(const json::value& v, const path& at) {
  auto d = span(v, at);
  if (d && (*d <= duration{0} || *d > limits_.max_delay)) {
    fail(at, "bad_window",
         fmt::format("a window must be longer than 0s and at most {}",
                     format_duration(limits_.max_delay)));
    return std::nullopt;
  }
  return d;
}

std::optional<time_point> walker::instant(const json::value& v, const path& at) {
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
std::optional<value> walker::val(const json::value& v, const path& at) {
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
bool walker::check_fields(const json::object& o, const path& at,
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

}  // namespace nudge::json_rules
