// Standard input spooled to a file for nudge run --follow --events - (stdin_spool.hpp).
#include "stdin_spool.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include "common.hpp"
#include "follow.hpp"

namespace nudge_cli {

namespace {

// One read of standard input if it has data within `wait`: appended to `to`. False at its end.
bool read_some(std::string& to, std::chrono::milliseconds wait) {
  pollfd p{0, POLLIN, 0};
  const int r = ::poll(&p, 1, static_cast<int>(wait.count()));
  if (r <= 0) {
    return true;  // nothing yet, or a signal (the caller looks at the stop flag)
  }
  char buf[65536];
  const auto n = ::read(0, buf, sizeof buf);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) {
      return true;
    }
    throw std::runtime_error(
        fmt::format("--events -: cannot read standard input: {}", std::strerror(errno)));
  }
  if (n == 0) {
    return false;
  }
  to.append(buf, static_cast<std::size_t>(n));
  return true;
}

std::string first_line_of(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::string line;
  if (std::getline(in, line)) {
    line += '\n';
  }
  return line;
}

}  // namespace

stdin_spool::stdin_spool(std::string path, bool durable, bool csv, std::string header,
                         std::string pending)
    : path_(std::move(path)),
      out_(path_, durable),
      csv_(csv),
      header_(std::move(header)),
      pending_(std::move(pending)) {}

std::unique_ptr<stdin_spool> stdin_spool::open(const run_args& args) {
  const bool durable = args.sync != "off";
  const std::string csv_path = args.db + ".stdin.csv";
  const std::string jsonl_path = args.db + ".stdin.jsonl";
  std::error_code ec;
  std::string pending;
  bool more = true;
  // The format: the existing spool's, or from the first byte of standard input.
  std::string path;
  if (std::filesystem::exists(csv_path, ec)) {
    path = csv_path;
  } else if (std::filesystem::exists(jsonl_path, ec)) {
    path = jsonl_path;
  } else {
    while (more && pending.find('\n') == std::string::npos && !stop_requested()) {
      more = read_some(pending, std::chrono::milliseconds{200});
    }
    if (pending.empty()) {
      fmt::print(stderr, "--events -: standard input ended before its first line\n");
      return nullptr;
    }
    path = pending.front() == '{' ? jsonl_path : csv_path;
  }
  const bool csv = path == csv_path;
  const std::string header = csv ? first_line_of(path) : std::string{};
  std::unique_ptr<stdin_spool> s{new stdin_spool(path, durable, csv, header, std::move(pending))};
  s->eof_ = !more;
  if (!s->append_complete_lines()) {
    return nullptr;
  }
  return s;
}

bool stdin_spool::append_complete_lines() {
  const auto last = pending_.rfind('\n');
  if (last == std::string::npos) {
    return true;
  }
  std::string_view lines{pending_.data(), last + 1};
  if (csv_ && !header_checked_) {
    // The first line of standard input is its header: the spool's (not appended again) or, for
    // a new spool, its first line.
    const auto nl = lines.find('\n');
    const std::string_view head = lines.substr(0, nl + 1);
    if (header_.empty()) {
      header_ = std::string{head};
    } else {
      if (head != header_) {
        fmt::print(stderr,
                   "--events -: the header line of standard input, \"{}\", is not the spool's, "
                   "\"{}\" ({}): the events of one database keep their columns\n",
                   head.substr(0, head.size() - 1), header_.substr(0, header_.size() - 1), path_);
        return false;
      }
      lines.remove_prefix(nl + 1);
    }
    header_checked_ = true;
  }
  out_.append(lines);
  out_.sync();
  pending_.erase(0, last + 1);
  return true;
}

bool stdin_spool::pump(std::chrono::milliseconds wait) {
  if (eof_) {
    return false;
  }
  eof_ = !read_some(pending_, wait);
  if (!append_complete_lines()) {
    throw std::runtime_error(fmt::format("--events -: standard input refused ({})", path_));
  }
  if (eof_ && !pending_.empty()) {
    fmt::print(stderr,
               "--events -: standard input ended inside a line ({} bytes without a line break): "
               "not read\n",
               pending_.size());
  }
  return !eof_;
}

namespace {
stdin_spool* active = nullptr;
}

stdin_spool* current_stdin_spool() noexcept {
  return active;
}

int run_live_from_stdin(const run_args& args) {
  install_stop_handlers();  // a stop while waiting for the first line ends the run cleanly
  auto spool = stdin_spool::open(args);
  if (!spool) {
    return stop_requested() ? exit_ok : exit_input;
  }
  run_args spooled = args;
  spooled.events = spool->path();
  active = spool.get();
  try {
    const int rc = run_live(spooled);
    active = nullptr;
    return rc;
  } catch (...) {
    active = nullptr;
    throw;
  }
}

}  // namespace nudge_cli
