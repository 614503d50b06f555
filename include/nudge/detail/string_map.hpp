// nudge/detail/string_map.hpp: the open-addressing string map of the compiled program and the
// zone database. Not part of the API.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <boost/unordered/unordered_flat_map.hpp>

namespace nudge::detail {

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};
/// Open-addressing map from strings, looked up by string_view without a copy.
template <class Value>
using string_map = boost::unordered_flat_map<std::string, Value, string_hash, std::equal_to<>>;

}  // namespace nudge::detail
