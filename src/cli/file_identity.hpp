// Which events file a database consumed, and how far: `nudge run` refuses a file that was
// replaced or rewritten instead of reading it from the middle (docs/live.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace nudge_cli {

/// A file's text and identity, both from one open file.
struct file_text {
  std::string text;
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
};

/// Reads the whole file.
/// @throws std::system_error naming the path and the system's reason.
file_text read_file_text(const std::string& path);

/// The identity of the consumed part of an events file, kept in the database's meta table with
/// each batch: `device:inode` of the file, and a hash of the consumed prefix text[0, offset).
/// The hash covers the prefix's first and last 4 KiB (FNV-1a, 64 bits), not all of it, so that
/// a batch costs the same however long the file: a rotated file, or one rewritten, differs there.
struct consumed_identity {
  std::string file;  ///< "device:inode"
  std::string hash;  ///< 16 hex digits

  static consumed_identity of(const file_text& f, std::size_t offset);
};

/// Why `f` cannot be continued at `offset` (consumed when the file had identity `stored`), or
/// nullopt if it can. `note` is set to a line for stderr when the file is another one (another
/// inode) with the same consumed bytes, e.g. a copy or an edited file: it is continued.
std::optional<std::string> refuse_continuing(const std::string& path, const file_text& f,
                                             std::size_t offset,
                                             const std::optional<consumed_identity>& stored,
                                             std::string& note);

}  // namespace nudge_cli
