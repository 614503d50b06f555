// How nudge deliver hands one action over: an HTTP POST (libcurl) or a command's standard input.
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace nudge_cli {

/// The outcome of one attempt.
struct attempt_result {
  bool delivered = false;  ///< a 2xx answer, or the command exited 0
  std::string error;       ///< otherwise why, e.g. "HTTP 503", "Couldn't connect to server"
};

/// Posts JSON bodies to one URL with `Content-Type: application/json` and an `Idempotency-Key`
/// header, reusing the connection. Only a 2xx status counts as delivered.
class webhook {
 public:
  webhook(std::string url, std::chrono::milliseconds timeout);
  ~webhook();
  webhook(const webhook&) = delete;
  webhook& operator=(const webhook&) = delete;
  attempt_result post(const std::string& body, const std::string& idempotency_key);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Runs `command` with /bin/sh -c, the body on its standard input and NUDGE_IDEMPOTENCY_KEY in
/// its environment; delivered if it exits 0 within `timeout` (else it is killed: SIGKILL).
attempt_result run_command(const std::string& command, const std::string& body,
                           const std::string& idempotency_key, std::chrono::milliseconds timeout);

}  // namespace nudge_cli
