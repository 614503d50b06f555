// detail::hash_text (nudge/detail/string_map.hpp): the hash of every string map of the library.
#include <nudge/detail/string_map.hpp>

#define XXH_INLINE_ALL  // header-only: no library to link, for the host either
#include <xxhash.h>

namespace nudge::detail {

std::size_t hash_text(std::string_view s) noexcept {
  return static_cast<std::size_t>(XXH3_64bits(s.data(), s.size()));
}

}  // namespace nudge::detail
