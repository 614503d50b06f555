// pg_store's schema checks, shared by the store and the outbox. Private: not installed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "io/pg/conn.hpp"

namespace nudge::pg_detail {

struct schema_info {
  std::int64_t version = 0;
  std::uint32_t partitions = 0;
  std::optional<std::string> fingerprint;  ///< the program's, once a worker recorded it
};

// Refuses, naming the database, a database without nudge's schema or of another version.
schema_info check_schema(connection& c);

}  // namespace nudge::pg_detail
