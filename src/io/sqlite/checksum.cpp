// The rows' checksums: XXH3-64 of kind, key columns and blob (docs/live.md, "Integrity").
#include <cstdint>
#include <string>
#include <string_view>

#define XXH_INLINE_ALL  // header-only: no library to link, for the host either
#include <xxhash.h>

#include "io/sqlite/schema.hpp"

namespace nudge::sqlite_detail {

std::string_view row_kind_name(row_kind k) {
  switch (k) {
    case row_kind::meta:
      return "meta";
    case row_kind::checkpoint:
      return "checkpoint part";
    case row_kind::journal:
      return "journal row";
    case row_kind::outbox:
      return "outbox row";
    case row_kind::delivery:
      return "delivery row";
    case row_kind::dead_letter:
      return "dead letter";
  }
  return "row";
}

std::int64_t row_sum(row_kind kind, std::string_view key, std::string_view blob) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);  // reset_withSeed reads the seed it had
  XXH3_64bits_reset_withSeed(&st, static_cast<XXH64_hash_t>(kind));
  const auto n = static_cast<std::uint32_t>(key.size());
  const unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                                static_cast<unsigned char>(n >> 16),
                                static_cast<unsigned char>(n >> 24)};
  XXH3_64bits_update(&st, len, 4);
  XXH3_64bits_update(&st, key.data(), key.size());
  XXH3_64bits_update(&st, blob.data(), blob.size());
  return static_cast<std::int64_t>(XXH3_64bits_digest(&st));
}

// The key columns of a row with integer keys, as hashed.
std::string int_key(std::int64_t a, std::int64_t b) {
  std::string k(16, '\0');
  for (int i = 0; i < 8; ++i) {
    k[static_cast<std::size_t>(i)] = static_cast<char>(static_cast<std::uint64_t>(a) >> (8 * i));
    k[static_cast<std::size_t>(8 + i)] =
        static_cast<char>(static_cast<std::uint64_t>(b) >> (8 * i));
  }
  return k;
}

}  // namespace nudge::sqlite_detail
