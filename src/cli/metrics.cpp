#include "metrics.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <nudge/io/sqlite_store.hpp>
#include <nudge/program.hpp>

#include "log.hpp"

namespace nudge_cli {

outbox_report read_outbox(nudge::sqlite_store& db, std::size_t handed) {
  outbox_report r;
  std::size_t seen = 0;
  // With --outbox-only, nudge deliver marks what it delivered; the next batch trims it.
  const std::int64_t delivered = db.delivery_mark();
  for (const auto& e : db.outbox()) {
    if (seen++ < handed || e.sequence <= delivered) {
      continue;  // in --out already (waiting for the group's fsync and trim), or delivered
    }
    ++r.depth;
    if (!r.oldest_due || e.ts < *r.oldest_due) {
      r.oldest_due = e.ts;
    }
  }
  return r;
}

void observe_outbox_tail(run_observer& observer, nudge::sqlite_store& db,
                         const nudge::program& program, std::size_t count) {
  const auto entries = db.outbox();
  const std::size_t from = entries.size() - std::min(count, entries.size());
  std::vector<nudge::due_action> added(entries.size() - from);
  for (std::size_t i = from; i < entries.size(); ++i) {
    const auto& e = entries[i];
    auto& a = added[i - from];
    a.contact = e.contact;
    a.ts = e.ts;
    a.kind = e.kind;
    a.arg = e.arg;  // a view into `entries`, which outlives the call
    a.rule_index = e.rule_index;
    if (e.workflow) {
      a.rule = program.rules().workflows[e.rule_index].id;
      a.step = program.compiled().workflows[e.rule_index].steps[e.action_index].def->id;
    } else {
      a.rule = program.rules().rules[e.rule_index].id;
    }
  }
  observer.on_actions(added);
}

std::string escape_label_value(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

void run_metrics::count_actions(std::span<const nudge::due_action> actions) {
  for (const auto& a : actions) {
    std::string rule =
        a.from_workflow() ? fmt::format("{}/{}", a.rule, a.step) : std::string{a.rule};
    ++actions_[{std::move(rule), std::string{a.action()}}];
  }
}

void run_metrics::count_batch(const batch_report& batch) {
  events_ += batch.events;
  rejected_ += batch.rejected;
  ++batches_;
  const double s = batch.duration.count();
  latency_sum_ += s;
  for (std::size_t i = 0; i < std::size(latency_buckets); ++i) {
    if (s <= latency_buckets[i]) {
      ++buckets_[i];  // stored per bucket; render() accumulates
      break;
    }
  }
  if (batch.engine_now != nudge::min_time) {
    engine_now_ = batch.engine_now;
  }
}

namespace {

void family(fmt::memory_buffer& out, std::string_view name, std::string_view type,
            std::string_view help) {
  fmt::format_to(fmt::appender(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

double seconds_between(std::chrono::system_clock::time_point wall, nudge::time_point t) {
  const auto wall_s = std::chrono::duration<double>(wall.time_since_epoch()).count();
  return wall_s - static_cast<double>(nudge::to_epoch(t));
}

}  // namespace

std::string run_metrics::render(std::chrono::system_clock::time_point wall) const {
  fmt::memory_buffer out;
  auto it = [&] { return fmt::appender(out); };
  family(out, "nudge_events_read_total", "counter", "Events applied by this process.");
  fmt::format_to(it(), "nudge_events_read_total {}\n", events_);
  family(out, "nudge_events_rejected_total", "counter",
         "Event lines refused and set aside (--on-error skip) by this process.");
  fmt::format_to(it(), "nudge_events_rejected_total {}\n", rejected_);
  family(out, "nudge_actions_total", "counter",
         "Actions this process handed to --out, by rule (workflow/step for a workflow's "
         "actions) and action verb.");
  for (const auto& [key, n] : actions_) {
    fmt::format_to(it(), "nudge_actions_total{{rule=\"{}\",action=\"{}\"}} {}\n",
                   escape_label_value(key.first), escape_label_value(key.second), n);
  }
  family(out, "nudge_batch_duration_seconds", "histogram",
         "Wall time of each batch: read, process, commit and hand its actions to --out.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < std::size(latency_buckets); ++i) {
    cumulative += buckets_[i];
    fmt::format_to(it(), "nudge_batch_duration_seconds_bucket{{le=\"{}\"}} {}\n",
                   latency_buckets[i], cumulative);
  }
  fmt::format_to(it(), "nudge_batch_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", batches_);
  fmt::format_to(it(), "nudge_batch_duration_seconds_sum {}\n", latency_sum_);
  fmt::format_to(it(), "nudge_batch_duration_seconds_count {}\n", batches_);
  family(out, "nudge_outbox_depth", "gauge",
         "Actions committed to the outbox and not yet handed to --out.");
  fmt::format_to(it(), "nudge_outbox_depth {}\n", outbox_.depth);
  family(out, "nudge_outbox_oldest_age_seconds", "gauge",
         "Wall clock minus the due time of the oldest action in the outbox not yet handed to "
         "--out (0 when there is none).");
  fmt::format_to(
      it(), "nudge_outbox_oldest_age_seconds {}\n",
      outbox_.oldest_due ? std::max(0.0, seconds_between(wall, *outbox_.oldest_due)) : 0.0);
  family(out, "nudge_engine_time_seconds", "gauge",
         "The time the engine reached (run.now), in seconds since the epoch.");
  if (engine_now_) {
    fmt::format_to(it(), "nudge_engine_time_seconds {}\n", nudge::to_epoch(*engine_now_));
  }
  family(out, "nudge_clock_lag_seconds", "gauge",
         "Wall clock minus the engine's clock (negative when the engine is ahead, after a "
         "--until in the future).");
  if (engine_now_) {
    fmt::format_to(it(), "nudge_clock_lag_seconds {:.3f}\n", seconds_between(wall, *engine_now_));
  }
  return fmt::to_string(out);
}

void write_file_atomically(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& what) {
    throw std::system_error(errno, std::generic_category(), fmt::format("{}: {}", what, path));
  };
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) {
    fail(fmt::format("cannot write the metrics file {}", tmp));
  }
  const bool written = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int saved = errno;
  if (std::fclose(f) != 0 || !written) {
    if (written) {
      errno = saved;
    }
    std::remove(tmp.c_str());
    fail(fmt::format("cannot write the metrics file {}", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    fail(fmt::format("cannot rename {} to", tmp));
  }
}

// --- the HTTP server ---------------------------------------------------------------------------

namespace {

[[noreturn]] void socket_error(const std::string& address, std::string_view what) {
  throw std::runtime_error(
      fmt::format("--metrics {}: cannot {}: {}", address, what, std::strerror(errno)));
}

}  // namespace

bool split_metrics_address(const std::string& address, std::string& host, std::string& port) {
  host = "127.0.0.1";
  port = address;
  if (const auto colon = address.rfind(':'); colon != std::string::npos) {
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    if (host.empty()) {
      host = "127.0.0.1";
    }
  }
  return !port.empty() && port.find_first_not_of("0123456789") == std::string::npos &&
         port.size() <= 5 && std::stoul(port) <= 65535;
}

metrics_server::metrics_server(const std::string& address) {
  std::string host;
  std::string port;
  if (!split_metrics_address(address, host, port)) {
    throw std::runtime_error(
        fmt::format("--metrics {}: not an address: expected HOST:PORT, :PORT or PORT", address));
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw std::runtime_error(
        fmt::format("--metrics {}: cannot resolve {}: {}", address, host, ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard{found, &::freeaddrinfo};
  listen_fd_ = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (listen_fd_ < 0) {
    socket_error(address, "create a socket");
  }
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(listen_fd_, found->ai_addr, found->ai_addrlen) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    errno = e;
    socket_error(address, "bind");
  }
  if (::listen(listen_fd_, 16) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    errno = e;
    socket_error(address, "listen");
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  char name[NI_MAXHOST];
  char serv[NI_MAXSERV];
  ::getnameinfo(reinterpret_cast<sockaddr*>(&bound), len, name, sizeof name, serv, sizeof serv,
                NI_NUMERICHOST | NI_NUMERICSERV);
  bound_ = std::string{name}.find(':') != std::string::npos ? fmt::format("[{}]:{}", name, serv)
                                                            : fmt::format("{}:{}", name, serv);
  if (::pipe2(wake_, O_CLOEXEC) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    errno = e;
    socket_error(address, "create a pipe");
  }
  thread_ = std::thread([this] { serve(); });
}

metrics_server::~metrics_server() {
  const char stop = 1;
  (void)!::write(wake_[1], &stop, 1);
  if (thread_.joinable()) {
    thread_.join();
  }
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void metrics_server::publish(std::string text) {
  const std::lock_guard lock{mutex_};
  text_ = std::move(text);
}

void metrics_server::serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      log().error(fmt::format("metrics server {}: poll failed: {}", bound_, std::strerror(errno)));
      return;
    }
    if (fds[1].revents != 0) {
      return;
    }
    if ((fds[0].revents & POLLIN) == 0) {
      continue;
    }
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      continue;  // the client went away, or out of descriptors for a moment: the next one
    }
    answer(fd);
    ::close(fd);
  }
}

void metrics_server::answer(int fd) {
  // A slow or silent client must not hold the thread: 2 s to send its request, 2 s to take
  // the answer.
  timeval timeout{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  std::string request;
  char buf[1024];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 8192) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      break;
    }
    request.append(buf, static_cast<std::size_t>(n));
  }
  const auto eol = request.find("\r\n");
  const std::string_view line{request.data(), eol == std::string::npos ? 0 : eol};
  std::string status = "200 OK";
  std::string body;
  std::string type = "text/plain; version=0.0.4; charset=utf-8";
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  const std::string_view method = line.substr(0, sp1);
  std::string_view target =
      sp2 == std::string_view::npos ? std::string_view{} : line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  if (sp2 == std::string_view::npos) {
    status = "400 Bad Request";
    body = "bad request\n";
    type = "text/plain; charset=utf-8";
  } else if (method != "GET" && method != "HEAD") {
    status = "405 Method Not Allowed";
    body = "only GET /metrics\n";
    type = "text/plain; charset=utf-8";
  } else if (target != "/metrics") {
    status = "404 Not Found";
    body = "nudge serves GET /metrics\n";
    type = "text/plain; charset=utf-8";
  } else {
    const std::lock_guard lock{mutex_};
    body = text_;
  }
  std::string reply = fmt::format(
      "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", status,
      type, body.size());
  if (method != "HEAD") {
    reply += body;
  }
  std::size_t sent = 0;
  while (sent < reply.size()) {
    const auto n = ::send(fd, reply.data() + sent, reply.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      return;
    }
    sent += static_cast<std::size_t>(n);
  }
}

// --- the observer ------------------------------------------------------------------------------

metrics_observer::metrics_observer(std::string file, std::unique_ptr<metrics_server> server)
    : file_(std::move(file)), server_(std::move(server)) {
  publish();  // a scrape before the first batch reads zeros, not an empty page
}

void metrics_observer::on_actions(std::span<const nudge::due_action> actions) {
  metrics_.count_actions(actions);
}

void metrics_observer::on_batch(const batch_report& batch,
                                const std::optional<outbox_report>& outbox) {
  metrics_.count_batch(batch);
  if (outbox) {
    metrics_.set_outbox(*outbox);
  }
  publish();
}

void metrics_observer::on_end(const std::optional<outbox_report>& outbox) {
  if (outbox) {
    metrics_.set_outbox(*outbox);
  }
  publish();
}

void metrics_observer::publish() {
  const std::string text = metrics_.render(std::chrono::system_clock::now());
  if (server_) {
    server_->publish(text);
  }
  if (!file_.empty()) {
    write_file_atomically(file_, text);
  }
}

}  // namespace nudge_cli
