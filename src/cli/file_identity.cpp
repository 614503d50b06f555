// The consumed events file's identity (file_identity.hpp).
#include "file_identity.hpp"

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nudge/evaluate.hpp>

namespace nudge_cli {
namespace {

constexpr std::size_t block = 4096;

// Named apart from out_file.cpp's fail: the CLI is built as a unity build in CI.
[[noreturn]] void fail_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

}  // namespace

file_text read_file_text(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fail_errno(errno, fmt::format("{}: cannot open", path));
  }
  file_text f;
  try {
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      fail_errno(errno, fmt::format("{}: cannot stat", path));
    }
    f.device = static_cast<std::uint64_t>(st.st_dev);
    f.inode = static_cast<std::uint64_t>(st.st_ino);
    if (S_ISREG(st.st_mode)) {
      f.text.reserve(static_cast<std::size_t>(st.st_size));
    }
    char buf[1 << 16];
    for (;;) {
      const auto n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        fail_errno(errno, fmt::format("{}: cannot read", path));
      }
      if (n == 0) {
        break;
      }
      f.text.append(buf, static_cast<std::size_t>(n));
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return f;
}

consumed_identity consumed_identity::of(const file_text& f, std::size_t offset) {
  const std::string_view prefix = std::string_view{f.text}.substr(0, offset);
  // FNV-1a (nudge::fnv1a64): stable across builds and platforms, unlike std::hash, since it is
  // stored.
  std::uint64_t h = nudge::fnv1a64(prefix.substr(0, block));
  h = nudge::fnv1a64(prefix.substr(prefix.size() - std::min(prefix.size(), block)), h);
  h = nudge::fnv1a64(std::to_string(offset), h);
  return {fmt::format("{}:{}", f.device, f.inode), fmt::format("{:016x}", h)};
}

std::optional<std::string> refuse_continuing(const std::string& path, const file_text& f,
                                             std::size_t offset,
                                             const std::optional<consumed_identity>& stored,
                                             std::string& note) {
  const auto here = consumed_identity::of(f, offset);
  const char* advice =
      "run with --from-start to read it from its first line (events before the time the "
      "database reached are then refused as late)";
  if (offset > f.text.size()) {
    return fmt::format(
        "{}: the file has {} bytes, fewer than the {} already consumed: it was replaced or "
        "rewritten; {}",
        path, f.text.size(), offset, advice);
  }
  if (!stored) {
    return std::nullopt;  // a database written before identities were kept
  }
  const bool same_file = stored->file == here.file;
  if (stored->hash != here.hash) {
    const std::string which = same_file
                                  ? std::string{"the file was rewritten"}
                                  : fmt::format("the file was replaced (device:inode {}, was {})",
                                                here.file, stored->file);
    return fmt::format("{}: {}; its first {} bytes are not those already consumed; {}", path, which,
                       offset, advice);
  }
  if (!same_file) {
    note = fmt::format(
        "{}: another file (device:inode {}, was {}) with the same first {} bytes: continuing "
        "after them",
        path, here.file, stored->file, offset);
  }
  return std::nullopt;
}

}  // namespace nudge_cli
