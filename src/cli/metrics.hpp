// `nudge run`'s metrics in the Prometheus text exposition format 0.0.4: written atomically to a
// file after each batch (--metrics-file, for node_exporter's textfile collector or a cron job)
// and/or served on GET /metrics by a small HTTP thread (--metrics ADDR). docs/live.md, "Metrics
// and logs", lists the metrics.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "observe.hpp"

namespace nudge_cli {

/// The counters and gauges of one process (they start at 0 with each nudge run, as Prometheus
/// counters do after a restart).
class run_metrics {
 public:
  /// Upper bounds of the batch latency histogram, in seconds (+Inf is implied).
  static constexpr double latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,    1,     2.5,  5,     10};

  void count_actions(std::span<const nudge::due_action> actions);
  void count_batch(const batch_report& batch);
  void set_outbox(const outbox_report& outbox) { outbox_ = outbox; }
  void set_engine_now(nudge::time_point t) { engine_now_ = t; }

  /// The exposition text at wall-clock instant `wall` (the age and lag gauges are relative to
  /// it).
  std::string render(std::chrono::system_clock::time_point wall) const;

 private:
  std::uint64_t events_ = 0;
  std::uint64_t rejected_ = 0;
  std::uint64_t batches_ = 0;
  /// (rule label, action verb) -> count. A map: sorted output, stable for tests and diffs.
  std::map<std::pair<std::string, std::string>, std::uint64_t> actions_;
  std::uint64_t buckets_[std::size(latency_buckets)] = {};
  double latency_sum_ = 0;
  outbox_report outbox_;
  std::optional<nudge::time_point> engine_now_;
};

/// A Prometheus label value escaped as the format says: backslash, double quote and line feed.
std::string escape_label_value(std::string_view s);

/// Splits --metrics ADDR ("HOST:PORT", ":PORT", "PORT", "[::1]:PORT") into host (127.0.0.1 by
/// default) and port; false if the port is not a number from 0 to 65535.
bool split_metrics_address(const std::string& address, std::string& host, std::string& port);

/// Serves the latest exposition text on GET /metrics from its own thread, over plain POSIX
/// sockets (one request at a time, `Connection: close`: a scraper's load; no library needed).
/// Anything else gets 404 (another path) or 405 (another method).
class metrics_server {
 public:
  /// Binds `address` ("HOST:PORT", ":PORT" or "PORT"; HOST defaults to 127.0.0.1, "[::1]:PORT"
  /// for IPv6; port 0 picks a free one) and starts serving.
  /// @throws std::runtime_error naming the address and the system's reason.
  explicit metrics_server(const std::string& address);
  ~metrics_server();
  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;

  /// The bound address as "HOST:PORT" (the port chosen when 0 was asked).
  const std::string& bound() const noexcept { return bound_; }
  /// Replaces the text served from now on.
  void publish(std::string text);

 private:
  void serve();
  void answer(int fd);

  std::string bound_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  ///< a pipe: the destructor writes to stop the thread
  std::mutex mutex_;
  std::string text_;
  std::thread thread_;
};

/// The metrics observer: counts, then writes --metrics-file (temp file + rename) and publishes
/// to the server after each batch.
class metrics_observer final : public run_observer {
 public:
  /// `file` empty: no file; `server` null: no server.
  metrics_observer(std::string file, std::unique_ptr<metrics_server> server);

  void on_actions(std::span<const nudge::due_action> actions) override;
  void on_batch(const batch_report& batch, const std::optional<outbox_report>& outbox) override;
  void on_end(const std::optional<outbox_report>& outbox) override;
  bool wants_outbox() const override { return true; }

  const run_metrics& metrics() const noexcept { return metrics_; }

 private:
  void publish();

  std::string file_;
  std::unique_ptr<metrics_server> server_;
  run_metrics metrics_;
};

/// Writes `text` to `path` atomically: to "PATH.tmp", then renamed over PATH, so a reader sees
/// the old file or the new one, whole. (No fsync: metrics are not worth a disk flush per batch,
/// and after a crash the next run writes the file again.)
/// @throws std::system_error naming the file.
void write_file_atomically(const std::string& path, std::string_view text);

}  // namespace nudge_cli
