// nudge's log lines on standard error: plain messages (the default, as nudge always printed
// them), or lines with a timestamp and a level (`--log-format text`), or JSON lines
// (`--log-format json`), filtered by `--log-level`.
//
// Written with fmt rather than spdlog: fmt is already the project's formatter, and spdlog's
// pattern formatter does not escape a message for JSON (a file name with a quote in it would
// make an invalid line), so JSON lines would need a formatter of our own anyway (docs/live.md,
// "Metrics and logs").
#pragma once

#include <cstdint>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "observe.hpp"

namespace nudge_cli {

enum class log_level : std::uint8_t { info, warn, error };
enum class log_format : std::uint8_t { plain, text, json };

/// A structured field of a JSON log line (text and plain lines carry it in the message).
struct log_field {
  std::string_view key;
  std::string value;
  bool number = false;  ///< written bare in JSON (the value is a number's text)
};

/// Parses --log-level / --log-format values (CLI11 has checked them).
log_level parse_log_level(std::string_view s);
log_format parse_log_format(std::string_view s);
std::string_view log_level_name(log_level l) noexcept;

/// `s` as a JSON string literal, quotes included: control characters and invalid UTF-8 escaped
/// (an invalid byte becomes U+FFFD), so every line parses.
std::string json_quote(std::string_view s);

/// The process's logger (one per process: main configures it from the options).
/// Thread-safe: each line is written whole under a lock (the metrics server thread logs too).
class logger {
 public:
  void configure(log_format format, log_level level) noexcept;
  log_format format() const noexcept { return format_; }
  bool enabled(log_level l) const noexcept { return l >= level_; }

  /// One line: the message (no trailing newline), and fields for JSON lines.
  void write(log_level l, std::string_view msg, std::initializer_list<log_field> fields = {});
  void info(std::string_view msg, std::initializer_list<log_field> fields = {}) {
    write(log_level::info, msg, fields);
  }
  void warn(std::string_view msg, std::initializer_list<log_field> fields = {}) {
    write(log_level::warn, msg, fields);
  }
  void error(std::string_view msg, std::initializer_list<log_field> fields = {}) {
    write(log_level::error, msg, fields);
  }

 private:
  std::mutex mutex_;
  log_format format_ = log_format::plain;
  log_level level_ = log_level::info;
};

logger& log();

/// Logs each batch at info: "batch: N events, N actions, N rejected, 0.004 s (engine at T)",
/// with the same as JSON fields. Added only with --log-format text or json: the plain format
/// prints only the run's summary, as nudge run always did.
class batch_log final : public run_observer {
 public:
  void on_batch(const batch_report& batch, const std::optional<outbox_report>& outbox) override;
};

}  // namespace nudge_cli
