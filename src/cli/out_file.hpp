// Files `nudge run` appends whole lines to (--out, --rejects).
#pragma once

#include <string>
#include <string_view>

namespace nudge_cli {

/// A file appended to in whole lines, so a reader never sees two records merged: a kill or a full
/// disk in the middle of a write leaves at most a torn last line, which the next open cuts off
/// (the records it held are written again by the run, see docs/live.md).
class line_file {
 public:
  /// Opens `path` for appending, creating it; "-" or empty: standard output (never cut; fsynced
  /// when it is a regular file). A regular file whose last byte is not '\n' is cut back after its
  /// last '\n', and stderr says so. With `durable`, sync() fsyncs, and a newly created file's
  /// directory is fsynced too.
  /// @throws std::system_error naming the path and the operation.
  line_file(const std::string& path, bool durable);
  ~line_file();
  line_file(const line_file&) = delete;
  line_file& operator=(const line_file&) = delete;

  /// Appends `lines` (each ending in '\n') in as few write(2) calls as the kernel allows. On
  /// failure the file is cut back to its size before the call (best effort: whatever stays is cut
  /// at the next open) and std::system_error names the file and the system's reason.
  void append(std::string_view lines);
  /// With `durable`: fsync, so the lines appended so far survive power loss. No-op otherwise.
  /// @throws std::system_error naming the file.
  void sync();

  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool owned_ = false;     ///< a file we opened (not standard output)
  bool regular_ = false;   ///< a regular file we opened: can be cut
  bool syncable_ = false;  ///< a regular file, also as standard output: can be fsynced
  bool sync_ = false;
};

/// fsyncs the directory holding `path`, so a file created or renamed there survives power loss.
/// @throws std::system_error naming the directory.
void sync_directory_of(const std::string& path);

}  // namespace nudge_cli
