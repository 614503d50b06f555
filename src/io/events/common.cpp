// Shared by the event and contact readers (common.hpp): input problems, file formats, reading a
// file whole, records and fields.
#include "common.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <nudge/geo.hpp>
#include <nudge/io/read_events.hpp>

namespace nudge {

std::string input_problem::to_string() const {
  if (line == 0) {
    return fmt::format("{}: {}", file, reason);
  }
  return fmt::format("{}:{}: {}", file, line, reason);
}

read_error::read_error(input_problem problem)
    : std::runtime_error(problem.to_string()), problem_(std::move(problem)) {}

file_format format_of(std::string_view path) {
  if (path == "-") {
    throw read_error({std::string{path},
                      0,
                      "standard input has no extension: its format is taken from its first byte",
                      {}});
  }
  std::string_view name = path;
  auto ends_with = [&](std::string_view ext) {
    if (name.size() < ext.size()) {
      return false;
    }
    auto tail = name.substr(name.size() - ext.size());
    return std::equal(tail.begin(), tail.end(), ext.begin(), [](char a, char b) {
      return (a >= 'A' && a <= 'Z' ? static_cast<char>(a - 'A' + 'a') : a) == b;
    });
  };
  if (ends_with(".gz")) {
    name.remove_suffix(3);  // read through zlib: the format is the name's before ".gz"
  }
  if (ends_with(".csv")) {
    return file_format::csv;
  }
  if (ends_with(".jsonl")) {
    return file_format::jsonl;
  }
  throw read_error({std::string{path},
                    0,
                    "unknown file format (expected a .csv, .jsonl, .csv.gz or .jsonl.gz extension)",
                    {}});
}

namespace event_io {

text_buffer padded(std::string text) {
  text_buffer b;
  b.size = text.size();
  b.bytes = std::move(text);
  b.bytes.resize(b.size + simdjson::SIMDJSON_PADDING, '\0');
  return b;
}

bool is_gzip_name(std::string_view path) {
  return path.size() > 3 &&
         (path.substr(path.size() - 3) == ".gz" || path.substr(path.size() - 3) == ".GZ");
}

text_buffer read_whole_file(const std::string& path) {
  byte_source source{path};
  // A plain file's size is known: one allocation (a .gz file or a pipe grows the string).
  constexpr std::size_t step = std::size_t{1} << 16;
  std::string bytes(source.total() + step, '\0');
  std::size_t size = 0;
  while (true) {
    if (bytes.size() - size < step) {
      bytes.resize(2 * bytes.size());
    }
    const std::size_t got = source.pull(bytes.data() + size, bytes.size() - size);
    if (got == 0) {
      break;
    }
    size += got;
  }
  bytes.resize(size);
  return padded(std::move(bytes));
}

byte_source::byte_source(const std::string& path) : path_(path) {
  if (path == "-" || is_gzip_name(path)) {
    gzFile z = nullptr;
    if (path == "-") {
      const int fd = ::dup(STDIN_FILENO);  // gzclose closes it, not standard input itself
      z = fd < 0 ? nullptr : ::gzdopen(fd, "rb");
      if (z == nullptr && fd >= 0) {
        ::close(fd);
      }
    } else {
      z = ::gzopen(path.c_str(), "rb");
    }
    if (z == nullptr) {
      throw read_error({path, 0, fmt::format("cannot open: {}", std::strerror(errno)), {}});
    }
    ::gzbuffer(z, 1 << 17);
    zlib_ = z;
  } else {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      throw read_error({path, 0, fmt::format("cannot open: {}", std::strerror(errno)), {}});
    }
  }
  if (path != "-") {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && st.st_size > 0) {
      total_ = static_cast<std::size_t>(st.st_size);
    }
  }
}

byte_source::~byte_source() {
  if (file_ != nullptr) {
    std::fclose(file_);
  }
  if (zlib_ != nullptr) {
    ::gzclose(static_cast<gzFile>(zlib_));
  }
}

std::size_t byte_source::pull(char* into, std::size_t n) {
  if (file_ != nullptr) {
    const std::size_t got = std::fread(into, 1, n, file_);
    if (got == 0 && std::ferror(file_) != 0) {
      throw read_error({path_, 0, fmt::format("cannot read: {}", std::strerror(errno)), {}});
    }
    plain_done_ += got;
    return got;
  }
  auto z = static_cast<gzFile>(zlib_);
  const int got = ::gzread(z, into, static_cast<unsigned>(std::min<std::size_t>(n, 1u << 30)));
  int code = Z_OK;
  std::string why = ::gzerror(z, &code);
  // A truncated stream ends the reads like the end of the file, with Z_BUF_ERROR set.
  if (got < 0 || (got == 0 && code != Z_OK && code != Z_STREAM_END)) {
    if (code == Z_ERRNO) {
      why = std::strerror(errno);
    }
    throw read_error({path_, 0, fmt::format("cannot read: {}", why), {}});
  }
  plain_done_ += static_cast<std::size_t>(got);
  return static_cast<std::size_t>(got);
}

std::size_t byte_source::done() const noexcept {
  if (zlib_ != nullptr && path_ != "-") {
    const auto at = ::gzoffset(static_cast<gzFile>(zlib_));
    return at < 0 ? 0 : static_cast<std::size_t>(at);
  }
  return plain_done_;
}

std::size_t count_quotes(const char* p, const char* end) {
  std::size_t n = 0;
  while ((p = static_cast<const char*>(std::memchr(p, '"', static_cast<std::size_t>(end - p)))) !=
         nullptr) {
    ++n;
    ++p;
  }
  return n;
}

}  // namespace event_io

// Public (nudge/io/csv.hpp): `nudge sort` splits records with it too.
bool split_csv(std::string_view line, std::vector<std::string_view>& fields,
               std::vector<std::string>& storage, std::string& reason) {
  fields.clear();
  if (std::memchr(line.data(), '"', line.size()) == nullptr) {
    const char* p = line.data();
    const char* end = p + line.size();
    while (true) {
      const char* comma =
          static_cast<const char*>(std::memchr(p, ',', static_cast<std::size_t>(end - p)));
      if (comma == nullptr) {
        fields.emplace_back(p, static_cast<std::size_t>(end - p));
        return true;
      }
      fields.emplace_back(p, static_cast<std::size_t>(comma - p));
      p = comma + 1;
    }
  }
  storage.clear();
  storage.reserve(line.size() + 1);  // no reallocation: views into storage stay valid
  std::size_t i = 0;
  while (true) {
    std::string& cell = storage.emplace_back();
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (true) {
        if (i >= line.size()) {
          reason = "unterminated quoted field";
          return false;
        }
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cell.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cell.push_back(line[i++]);
      }
      if (i < line.size() && line[i] != ',') {
        reason = "unexpected character after a quoted field";
        return false;
      }
    } else {
      while (i < line.size() && line[i] != ',') {
        if (line[i] == '"') {
          reason = "quote inside an unquoted field";
          return false;
        }
        cell.push_back(line[i++]);
      }
    }
    fields.emplace_back(cell);
    if (i >= line.size()) {
      return true;
    }
    ++i;  // the comma
  }
}

namespace event_io {

std::string_view prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) {
    return s;
  }
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
    --n;
  }
  return s.substr(0, n);
}

std::string quote(std::string_view s) {
  constexpr std::size_t shown = 64;
  if (s.size() > shown) {
    return fmt::format("\"{}...\" ({} bytes)", prefix(s, shown), s.size());
  }
  return fmt::format("\"{}\"", s);
}

std::string problem_text(std::string_view line, const input_limits& limits) {
  if (line.size() <= limits.max_line_bytes) {
    return std::string{line};
  }
  return std::string{prefix(line, 256)} + "...";
}

[[gnu::cold, gnu::noinline]] void say_too_long(std::size_t size, std::size_t max,
                                               std::string_view what, const char* limit,
                                               std::string& reason) {
  reason = fmt::format("{} is {} bytes long; at most {} are allowed ({})", what, size, max, limit);
}

[[gnu::cold, gnu::noinline]] void say_out_of_range(std::string_view what, std::string_view text,
                                                   std::string& reason) {
  reason = fmt::format("{} {} is outside the supported range ({})", what,
                       text.size() <= 64 ? std::string{text} : quote(text), input_range_text);
}

bool parse_ts_general(std::string_view text, time_point& out, std::string& reason) {
  std::int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec == std::errc{} && end == text.data() + text.size()) [[likely]] {
    out = from_epoch(v);
    if (!in_input_range(out)) {
      say_out_of_range("ts", text, reason);
      return false;
    }
    return true;
  }
  time_error why = time_error::none;
  if (auto t = parse_time(text, &why)) {
    out = *t;
    return true;
  }
  if (why == time_error::out_of_range) {
    say_out_of_range("ts", text, reason);
    return false;
  }
  reason = fmt::format("ts {} is not an integer (epoch seconds) or an ISO-8601 time with offset",
                       quote(text));
  return false;
}

bool parse_decimal_general(std::string_view text, double& out, std::string_view what,
                           std::string& reason) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (end != text.data() + text.size() ||
      (ec != std::errc{} && ec != std::errc::result_out_of_range)) {
    reason = fmt::format("{} {} is not a number", what, quote(text));
    return false;
  }
  if (ec == std::errc::result_out_of_range || !std::isfinite(out)) {
    reason = fmt::format("{} {} is not a finite number", what, quote(text));
    return false;
  }
  return true;
}

value cell_value(std::string_view f) {
  std::string_view digits = f;
  if (!digits.empty() && digits.front() == '-') {
    digits.remove_prefix(1);
  }
  const auto dot = digits.find('.');
  const std::string_view whole = digits.substr(0, dot);
  const bool plain = !whole.empty() &&
                     whole.find_first_not_of("0123456789") == std::string_view::npos &&
                     (whole.size() == 1 || whole.front() != '0') &&
                     (dot == std::string_view::npos ||
                      (dot + 1 < digits.size() &&
                       digits.find_first_not_of("0123456789", dot + 1) == std::string_view::npos));
  if (plain) {
    if (dot == std::string_view::npos) {
      std::int64_t i = 0;
      auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), i);
      if (ec == std::errc{} && end == f.data() + f.size()) {
        return i;
      }
    } else {
      double d = 0;
      auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), d);
      if (ec == std::errc{} && end == f.data() + f.size() && std::isfinite(d)) {
        return d;
      }
    }
  }
  return std::string{f};
}

namespace {

// Standard input has no name to go by: JSON Lines if its first non-blank byte is '{' (no CSV
// header starts so), else CSV.
file_format sniff_format(const text_buffer& buf) {
  for (std::size_t i = 0; i < buf.size; ++i) {
    const char c = buf.data()[i];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') {
      return c == '{' ? file_format::jsonl : file_format::csv;
    }
  }
  return file_format::csv;
}

}  // namespace

file_format format_for(const std::string& path, const std::optional<file_format>& given,
                       const text_buffer& buf) {
  if (given) {
    return *given;
  }
  return path == "-" ? sniff_format(buf) : format_of(path);
}

}  // namespace event_io
}  // namespace nudge
