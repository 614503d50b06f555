// nudge/io/snapshot.hpp: the whole engine state (contact states, statistics, round-robin counters)
// saved to and loaded from a versioned binary file. The format is documented in docs/snapshot.md.
//
// Example:
//
//     nudge::memory_store store;
//     nudge::engine engine{program, &store};
//     engine.process(events, now);
//     nudge::save_snapshot("state.snap", engine, store);
//     ...
//     nudge::engine fresh{program};                 // same program, another process
//     nudge::load_snapshot("state.snap", fresh);    // contacts go into fresh.store()
//
// Compatibility: "reject, never guess". A snapshot of another format version, or one written
// against another rule program (a different program_fingerprint), is refused with a
// snapshot_error naming both versions or both fingerprints; a truncated or corrupt file is refused
// naming the byte offset. Nothing is changed when loading fails.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nudge/contact_state.hpp>
#include <nudge/engine.hpp>
#include <nudge/evaluate.hpp>
#include <nudge/memory_store.hpp>
#include <nudge/program.hpp>
#include <nudge/stats.hpp>

namespace nudge {

/// The snapshot format this library writes and the only one it reads.
inline constexpr std::uint32_t snapshot_format_version = 8;

/// A snapshot that cannot be loaded: unreadable, truncated, corrupt, or for another format
/// version or program. what() says which, e.g.
/// "state.snap: snapshot format version 2, this build reads version 1" or
/// "state.snap: truncated at byte 1234: expected 8 bytes of a timer due time, found 3".
class snapshot_error : public std::runtime_error {
 public:
  explicit snapshot_error(const std::string& what) : std::runtime_error(what) {}
};

/// Everything a snapshot holds, in memory.
struct snapshot {
  std::uint64_t fingerprint =
      0;  ///< program_fingerprint (nudge/program.hpp) of the writer's program
  std::vector<contact_state> states;  ///< sorted by contact id
  std::vector<rule_stats> stats;      ///< per rule, in program order
  round_robin_counters counters;
  std::vector<nudge::workflow_stats> workflows;  ///< per workflow, in program order
  friend bool operator==(const snapshot&, const snapshot&) = default;
};

/// Collects the state of `engine`, whose contacts are in `store`.
snapshot take_snapshot(const engine& engine, const memory_store& store);

/// Writes `s` in the snapshot format (docs/snapshot.md).
/// @throws snapshot_error if the stream fails.
void write_snapshot(std::ostream& out, const snapshot& s);
/// Writes to `path` through a temporary file (`path` + ".tmp", fsynced) renamed into place, then
/// fsyncs the directory, so an existing snapshot is replaced whole or not at all, also across a
/// power loss.
/// @throws snapshot_error naming `path`, the failed step and the system's reason, e.g.
///   "s.snap: cannot write the snapshot (write s.snap.tmp): No space left on device"; the
///   temporary file is removed and an existing snapshot is left as it was.
void write_snapshot(const std::string& path, const snapshot& s);
/// take_snapshot then write_snapshot to `path`.
void save_snapshot(const std::string& path, const engine& engine, const memory_store& store);

/// Parses a snapshot from bytes. If `expected` is given, the snapshot must have been written for
/// it (same fingerprint; contact states must fit its rules and history slots).
/// `name` prefixes error messages (a file name).
/// @throws snapshot_error (format version, fingerprint, truncation or corruption with the byte
///   offset).
snapshot parse_snapshot(std::string_view bytes, const program* expected = nullptr,
                        const std::string& name = "snapshot");
/// Reads and parses the file at `path`.
snapshot read_snapshot(const std::string& path, const program* expected = nullptr);

/// Loads a snapshot file into `engine`: saves every contact state into engine.store() (one
/// save call) and restores statistics and counters. Meant for a fresh engine; contacts the
/// store already has are replaced.
/// @throws snapshot_error (nothing changed), or what the store's save throws.
void load_snapshot(const std::string& path, engine& engine);
/// The same from a parsed snapshot, which must be for engine.program().
void load_snapshot(snapshot s, engine& engine);

/// The snapshot codec for one contact state (the bytes docs/snapshot.md calls a state record,
/// without its length prefix). Used by stores that keep states as blobs.
void encode_contact_state(const contact_state& state, std::string& out);
/// Decodes one state record. If `expected` is given, rule indices and the history slot count
/// must fit it.
/// @throws snapshot_error naming the byte offset within `bytes` on truncation or corruption.
contact_state decode_contact_state(std::string_view bytes, const program* expected = nullptr);

}  // namespace nudge
