// nudge db check FILE: verifies a live database (docs/live.md, "Integrity").
#pragma once

#include <string>

namespace nudge_cli {

/// Checks every record of the database at `path` (sqlite_store::check), then reads its states
/// and outbox against the rules stored in it; prints a summary and every problem. Returns 0 if
/// the database is sound, 1 if it is damaged or cannot be read as a nudge database.
int run_db_check(const std::string& path);

}  // namespace nudge_cli
