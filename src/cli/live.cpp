// nudge run / nudge outbox: live mode on the SQLite store.
//
// `nudge run` keeps in the database's meta table how far the events file was consumed (byte
// offset and line count), committed in the same transaction as each batch's states and outbox;
// run again after appending to the file, or after a crash, and it continues from there.
// Delivered actions are appended to --out as `ts,contact,rule,action,arg,idempotency_key` lines,
// each batch in one write(2); a crash between that write and the outbox deletion delivers those
// actions again with the same keys.
#include "live.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/csv.hpp>
#include <nudge/error.hpp>
#include <nudge/load_rules.hpp>
#include <nudge/read_events.hpp>
#include <nudge/snapshot.hpp>
#include <nudge/sqlite_store.hpp>

namespace nudge_cli {
namespace {

constexpr int exit_ok = 0;
constexpr int exit_input = 1;
constexpr int exit_usage = 2;

constexpr std::string_view meta_rules = "run.rules";
constexpr std::string_view meta_contacts = "run.contacts";
constexpr std::string_view meta_offset = "run.events_offset";
constexpr std::string_view meta_lines = "run.events_lines";
// The latest `now` a run advanced the database to: a changed rule file takes effect there.
constexpr std::string_view meta_now = "run.now";

// One read of the whole file (a character-by-character stream copy cost 3 % of a live run).
std::optional<std::string> slurp(const std::string& path) {
  std::ifstream in{path, std::ios::binary | std::ios::ate};
  if (!in) {
    return std::nullopt;
  }
  const auto size = in.tellg();
  if (size < 0) {  // not a regular file: read as a stream
    in.clear();
    return std::string{std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
  }
  std::string text(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (!in) {
    return std::nullopt;
  }
  return text;
}

// One CSV line; fields quoted as RFC 4180 says where needed (nudge/csv.hpp).
void append_action_line(fmt::memory_buffer& out, const nudge::due_action& a) {
  auto it = fmt::format_to(fmt::appender(out), "{},", nudge::to_epoch(a.due_at));
  it = nudge::write_csv_field(it, a.contact);
  *it++ = ',';
  it = nudge::write_csv_field(
      it, a.from_workflow() ? fmt::format("{}/{}", a.rule, a.step) : std::string{a.rule});
  *it++ = ',';
  it = nudge::write_csv_field(it, a.verb());
  *it++ = ',';
  it = nudge::write_csv_field(it, a.arg);
  fmt::format_to(it, ",{}\n", a.idempotency_key);
}

// Appends each delivery to a file (or standard output) in one write.
class append_sink final : public nudge::sink {
 public:
  explicit append_sink(const std::string& path) : path_(path.empty() ? "-" : path) {
    if (path.empty() || path == "-") {
      fd_ = STDOUT_FILENO;
      return;
    }
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      throw std::runtime_error(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    }
    owned_ = true;
  }
  ~append_sink() override {
    if (owned_) {
      ::close(fd_);
    }
  }
  append_sink(const append_sink&) = delete;
  append_sink& operator=(const append_sink&) = delete;

  void deliver(std::span<const nudge::due_action> actions) override {
    fmt::memory_buffer buf;
    for (const auto& a : actions) {
      append_action_line(buf, a);
    }
    std::size_t done = 0;
    while (done < buf.size()) {
      const auto n = ::write(fd_, buf.data() + done, buf.size() - done);
      if (n < 0) {
        if (errno == EINTR) {
          continue;
        }
        throw std::runtime_error(fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
      }
      done += static_cast<std::size_t>(n);
    }
    delivered += actions.size();
  }
  std::size_t delivered = 0;

 private:
  std::string path_;
  int fd_ = -1;
  bool owned_ = false;
};

std::shared_ptr<const nudge::program> load_rules_text(const std::string& text,
                                                      const std::string& name) {
  try {
    return nudge::load_rules(text, {.file_name = name});
  } catch (const nudge::rule_error& e) {
    for (const auto& d : e.diagnostics()) {
      fmt::print(stderr, "{}\n", d.to_string());
    }
    return nullptr;
  }
}

}  // namespace

bool parse_until(const std::string& text, std::optional<nudge::time_point>& until) {
  if (text.empty()) {
    return true;
  }
  nudge::time_error why = nudge::time_error::none;
  auto t = nudge::parse_time(text, &why);
  if (!t) {
    if (why == nudge::time_error::out_of_range) {
      fmt::print(stderr, "--until: \"{}\" is outside the supported range ({})\n", text,
                 nudge::input_range_text);
    } else {
      fmt::print(stderr, "--until: \"{}\" is not an ISO-8601 time with offset or epoch seconds\n",
                 text);
    }
    return false;
  }
  until = *t;
  return true;
}

int run_live(const run_args& args) {
  std::optional<nudge::time_point> until;
  if (!parse_until(args.until, until)) {
    return exit_usage;
  }
  if (args.batch == 0) {
    fmt::print(stderr, "--batch must be at least 1\n");
    return exit_usage;
  }
  const auto rules_text = slurp(args.rules);
  if (!rules_text) {
    fmt::print(stderr, "{}: cannot read the rule file\n", args.rules);
    return exit_input;
  }
  auto program = load_rules_text(*rules_text, args.rules);
  if (!program) {
    return exit_input;
  }
  // The run resumes at a byte offset of the file: standard input cannot be read again, and a
  // compressed file's offsets are not its text's.
  if (args.events == "-" || args.events.ends_with(".gz") || args.events.ends_with(".GZ")) {
    fmt::print(stderr,
               "--events {}: nudge run resumes the events file at a byte offset, so it reads a "
               "plain .csv or .jsonl file, not standard input or a .gz file (nudge replay reads "
               "both)\n",
               args.events);
    return exit_usage;
  }
  const auto format = nudge::format_of(args.events);
  const auto events_text = slurp(args.events);
  if (!events_text) {
    fmt::print(stderr, "{}: cannot read the events file\n", args.events);
    return exit_input;
  }
  const std::string_view text = *events_text;

  nudge::sqlite_options options;
  options.synchronous = args.sync == "full"  ? nudge::sqlite_sync::full
                        : args.sync == "off" ? nudge::sqlite_sync::off
                                             : nudge::sqlite_sync::normal;
  options.max_pages = args.max_pages;
  // A database written with other rules opens with the rules it stored; the engine then takes
  // the changed rule file (workflow lifecycle and versions, docs/rules.md) before any event.
  std::shared_ptr<const nudge::program> running = program;
  std::optional<std::string> stored_rules;
  if (std::filesystem::exists(args.db)) {
    // A killed run may have left a hot journal (`recover` lets SQLite roll it back) or a file
    // without tables yet: whatever cannot be read here, the store's own open handles or reports.
    try {
      stored_rules = nudge::sqlite_store::read_meta(args.db, meta_rules, /*recover=*/true);
    } catch (const nudge::sqlite_error&) {
      stored_rules.reset();
    }
    if (stored_rules && *stored_rules != *rules_text) {
      running = load_rules_text(*stored_rules, args.db + " (stored rules)");
      if (!running) {
        return exit_input;
      }
      if (nudge::program_fingerprint(*running) == nudge::program_fingerprint(*program)) {
        running = program;  // the same rules, written differently
      }
    }
  }
  nudge::sqlite_store db{args.db, *running, options};
  append_sink sink{args.out};
  nudge::durable_engine engine{running, db, &sink};
  if (running != program) {
    engine.deliver_pending();  // outbox entries name workflow steps of the stored rules
    nudge::time_point at = nudge::min_time;
    if (auto saved = db.get_meta(meta_now)) {
      at = nudge::from_epoch(std::stoll(*saved));
    } else {
      for (const auto& id : db.contacts()) {
        at = std::max(at, db.load(id)->clock);
      }
    }
    try {
      engine.change_program(program, at, {{{std::string{meta_rules}, *rules_text}}});
    } catch (const nudge::rule_error& e) {
      fmt::print(stderr, "{}: the database {} runs other rules; they can only change this way:\n",
                 args.rules, args.db);
      for (auto d : e.diagnostics()) {
        d.file = args.rules;
        fmt::print(stderr, "{}\n", d.to_string());
      }
      return exit_input;
    }
    fmt::print(stderr, "{}: rules changed; workflows moved to them at {}\n", args.db,
               nudge::format_time(at));
  }

  // CSV: the header line is handed to the reader again with every chunk.
  std::string header;
  std::size_t start = 0;
  if (format == nudge::file_format::csv) {
    const auto nl = text.find('\n');
    start = nl == std::string_view::npos ? text.size() : nl + 1;
    header = std::string{text.substr(0, start)};
    if (!header.empty() && header.back() != '\n') {
      header += '\n';
    }
  }
  if (!db.get_meta(meta_rules)) {
    db.begin();
    db.put_meta(meta_rules, *rules_text);
    db.commit();
  }
  // The contacts file is upserted at the first event the run takes (the file's first, on the
  // first run), as nudge replay does, in one transaction with run.contacts: segments and yearly
  // dates (birthdays) are evaluated from there, also for contacts without events. A run that
  // takes no event leaves them for the next one.
  std::vector<nudge::contact> contacts;
  const bool load_contacts = !args.contacts.empty() && !db.get_meta(meta_contacts);
  if (load_contacts) {
    contacts = nudge::read_contacts(args.contacts);
  }
  bool contacts_pending = load_contacts;
  std::size_t pos = start;
  std::size_t lines = 0;
  if (auto saved = db.get_meta(meta_offset)) {
    pos = std::stoull(*saved);
    lines = std::stoull(db.get_meta(meta_lines).value_or("0"));
    if (pos > text.size()) {
      fmt::print(stderr,
                 "{}: the file has {} bytes, fewer than the {} already processed (was it "
                 "replaced?)\n",
                 args.events, text.size(), pos);
      return exit_input;
    }
  }

  std::size_t processed = 0;
  std::optional<nudge::time_point> last_time;
  std::vector<std::size_t> line_end;  // end offset (after '\n') of each event line in the chunk
  std::vector<nudge::event> events;
  for (;;) {
    // The next chunk: up to `batch` non-empty complete lines (a partial last line waits).
    line_end.clear();
    std::string chunk = header;
    std::size_t p = pos;
    while (line_end.size() < args.batch && p < text.size()) {
      const auto nl = text.find('\n', p);
      if (nl == std::string_view::npos) {
        break;  // an incomplete line: a writer may still be appending it
      }
      const auto line = text.substr(p, nl - p);
      if (line.size() > nudge::input_limits{}.max_line_bytes) {
        // Refused before it is copied into the chunk (the reader would refuse it too).
        const auto number =
            1 + static_cast<std::size_t>(
                    std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(p), '\n'));
        throw nudge::read_error(
            {args.events, number,
             fmt::format("line is {} bytes long; at most {} are allowed (max_line_bytes)",
                         line.size(), nudge::input_limits{}.max_line_bytes),
             std::string{line.substr(0, 256)} + "..."});
      }
      if (!line.empty() && line != "\r") {
        chunk.append(line);
        chunk += '\n';
        line_end.push_back(nl + 1);
      } else if (line_end.empty()) {
        pos = nl + 1;  // skip blank lines before the chunk
      }
      p = nl + 1;
    }
    const bool at_end = line_end.size() < args.batch;
    events.clear();
    if (!line_end.empty()) {
      // One record per line: the position kept in the database counts lines.
      nudge::event_reader reader{std::move(chunk),
                                 format,
                                 args.events,
                                 {.program = program.get(), .one_line_records = true}};
      try {
        reader.read(events, line_end.size());
      } catch (const nudge::read_error& e) {
        // The reader numbers the chunk's lines (after the header, for CSV): name the file's.
        nudge::input_problem problem = e.problem();
        const std::size_t first = format == nudge::file_format::csv ? 2 : 1;
        if (problem.line >= first && problem.line - first < line_end.size()) {
          const std::size_t end = line_end[problem.line - first] - 1;  // at its '\n'
          problem.line =
              1 + static_cast<std::size_t>(std::count(
                      text.begin(), text.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
        }
        throw nudge::read_error(std::move(problem));
      }
    }
    // Events after --until wait for a later run.
    std::size_t take = events.size();
    bool stop = at_end;
    if (until) {
      while (take > 0 && events[take - 1].at > *until) {
        --take;
        stop = true;
      }
    }
    if (take > 0) {
      last_time = events[take - 1].at;
    }
    // Cut before the last timestamp unless this is the end: its timers must wait for the next
    // chunk's events at the same instant.
    std::size_t cut = take;
    nudge::time_point now;
    if (stop) {
      now = until ? *until : (last_time ? *last_time : nudge::min_time);
    } else {
      const auto latest = events[take - 1].at;
      while (cut > 0 && events[cut - 1].at == latest) {
        --cut;
      }
      if (cut == 0) {
        cut = take;  // a whole chunk at one instant
        now = latest;
      } else {
        now = latest - nudge::seconds(1);
      }
    }
    if (contacts_pending && take > 0) {
      engine.upsert_contacts(contacts, events.front().at,
                             {{{std::string{meta_contacts}, args.contacts}}});
      contacts_pending = false;
      std::vector<nudge::contact>{}.swap(contacts);  // the database has them now
    }
    if (!stop || take > 0 || until) {
      const std::size_t new_pos = cut > 0 ? line_end[cut - 1] : pos;
      const std::vector<std::pair<std::string, std::string>> meta{
          {std::string{meta_offset}, std::to_string(new_pos)},
          {std::string{meta_lines}, std::to_string(lines + cut)},
          {std::string{meta_now}, std::to_string(nudge::to_epoch(now))}};
      engine.process(std::span<const nudge::event>{events.data(), cut}, now, meta);
      pos = new_pos;
      lines += cut;
      processed += cut;
    }
    if (stop) {
      break;
    }
  }
  engine.deliver_pending();
  fmt::print(
      stderr,
      "{} events processed ({} lines of {} so far), {} actions delivered, {} in the outbox\n",
      processed, lines, args.events, sink.delivered, db.outbox_size());
  return exit_ok;
}

int run_outbox(const std::string& path) {
  const auto rules_text = nudge::sqlite_store::read_meta(path, meta_rules);
  if (!rules_text) {
    fmt::print(stderr, "{}: no rules stored (not written by nudge run)\n", path);
    return exit_input;
  }
  auto program = load_rules_text(*rules_text, path + " (stored rules)");
  if (!program) {
    return exit_input;
  }
  nudge::sqlite_store db{path, *program, {.read_only = true}};
  std::string out = "ts,contact,rule,action,arg,idempotency_key\n";
  for (const auto& e : db.outbox()) {
    auto it = std::back_inserter(out);
    it = fmt::format_to(it, "{},", nudge::to_epoch(e.due_at));
    it = nudge::write_csv_field(it, e.contact);
    *it++ = ',';
    it = nudge::write_csv_field(it, program->rules().rules[e.rule_index].id);
    *it++ = ',';
    it = nudge::write_csv_field(it, nudge::action_name(e.kind));
    *it++ = ',';
    it = nudge::write_csv_field(it, e.arg);
    fmt::format_to(it, ",{}\n", e.idempotency_key);
  }
  fmt::print("{}", out);
  return exit_ok;
}

}  // namespace nudge_cli
