// nudge/value.hpp: the typed value a contact detail or event property holds.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include <nudge/time.hpp>

namespace nudge {

/// A detail's or property's value: text, integer, decimal, yes/no, or an instant.
/// Comparisons between an integer and a decimal compare numerically; other mixed kinds are
/// unequal and unordered.
using value = std::variant<std::string, std::int64_t, double, bool, time_point>;

/// Name of the value's kind: "string", "integer", "decimal", "bool" or "time".
const char* kind_name(const value& v) noexcept;

/// Human-readable text of a value (strings unquoted, times in ISO-8601).
std::string to_string(const value& v);

}  // namespace nudge
