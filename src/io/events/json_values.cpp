// JSON values of the JSON Lines readers (common.hpp): times, strings, names, typed values.
#include <cmath>
#include <string>

#include <fmt/format.h>
#include <simdjson.h>

#include <nudge/geo.hpp>
#include <nudge/io/read_events.hpp>

#include "common.hpp"

namespace nudge::event_io {

const char* json_type_name(od::json_type t) {
  switch (t) {
    case od::json_type::array:
      return "an array";
    case od::json_type::object:
      return "an object";
    case od::json_type::number:
      return "a number";
    case od::json_type::string:
      return "a string";
    case od::json_type::boolean:
      return "a bool";
    case od::json_type::null:
      return "null";
  }
  return "a value";
}

bool json_time(od::value v, time_point& out, std::string& reason, std::string_view what) {
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  if (t == od::json_type::number) {
    od::number n;
    if (v.get_number().get(n)) {
      reason = fmt::format("{} is not a valid number", what);
      return false;
    }
    if (n.is_int64()) {
      out = from_epoch(n.get_int64());
    } else {
      // A double, or an integer beyond 64 bits (far out of range either way).
      const double d = n.as_double();
      if (!std::isfinite(d) || d < -1e13 || d > 1e13) {
        say_out_of_range(what, fmt::format("{}", d), reason);
        return false;
      }
      out = from_epoch(static_cast<std::int64_t>(std::floor(d)));
    }
    if (!in_input_range(out)) {
      say_out_of_range(what, fmt::format("{}", to_epoch(out)), reason);
      return false;
    }
    return true;
  }
  if (t == od::json_type::string) {
    std::string_view s;
    if (v.get_string().get(s)) {
      reason = "not valid JSON";
      return false;
    }
    time_error why = time_error::none;
    if (auto p = parse_time(s, &why)) {
      out = *p;
      return true;
    }
    if (why == time_error::out_of_range) {
      say_out_of_range(what, s, reason);
      return false;
    }
    reason =
        fmt::format("{} {} is not an ISO-8601 time with offset or epoch seconds", what, quote(s));
    return false;
  }
  reason = fmt::format("{} must be a time (a number or a string), not {}", what, json_type_name(t));
  return false;
}

bool json_string(od::value v, std::string& out, std::string& reason, std::string_view what,
                 std::size_t max_bytes, const char* limit) {
  std::string_view s;
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  if (t != od::json_type::string) {
    reason = fmt::format("{} must be a string, not {}", what, json_type_name(t));
    return false;
  }
  if (v.get_string().get(s)) {
    reason = "not valid JSON";
    return false;
  }
  if (too_long(s, max_bytes, what, limit, reason)) {
    return false;
  }
  out.assign(s);
  return true;
}

bool json_name(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits) {
  return json_string(v, out, reason, what, limits.max_name_bytes, "max_name_bytes");
}

bool json_text(od::value v, std::string& out, std::string& reason, std::string_view what,
               const input_limits& limits) {
  return json_string(v, out, reason, what, limits.max_string_bytes, "max_string_bytes");
}

bool json_value(od::value v, value& out, std::string& reason, const std::string& what,
                const input_limits& limits) {
  od::json_type t;
  if (v.type().get(t)) {
    reason = "not valid JSON";
    return false;
  }
  switch (t) {
    case od::json_type::string: {
      std::string_view s;
      if (v.get_string().get(s)) {
        reason = "not valid JSON";
        return false;
      }
      if (string_too_long(s, limits, what, reason)) {
        return false;
      }
      out = std::string{s};
      return true;
    }
    case od::json_type::number: {
      od::number n;
      if (v.get_number().get(n)) {
        reason = fmt::format("{}: not a valid number", what);
        return false;
      }
      if (n.is_int64()) {
        out = n.get_int64();
      } else if (n.is_double()) {
        if (!std::isfinite(n.get_double())) {
          reason = fmt::format("{}: not a finite number", what);
          return false;
        }
        out = n.get_double();
      } else {
        reason = fmt::format("{}: integer out of range", what);
        return false;
      }
      return true;
    }
    case od::json_type::boolean: {
      bool b;
      if (v.get_bool().get(b)) {
        reason = "not valid JSON";
        return false;
      }
      out = b;
      return true;
    }
    case od::json_type::object: {
      od::object o;
      if (v.get_object().get(o)) {
        reason = "not valid JSON";
        return false;
      }
      bool seen = false;
      for (auto f : o) {
        std::string_view k;
        if (f.unescaped_key().get(k)) {
          reason = "not valid JSON";
          return false;
        }
        if (k != "time" || seen) {
          reason = fmt::format("{}: an object value must be {{\"time\": TIME}}", what);
          return false;
        }
        time_point tp;
        if (!json_time(f.value(), tp, reason, what)) {
          return false;
        }
        out = tp;
        seen = true;
      }
      if (!seen) {
        reason = fmt::format("{}: an object value must be {{\"time\": TIME}}", what);
        return false;
      }
      return true;
    }
    case od::json_type::array:
    case od::json_type::null:
      break;
  }
  reason = fmt::format("{} must be a string, number, bool or {{\"time\": TIME}}, not {}", what,
                       json_type_name(t));
  return false;
}

bool json_value_map(od::value v, name_map<value>& out, std::string& reason, std::string_view what,
                    const input_limits& limits) {
  od::object o;
  if (v.get_object().get(o)) {
    reason = fmt::format("{} must be an object", what);
    return false;
  }
  for (auto f : o) {
    std::string_view k;
    if (f.unescaped_key().get(k)) {
      reason = "not valid JSON";
      return false;
    }
    if (k.size() > limits.max_name_bytes) {  // the message only when needed
      name_too_long(k, limits, fmt::format("a name in {}", what), reason);
      return false;
    }
    std::string name{k};
    value val;
    if (!json_value(f.value(), val, reason, fmt::format("{}/{}", what, name), limits)) {
      return false;
    }
    out.insert_or_assign(std::move(name), std::move(val));
  }
  return true;
}

}  // namespace nudge::event_io
