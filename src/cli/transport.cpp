// nudge deliver's transports: libcurl's POST and a command's standard input (transport.hpp).
#include "transport.hpp"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <curl/curl.h>
#include <dlfcn.h>
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

// libcurl is loaded with dlopen when the first webhook is made, not linked: only
// `nudge deliver --webhook` uses it, and linking it made every start of nudge map ~30 more
// shared libraries (TLS, HTTP/2, LDAP, Kerberos...: --help went from 5.6 to 11.7 MiB peak RSS).
// Its C API and ABI are stable across libcurl.so.4; the pointers keep <curl/curl.h>'s types, so
// the calls below are type-checked as before.
struct curl_api {
  decltype(&curl_global_init) global_init = nullptr;
  decltype(&curl_easy_init) easy_init = nullptr;
  decltype(&curl_easy_cleanup) easy_cleanup = nullptr;
  decltype(&curl_easy_setopt) easy_setopt = nullptr;
  decltype(&curl_easy_perform) easy_perform = nullptr;
  decltype(&curl_easy_getinfo) easy_getinfo = nullptr;
  decltype(&curl_easy_strerror) easy_strerror = nullptr;
  decltype(&curl_slist_append) slist_append = nullptr;
  decltype(&curl_slist_free_all) slist_free_all = nullptr;
};

// The library's file name: NUDGE_LIBCURL if set (a libcurl outside the loader's search path, and
// the tests' way to name a missing one), else the soname every libcurl 7 and 8 has.
std::string libcurl_name() {
  const char* name = std::getenv("NUDGE_LIBCURL");
  return name != nullptr && *name != '\0' ? name : "libcurl.so.4";
}

template <typename F>
void resolve(void* lib, const std::string& name, const char* symbol, F& f) {
  void* p = ::dlsym(lib, symbol);
  if (p == nullptr) {
    throw std::runtime_error(fmt::format("{}: no symbol {}: not a libcurl", name, symbol));
  }
  f = reinterpret_cast<F>(p);
}

// Loads libcurl and runs curl_global_init once per process; throws naming the library if it
// cannot (a later webhook tries again).
const curl_api& curl() {
  static const curl_api api = [] {
    const std::string name = libcurl_name();
    void* lib = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      const char* why = ::dlerror();
      throw std::runtime_error(fmt::format(
          "--webhook needs libcurl, which cannot be loaded: {} (Debian: apt-get install libcurl4)",
          why != nullptr ? why : name));
    }
    // Never closed: libcurl stays loaded for the rest of the process.
    curl_api a;
    resolve(lib, name, "curl_global_init", a.global_init);
    resolve(lib, name, "curl_easy_init", a.easy_init);
    resolve(lib, name, "curl_easy_cleanup", a.easy_cleanup);
    resolve(lib, name, "curl_easy_setopt", a.easy_setopt);
    resolve(lib, name, "curl_easy_perform", a.easy_perform);
    resolve(lib, name, "curl_easy_getinfo", a.easy_getinfo);
    resolve(lib, name, "curl_easy_strerror", a.easy_strerror);
    resolve(lib, name, "curl_slist_append", a.slist_append);
    resolve(lib, name, "curl_slist_free_all", a.slist_free_all);
    if (a.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error(fmt::format("{}: curl_global_init failed", name));
    }
    return a;
  }();
  return api;
}

}  // namespace

struct webhook::impl {
  std::string url;
  CURL* curl = nullptr;
  ~impl() {
    if (curl != nullptr) {
      nudge_cli::curl().easy_cleanup(curl);
    }
  }
};

webhook::webhook(std::string url, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>()) {
  const curl_api& api = curl();
  impl_->url = std::move(url);
  impl_->curl = api.easy_init();
  if (impl_->curl == nullptr) {
    throw std::runtime_error(fmt::format("--webhook {}: cannot start libcurl", impl_->url));
  }
  CURL* c = impl_->curl;
  const curl_write_callback write = &discard;
  api.easy_setopt(c, CURLOPT_URL, impl_->url.c_str());
  api.easy_setopt(c, CURLOPT_POST, 1L);
  api.easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  api.easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  api.easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // our SIGTERM handler stays ours
  api.easy_setopt(c, CURLOPT_WRITEFUNCTION, write);
  api.easy_setopt(c, CURLOPT_USERAGENT, "nudge-deliver");
  // Only http and https: a URL of another scheme (file://, ...) is refused at the first post.
  // A libcurl older than 7.85 does not know the option: refused rather than left open.
  if (api.easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
    throw std::runtime_error(
        fmt::format("--webhook {}: {} is older than 7.85 (no CURLOPT_PROTOCOLS_STR)", impl_->url,
                    libcurl_name()));
  }
}

webhook::~webhook() = default;

attempt_result webhook::post(const std::string& body, const std::string& idempotency_key) {
  const curl_api& api = curl();
  CURL* c = impl_->curl;
  curl_slist* headers = nullptr;
  headers = api.slist_append(headers, "Content-Type: application/json");
  const std::string key_header = "Idempotency-Key: " + idempotency_key;
  headers = api.slist_append(headers, key_header.c_str());
  api.easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  api.easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  api.easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  const CURLcode rc = api.easy_perform(c);
  long status = 0;
  api.easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  api.easy_setopt(c, CURLOPT_HTTPHEADER, static_cast<curl_slist*>(nullptr));
  api.slist_free_all(headers);
  if (rc != CURLE_OK) {
    return {false, api.easy_strerror(rc)};
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
