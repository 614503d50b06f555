// Whole-line appends for `nudge run` (out_file.hpp).
#include "out_file.hpp"

#include <cerrno>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

namespace nudge_cli {
namespace {

[[noreturn]] void fail(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

// The size to cut a regular file back to so that it ends in '\n' (or is empty): the torn tail a
// kill or a full disk leaves in the middle of a line.
off_t whole_lines_size(int fd, off_t size, const std::string& path) {
  char block[4096];
  off_t end = size;
  while (end > 0) {
    const off_t begin = end > off_t{sizeof block} ? end - off_t{sizeof block} : 0;
    const auto want = static_cast<std::size_t>(end - begin);
    const auto n = ::pread(fd, block, want, begin);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      fail(errno, fmt::format("{}: cannot read its last line", path));
    }
    if (static_cast<std::size_t>(n) != want) {
      fail(EIO, fmt::format("{}: cannot read its last line (it shrank)", path));
    }
    for (auto i = static_cast<std::ptrdiff_t>(want) - 1; i >= 0; --i) {
      if (block[i] == '\n') {
        return begin + i + 1;
      }
    }
    end = begin;
  }
  return 0;
}

}  // namespace

void sync_directory_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fail(errno, fmt::format("{}: cannot open the directory to fsync it", dir));
  }
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    fail(err, fmt::format("{}: cannot fsync the directory", dir));
  }
}

line_file::line_file(const std::string& path, bool durable)
    : path_(path.empty() ? "-" : path), sync_(durable) {
  if (path_ == "-") {
    fd_ = STDOUT_FILENO;
    // Redirected to a file: fsynced like --out (not cut: the shell opened it, maybe mid-line).
    struct stat st {};
    syncable_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
    return;
  }
  // Created here (rather than found): its directory entry needs an fsync to survive power loss.
  bool created = true;
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0 && errno == EEXIST) {
    created = false;
    fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CLOEXEC);
    if (fd_ < 0 && (errno == EACCES || errno == EISDIR || errno == EINVAL)) {
      fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);  // a device or a FIFO
    }
  }
  if (fd_ < 0) {
    fail(errno, fmt::format("{}: cannot open for appending", path_));
  }
  owned_ = true;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fail(err, fmt::format("{}: cannot stat", path_));
  }
  regular_ = S_ISREG(st.st_mode);
  syncable_ = regular_;
  try {
    if (regular_ && st.st_size > 0) {
      const off_t keep = whole_lines_size(fd_, st.st_size, path_);
      if (keep != st.st_size) {
        if (::ftruncate(fd_, keep) != 0) {
          fail(errno, fmt::format("{}: cannot cut the torn last line", path_));
        }
        fmt::print(stderr,
                   "{}: cut a torn last line ({} bytes without a line break, left by an "
                   "interrupted write); its records are written again\n",
                   path_, st.st_size - keep);
        sync();
      }
    }
    if (created && sync_) {
      sync_directory_of(path_);
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

line_file::~line_file() {
  if (owned_) {
    ::close(fd_);
  }
}

void line_file::append(std::string_view lines) {
  off_t before = -1;
  if (regular_) {
    struct stat st {};
    if (::fstat(fd_, &st) == 0) {
      before = st.st_size;
    }
  }
  std::size_t done = 0;
  while (done < lines.size()) {
    const auto n = ::write(fd_, lines.data() + done, lines.size() - done);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      const int err = errno;
      if (before >= 0) {
        // Cut back what this call wrote: no torn line, and no whole line either, since the
        // caller delivers all of `lines` again.
        (void)!::ftruncate(fd_, before);
      }
      fail(err, fmt::format("{}: cannot append {} bytes", path_, lines.size()));
    }
    done += static_cast<std::size_t>(n);
  }
}

void line_file::sync() {
  if (!sync_ || !syncable_) {
    return;
  }
  if (::fsync(fd_) != 0) {
    fail(errno, fmt::format("{}: cannot fsync", path_));
  }
}

}  // namespace nudge_cli
