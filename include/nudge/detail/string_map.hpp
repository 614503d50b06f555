// nudge/detail/string_map.hpp: the open-addressing string map of the compiled program and the
// zone database. Not part of the API.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include <boost/unordered/unordered_flat_map.hpp>

namespace nudge::detail {

/// XXH3 of the bytes of `s` (src/core/string_hash.cpp): names and contact ids are short, where
/// XXH3 takes a third of the instructions of std::hash's murmur, and it mixes well enough for
/// the map to skip its own post-mixing (is_avalanching).
std::size_t hash_text(std::string_view s) noexcept;

struct string_hash {
  using is_transparent = void;
  using is_avalanching = void;
  std::size_t operator()(std::string_view s) const noexcept { return hash_text(s); }
};
/// Open-addressing map from strings, looked up by string_view without a copy.
template <class Value>
using string_map = boost::unordered_flat_map<std::string, Value, string_hash, std::equal_to<>>;

}  // namespace nudge::detail
