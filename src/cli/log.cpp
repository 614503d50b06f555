#include "log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

#include <fmt/format.h>

namespace nudge_cli {

log_level parse_log_level(std::string_view s) {
  return s == "error" ? log_level::error : s == "warn" ? log_level::warn : log_level::info;
}

log_format parse_log_format(std::string_view s) {
  return s == "json" ? log_format::json : s == "text" ? log_format::text : log_format::plain;
}

std::string_view log_level_name(log_level l) noexcept {
  switch (l) {
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
  }
  return "info";
}

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto b = static_cast<unsigned char>(s[i]);
  std::size_t n = 0;
  std::uint32_t cp = 0;
  if (b < 0x80) {
    return 1;
  } else if (b >= 0xC2 && b <= 0xDF) {
    n = 2;
    cp = b & 0x1F;
  } else if (b >= 0xE0 && b <= 0xEF) {
    n = 3;
    cp = b & 0x0F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    n = 4;
    cp = b & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) {
    return 0;
  }
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xC0) != 0x80) {
      return 0;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  // Overlong forms, surrogates and past U+10FFFF are not UTF-8.
  if ((n == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
    return 0;
  }
  return n;
}

// Now as ISO-8601 UTC with milliseconds.
std::string wall_time() {
  const auto now = std::chrono::system_clock::now();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
}

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const char c = s[i];
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c == '\t') {
      out += "\\t";
      ++i;
    } else if (c == '\r') {
      out += "\\r";
      ++i;
    } else if (u < 0x20 || u == 0x7F) {
      out += fmt::format("\\u{:04x}", u);
      ++i;
    } else if (const auto n = utf8_length(s, i); n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
  return out;
}

void logger::configure(log_format format, log_level level) noexcept {
  const std::lock_guard lock{mutex_};
  format_ = format;
  level_ = level;
}

void logger::write(log_level l, std::string_view msg, std::initializer_list<log_field> fields) {
  if (!enabled(l)) {
    return;
  }
  std::string line;
  switch (format_) {
    case log_format::plain:
      line = fmt::format("{}\n", msg);
      break;
    case log_format::text:
      line = fmt::format("{} {} {}\n", wall_time(), log_level_name(l), msg);
      break;
    case log_format::json: {
      line = fmt::format("{{\"ts\":\"{}\",\"level\":\"{}\",\"msg\":{}", wall_time(),
                         log_level_name(l), json_quote(msg));
      for (const auto& f : fields) {
        line += ',';
        line += json_quote(f.key);
        line += ':';
        line += f.number ? f.value : json_quote(f.value);
      }
      line += "}\n";
      break;
    }
  }
  const std::lock_guard lock{mutex_};
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

logger& log() {
  static logger instance;
  return instance;
}

void batch_log::on_batch(const batch_report& batch, const std::optional<outbox_report>& outbox) {
  (void)outbox;
  const double seconds = batch.duration.count();
  // A batch that never advanced the clock (a database without events yet) has no time to show.
  const std::string now =
      batch.engine_now == nudge::min_time ? "-" : nudge::format_time(batch.engine_now);
  log().info(fmt::format("batch: {} events, {} actions, {} rejected, {:.6f} s (engine at {})",
                         batch.events, batch.actions, batch.rejected, seconds, now),
             {{"events", std::to_string(batch.events), true},
              {"actions", std::to_string(batch.actions), true},
              {"rejected", std::to_string(batch.rejected), true},
              {"seconds", fmt::format("{:.6f}", seconds), true},
              {"engine_now", now, false}});
}

}  // namespace nudge_cli
