// nudge sort: an event log put in time order in bounded memory, for `nudge replay`, which needs
// its events sorted by ts.
//
// An external merge sort: records are read one at a time (through zlib, so .gz files and standard
// input work too), gathered until the memory budget is used, sorted stably by (ts, position in
// the file) and written to a temporary run file; the runs are then merged, at most `fan_in` at a
// time, into the output. Records are copied byte for byte: only their order changes. CSV records
// may span lines (a quoted line break, RFC 4180); the header row stays first.
#include "sort.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <queue>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <simdjson.h>
#include <unistd.h>
#include <zlib.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/time.hpp>

namespace nudge_cli {
namespace {

constexpr int exit_ok = 0;
constexpr int exit_input = 1;
constexpr int exit_usage = 2;
constexpr std::size_t fan_in = 64;           // runs merged at once (open files, read buffers)
constexpr std::size_t record_overhead = 48;  // bytes of bookkeeping per record held in memory

struct sort_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail_errno(const std::string& file, std::string_view operation) {
  throw sort_failure(fmt::format("{}: cannot {}: {}", file, operation, std::strerror(errno)));
}

// "256M", "64K", "1G" or a number of bytes.
std::optional<std::size_t> parse_size(std::string_view text) {
  std::size_t unit = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        unit = std::size_t{1} << 10;
        break;
      case 'M':
      case 'm':
        unit = std::size_t{1} << 20;
        break;
      case 'G':
      case 'g':
        unit = std::size_t{1} << 30;
        break;
      default:
        break;
    }
    if (unit != 1) {
      text.remove_suffix(1);
    }
  }
  std::size_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || n == 0 ||
      n > static_cast<std::size_t>(-1) / unit) {
    return std::nullopt;
  }
  return n * unit;
}

// Reads a file (or standard input, "-") through zlib, compressed or not, line by line.
class line_reader {
 public:
  explicit line_reader(const std::string& path) : path_(path) {
    if (path == "-") {
      const int fd = ::dup(STDIN_FILENO);
      file_ = fd < 0 ? nullptr : ::gzdopen(fd, "rb");
    } else {
      file_ = ::gzopen(path.c_str(), "rb");
    }
    if (file_ == nullptr) {
      fail_errno(path, "open");
    }
    ::gzbuffer(file_, 1 << 17);
  }
  ~line_reader() { ::gzclose(file_); }
  line_reader(const line_reader&) = delete;
  line_reader& operator=(const line_reader&) = delete;

  // The next line without its '\n'; false at the end of the file.
  bool next(std::string& out) {
    out.clear();
    bool any = false;
    while (true) {
      if (pos_ == size_) {
        if (!fill()) {
          return any;
        }
      }
      any = true;
      const char* start = buf_.get() + pos_;
      const void* nl = std::memchr(start, '\n', size_ - pos_);
      if (nl != nullptr) {
        const auto n = static_cast<std::size_t>(static_cast<const char*>(nl) - start);
        out.append(start, n);
        pos_ += n + 1;
        return true;
      }
      out.append(start, size_ - pos_);
      pos_ = size_;
      if (out.size() > nudge::input_limits{}.max_line_bytes) {
        return true;  // the caller refuses it; no need to read the rest into memory
      }
    }
  }

 private:
  bool fill() {
    const int n = ::gzread(file_, buf_.get(), static_cast<unsigned>(capacity));
    int code = Z_OK;
    const char* why = ::gzerror(file_, &code);
    if (n < 0 || (code != Z_OK && code != Z_STREAM_END)) {
      if (code == Z_ERRNO) {
        fail_errno(path_, "read");
      }
      throw sort_failure(fmt::format("{}: cannot read: {}", path_, why));
    }
    pos_ = 0;
    size_ = static_cast<std::size_t>(n);
    return n > 0;
  }

  static constexpr std::size_t capacity = 1 << 16;
  std::string path_;
  gzFile file_ = nullptr;
  std::unique_ptr<char[]> buf_ = std::make_unique<char[]>(capacity);
  std::size_t pos_ = 0, size_ = 0;
};

// One record: its sort key and its bytes (without the final line break).
struct record {
  std::int64_t ts = 0;
  std::uint64_t seq = 0;  // position in the input: equal times keep the file's order
  std::string text;
};

bool before(const record& a, const record& b) {
  return a.ts != b.ts ? a.ts < b.ts : a.seq < b.seq;
}

// The cell in `column` of a CSV record (quotes removed), split as the readers split it
// (nudge::split_csv, after dropping a trailing '\r' as they do); false for a malformed record or
// one with too few fields.
bool csv_cell(std::string_view line, std::size_t column, std::string& out) {
  if (!line.empty() && line.back() == '\r') {
    line.remove_suffix(1);
  }
  std::vector<std::string_view> fields;
  std::vector<std::string> storage;
  std::string reason;
  if (!nudge::split_csv(line, fields, storage, reason) || column >= fields.size()) {
    return false;
  }
  out.assign(fields[column]);
  return true;
}

std::size_t count_quotes(std::string_view s) {
  return static_cast<std::size_t>(std::count(s.begin(), s.end(), '"'));
}

// Reads records and their times, naming file:line for one whose time cannot be read.
class record_source {
 public:
  record_source(const std::string& path, nudge::file_format format)
      : path_(path), format_(format), lines_(path) {
    if (format_ == nudge::file_format::csv) {
      if (!next_text(header_)) {
        throw sort_failure(fmt::format("{}: bad header: the file is empty", path_));
      }
      std::string cell;
      for (std::size_t col = 0; csv_cell(header_, col, cell); ++col) {
        if (cell == "ts") {
          ts_column_ = col;
          break;
        }
      }
      if (!ts_column_) {
        throw sort_failure(fmt::format("{}:1: bad header: missing column \"ts\"", path_));
      }
    }
  }

  const std::string& header() const { return header_; }

  bool next(record& r) {
    while (next_text(r.text)) {
      if (r.text.empty() || r.text == "\r") {
        continue;  // blank lines are dropped, as the readers skip them
      }
      r.seq = seq_++;
      r.ts = time_of(r.text);
      return true;
    }
    return false;
  }

 private:
  // A record's text: a line, or for CSV the lines a quoted field spans.
  bool next_text(std::string& out) {
    if (!lines_.next(out)) {
      return false;
    }
    first_line_ = ++line_;
    if (format_ == nudge::file_format::csv) {
      std::size_t quotes = count_quotes(out);
      std::string more;
      while (quotes % 2 == 1 && out.size() <= nudge::input_limits{}.max_line_bytes &&
             lines_.next(more)) {
        ++line_;
        out += '\n';
        out += more;
        quotes += count_quotes(more);
      }
    }
    if (out.size() > nudge::input_limits{}.max_line_bytes) {
      refuse(fmt::format("line is more than {} bytes long (max_line_bytes)",
                         nudge::input_limits{}.max_line_bytes));
    }
    return true;
  }

  [[noreturn]] void refuse(const std::string& why) const {
    throw sort_failure(fmt::format("{}:{}: {}", path_, first_line_, why));
  }

  std::int64_t parse_ts(std::string_view text) const {
    nudge::time_error why = nudge::time_error::none;
    if (auto t = nudge::parse_time(text, &why)) {
      return nudge::to_epoch(*t);
    }
    if (why == nudge::time_error::out_of_range) {
      refuse(
          fmt::format("ts {} is outside the supported range ({})", text, nudge::input_range_text));
    }
    refuse(
        fmt::format("ts \"{}\" is not an integer (epoch seconds) or an ISO-8601 time with "
                    "offset",
                    text));
  }

  std::int64_t time_of(std::string_view text) {
    if (format_ == nudge::file_format::csv) {
      std::string cell;
      if (!csv_cell(text, *ts_column_, cell)) {
        refuse("no ts field (a malformed quote, or too few fields)");
      }
      return parse_ts(cell);
    }
    padded_.assign(text);
    padded_.resize(text.size() + simdjson::SIMDJSON_PADDING, '\0');
    simdjson::ondemand::document doc;
    simdjson::ondemand::object obj;
    if (parser_.iterate(padded_.data(), text.size(), padded_.size()).get(doc) ||
        doc.get_object().get(obj)) {
      refuse("not a JSON object");
    }
    for (auto member : obj) {
      simdjson::ondemand::field f;
      std::string_view key;
      if (std::move(member).get(f) || f.unescaped_key().get(key)) {
        refuse("not valid JSON");
      }
      if (key != "ts" && key != "at") {
        continue;
      }
      simdjson::ondemand::value v = f.value();
      simdjson::ondemand::json_type type;
      if (v.type().get(type)) {
        refuse("not valid JSON");
      }
      std::string_view s;
      if (type == simdjson::ondemand::json_type::string && !v.get_string().get(s)) {
        return parse_ts(s);
      }
      double d = 0;
      if (type == simdjson::ondemand::json_type::number && !v.get_double().get(d) &&
          std::isfinite(d) && std::abs(d) < 1e13) {
        const auto t = nudge::from_epoch(static_cast<std::int64_t>(std::floor(d)));
        if (!nudge::in_input_range(t)) {
          refuse(fmt::format("ts {} is outside the supported range ({})", nudge::to_epoch(t),
                             nudge::input_range_text));
        }
        return nudge::to_epoch(t);
      }
      refuse(fmt::format("{} is not a time", key));
    }
    refuse("missing field \"ts\"");
  }

  std::string path_;
  nudge::file_format format_;
  line_reader lines_;
  std::string header_;
  std::optional<std::size_t> ts_column_;
  std::size_t line_ = 0, first_line_ = 0;
  std::uint64_t seq_ = 0;
  simdjson::ondemand::parser parser_;
  std::string padded_;
};

// A run on disk: records as (ts, seq, length, bytes), little-endian as the machine writes them
// (the file lives only as long as this process).
class run_file {
 public:
  explicit run_file(std::string path) : path_(std::move(path)) {}
  ~run_file() {
    close();
    std::remove(path_.c_str());
  }
  run_file(const run_file&) = delete;
  run_file& operator=(const run_file&) = delete;

  void open_write() {
    file_ = std::fopen(path_.c_str(), "wb");
    if (file_ == nullptr) {
      fail_errno(path_, "create a temporary run file");
    }
  }
  void write(const record& r) {
    const auto size = static_cast<std::uint64_t>(r.text.size());
    if (std::fwrite(&r.ts, sizeof r.ts, 1, file_) != 1 ||
        std::fwrite(&r.seq, sizeof r.seq, 1, file_) != 1 ||
        std::fwrite(&size, sizeof size, 1, file_) != 1 ||
        std::fwrite(r.text.data(), 1, r.text.size(), file_) != r.text.size()) {
      fail_errno(path_, "write a temporary run file");
    }
  }
  void open_read() {
    close();
    file_ = std::fopen(path_.c_str(), "rb");
    if (file_ == nullptr) {
      fail_errno(path_, "open a temporary run file");
    }
  }
  bool read(record& r) {
    std::uint64_t size = 0;
    if (std::fread(&r.ts, sizeof r.ts, 1, file_) != 1) {
      if (std::ferror(file_) != 0) {
        fail_errno(path_, "read a temporary run file");
      }
      return false;
    }
    if (std::fread(&r.seq, sizeof r.seq, 1, file_) != 1 ||
        std::fread(&size, sizeof size, 1, file_) != 1) {
      fail_errno(path_, "read a temporary run file");
    }
    r.text.resize(size);
    if (std::fread(r.text.data(), 1, size, file_) != size) {
      fail_errno(path_, "read a temporary run file");
    }
    return true;
  }
  void close() {
    if (file_ != nullptr) {
      const bool failed = std::fclose(file_) != 0;
      file_ = nullptr;
      if (failed) {
        fail_errno(path_, "write a temporary run file");
      }
    }
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// The sorted log (plain or, for .gz, compressed), written to PATH.partial and renamed to PATH
// once complete: a failed sort leaves no half-sorted file under the name asked for.
class output {
 public:
  output(const std::string& path, const std::string& header)
      : path_(path), partial_(path + ".partial") {
    const bool gz = path.size() > 3 && path.substr(path.size() - 3) == ".gz";
    if (gz) {
      gz_ = ::gzopen(partial_.c_str(), "wb");
      if (gz_ == nullptr) {
        fail_errno(partial_, "create");
      }
    } else {
      file_ = std::fopen(partial_.c_str(), "wb");
      if (file_ == nullptr) {
        fail_errno(partial_, "create");
      }
    }
    if (!header.empty()) {
      put(header);
    }
  }
  ~output() {
    if (file_ != nullptr) {
      std::fclose(file_);
    }
    if (gz_ != nullptr) {
      ::gzclose(gz_);
    }
    if (!done_) {
      std::remove(partial_.c_str());
    }
  }
  output(const output&) = delete;
  output& operator=(const output&) = delete;

  void put(std::string_view text) {
    buf_.append(text);
    buf_ += '\n';
    if (buf_.size() >= (1 << 20)) {
      flush();
    }
  }
  void finish() {
    flush();
    if (file_ != nullptr) {
      const bool failed = std::fclose(file_) != 0;
      file_ = nullptr;
      if (failed) {
        fail_errno(partial_, "write");
      }
    }
    if (gz_ != nullptr) {
      const int rc = ::gzclose(gz_);
      gz_ = nullptr;
      if (rc != Z_OK) {
        fail_errno(partial_, "write");
      }
    }
    if (std::rename(partial_.c_str(), path_.c_str()) != 0) {
      fail_errno(path_, fmt::format("rename {} to", partial_));
    }
    done_ = true;
  }

 private:
  void flush() {
    if (buf_.empty()) {
      return;
    }
    const bool ok = file_ != nullptr
                        ? std::fwrite(buf_.data(), 1, buf_.size(), file_) == buf_.size()
                        : ::gzwrite(gz_, buf_.data(), static_cast<unsigned>(buf_.size())) ==
                              static_cast<int>(buf_.size());
    if (!ok) {
      fail_errno(partial_, "write");
    }
    buf_.clear();
  }

  std::string path_, partial_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  std::string buf_;
  bool done_ = false;
};

// Merges sorted runs, calling `emit` for each record in order.
template <class Emit>
void merge(std::vector<run_file*>& runs, Emit&& emit) {
  std::vector<record> heads(runs.size());
  auto later = [&](std::size_t a, std::size_t b) { return before(heads[b], heads[a]); };
  std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(later)> queue{later};
  for (std::size_t i = 0; i < runs.size(); ++i) {
    runs[i]->open_read();
    if (runs[i]->read(heads[i])) {
      queue.push(i);
    }
  }
  while (!queue.empty()) {
    const std::size_t i = queue.top();
    queue.pop();
    emit(heads[i]);
    if (runs[i]->read(heads[i])) {
      queue.push(i);
    }
  }
}

}  // namespace

void add_sort_command(CLI::App& app, sort_args& args) {
  args.command = app.add_subcommand(
      "sort",
      "Sort an event log by time in bounded memory (stable: equal times keep the file's order)");
  args.command->add_option("IN", args.in, "Events (.csv or .jsonl, optionally .gz; - for stdin)")
      ->required();
  args.command->add_option("-o,--out", args.out, "Write the sorted log here (.gz: compressed)")
      ->required();
  args.command->add_option("--memory", args.memory,
                           "Records held in memory before a sorted run goes to disk (default "
                           "256M; K, M or G)");
  args.command->add_option("--temp-dir", args.temp_dir,
                           "Directory for the temporary runs (default: the system's)");
  args.command
      ->add_option("--format", args.format,
                   "csv or jsonl (default: by IN's extension; for -, by its first byte)")
      ->check(CLI::IsMember({"csv", "jsonl"}));
}

int run_sort(const sort_args& args) {
  const auto budget = parse_size(args.memory);
  if (!budget) {
    fmt::print(stderr, "--memory: \"{}\" is not a size (e.g. 256M, 64K, 1G or bytes)\n",
               args.memory);
    return exit_usage;
  }
  nudge::file_format format = nudge::file_format::csv;
  if (!args.format.empty()) {
    format = args.format == "jsonl" ? nudge::file_format::jsonl : nudge::file_format::csv;
  } else if (args.in == "-") {
    fmt::print(stderr, "nudge sort -: give --format csv or --format jsonl for standard input\n");
    return exit_usage;
  } else {
    format = nudge::format_of(args.in);
  }
  std::error_code ec;
  const std::filesystem::path temp_dir = args.temp_dir.empty()
                                             ? std::filesystem::temp_directory_path(ec)
                                             : std::filesystem::path{args.temp_dir};
  const std::string prefix =
      (temp_dir / fmt::format("nudge-sort-{}-", static_cast<long>(::getpid()))).string();
  try {
    record_source source{args.in, format};
    std::vector<std::unique_ptr<run_file>> runs;
    std::vector<record> held;
    std::size_t used = 0;
    std::size_t made = 0;
    auto spill = [&] {
      std::stable_sort(held.begin(), held.end(), before);
      auto run = std::make_unique<run_file>(fmt::format("{}{}", prefix, made++));
      run->open_write();
      for (const auto& r : held) {
        run->write(r);
      }
      run->close();
      runs.push_back(std::move(run));
      held.clear();
      used = 0;
    };
    record r;
    while (source.next(r)) {
      used += r.text.size() + record_overhead;
      held.push_back(std::move(r));
      r = record{};
      if (used >= *budget) {
        spill();
      }
    }
    std::size_t records = 0;
    if (runs.empty()) {  // everything fit in memory
      std::stable_sort(held.begin(), held.end(), before);
      output out{args.out, source.header()};
      for (const auto& h : held) {
        out.put(h.text);
      }
      out.finish();
      records = held.size();
    } else {
      if (!held.empty()) {
        spill();
      }
      // Merge passes until at most fan_in runs are left, then into the output.
      while (runs.size() > fan_in) {
        std::vector<std::unique_ptr<run_file>> next;
        for (std::size_t from = 0; from < runs.size(); from += fan_in) {
          std::vector<run_file*> group;
          for (std::size_t i = from; i < std::min(runs.size(), from + fan_in); ++i) {
            group.push_back(runs[i].get());
          }
          auto merged = std::make_unique<run_file>(fmt::format("{}{}", prefix, made++));
          merged->open_write();
          merge(group, [&](const record& x) { merged->write(x); });
          merged->close();
          next.push_back(std::move(merged));
        }
        runs = std::move(next);
      }
      std::vector<run_file*> group;
      for (auto& run : runs) {
        group.push_back(run.get());
      }
      output out{args.out, source.header()};
      merge(group, [&](const record& x) {
        out.put(x.text);
        ++records;
      });
      out.finish();
    }
    fmt::print(stderr, "{} records sorted into {} ({} temporary runs)\n", records, args.out, made);
  } catch (const sort_failure& e) {
    fmt::print(stderr, "{}\n", e.what());
    return exit_input;
  }
  return exit_ok;
}

}  // namespace nudge_cli
