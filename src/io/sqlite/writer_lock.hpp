// The store's one-writer lock (an flock on "<db>.lock"). Private: not installed.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <nudge/io/sqlite_store.hpp>
#include <nudge/time.hpp>

namespace nudge::sqlite_detail {

// One writer per database: an exclusive flock(2) on "<db>.lock", held from before the database
// is opened (or created) until the store is destroyed. The kernel drops it when the process
// dies, however it dies, so there is never a stale lock to clean up; the file holds the
// holder's pid, host and start time only to name it in the refusal. (A lock file of its own
// rather than the database: closing any descriptor of the database would drop SQLite's own
// POSIX locks on it.)
class writer_lock {
 public:
  writer_lock() = default;
  // `suffix` and `role` name another lock of the same kind: the deliverer's (delivery_log), on
  // "<db>.deliver.lock".
  explicit writer_lock(const std::string& db_path, std::string_view suffix = ".lock",
                       std::string_view role = "writer") {
    const std::string lock_path = db_path + std::string{suffix};
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw sqlite_error(fmt::format("{}: cannot open the {} lock {}: {}", db_path, role, lock_path,
                                     std::strerror(errno)));
    }
    int rc;
    while ((rc = ::flock(fd_, LOCK_EX | LOCK_NB)) != 0 && errno == EINTR) {
    }
    if (rc != 0) {
      const int error = errno;
      std::string holder;
      if (error == EWOULDBLOCK) {
        char buf[512];
        const auto n = ::pread(fd_, buf, sizeof buf, 0);
        holder.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        while (!holder.empty() && (holder.back() == '\n' || holder.back() == '\0')) {
          holder.pop_back();
        }
      }
      ::close(fd_);
      fd_ = -1;
      if (error == EWOULDBLOCK) {
        throw sqlite_error(fmt::format(
            "{}: refused: another {} has this database open ({}; lock file {}); one "
            "{} at a time: wait until it ends, or stop it (readers such as nudge outbox "
            "still work)",
            db_path, role, holder.empty() ? "it has not named itself yet" : holder, lock_path,
            role));
      }
      throw sqlite_error(
          fmt::format("{}: cannot lock {}: {}", db_path, lock_path, std::strerror(error)));
    }
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) {
      std::strcpy(host, "?");
    }
    const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    const std::string me = fmt::format("pid {} on host {} since {}\n", ::getpid(), host,
                                       format_time(from_epoch(static_cast<std::int64_t>(now))));
    // Best effort: the lock itself is the flock, the text only names its holder.
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, me.data(), me.size(), 0) < 0) {
      errno = 0;
    }
  }
  writer_lock(writer_lock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  writer_lock& operator=(writer_lock&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~writer_lock() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }

 private:
  int fd_ = -1;
};

}  // namespace nudge::sqlite_detail
