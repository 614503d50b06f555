// nudge deliver's transports: libcurl's POST and a command's standard input (transport.hpp).
#include "transport.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <curl/curl.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

namespace nudge_cli {

namespace {

// The answer's body is not used (only its status): read and dropped.
std::size_t discard(char*, std::size_t size, std::size_t n, void*) {
  return size * n;
}

}  // namespace

struct webhook::impl {
  std::string url;
  CURL* curl = nullptr;
  ~impl() {
    if (curl != nullptr) {
      curl_easy_cleanup(curl);
    }
  }
};

webhook::webhook(std::string url, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>()) {
  static const bool initialised = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  impl_->url = std::move(url);
  impl_->curl = initialised ? curl_easy_init() : nullptr;
  if (impl_->curl == nullptr) {
    throw std::runtime_error(fmt::format("--webhook {}: cannot start libcurl", impl_->url));
  }
  CURL* c = impl_->curl;
  curl_easy_setopt(c, CURLOPT_URL, impl_->url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // our SIGTERM handler stays ours
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &discard);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "nudge-deliver");
  // Only http and https: a URL of another scheme (file://, ...) is refused at the first post.
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
}

webhook::~webhook() = default;

attempt_result webhook::post(const std::string& body, const std::string& idempotency_key) {
  CURL* c = impl_->curl;
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  const std::string key_header = "Idempotency-Key: " + idempotency_key;
  headers = curl_slist_append(headers, key_header.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    return {false, curl_easy_strerror(rc)};
  }
  if (status < 200 || status > 299) {
    return {false, fmt::format("HTTP {}", status)};
  }
  return {true, {}};
}

attempt_result run_command(const std::string& command, const std::string& body,
                           const std::string& idempotency_key, std::chrono::milliseconds timeout) {
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    return {false, fmt::format("cannot make a pipe: {}", std::strerror(errno))};
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int error = errno;
    ::close(in[0]);
    ::close(in[1]);
    return {false, fmt::format("cannot fork: {}", std::strerror(error))};
  }
  if (pid == 0) {
    // The child: the action on standard input, the default signal dispositions back.
    ::dup2(in[0], 0);
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGPIPE, SIG_DFL);
    ::setenv("NUDGE_IDEMPOTENCY_KEY", idempotency_key.c_str(), 1);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  // A command that does not read its input gets EPIPE (SIGPIPE is ignored by nudge deliver):
  // its exit status decides.
  std::size_t off = 0;
  while (off < body.size()) {
    const auto n = ::write(in[1], body.data() + off, body.size() - off);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    off += static_cast<std::size_t>(n);
  }
  ::close(in[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      break;
    }
    if (r < 0 && errno != EINTR) {
      return {false, fmt::format("cannot wait for the command: {}", std::strerror(errno))};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return {false,
              fmt::format("the command ran longer than {} ms and was killed", timeout.count())};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return {true, {}};
  }
  if (WIFEXITED(status)) {
    return {false, fmt::format("the command exited with status {}", WEXITSTATUS(status))};
  }
  return {false, fmt::format("the command was killed by signal {}", WTERMSIG(status))};
}

}  // namespace nudge_cli
