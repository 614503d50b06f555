// nudge run: live mode on the SQLite store (outbox.cpp lists what it left undelivered).
// undelivered).
//
// `nudge run` keeps in the database's meta table how far the events file was consumed (byte
// offset and line count, the file's identity), committed in the same transaction as each batch's
// states and outbox; run again after appending to the file, or after a crash, and it continues
// from there. Delivered actions are appended to --out as
// `ts,contact,rule,action,arg,idempotency_key` lines, each batch in one append; the outbox is
// trimmed in groups of batches, each after one fsync of --out (flush_out); a crash between an
// append and the trim delivers those actions again with the same keys. Events follow nudge replay's
// rules (--on-error, --rejects), and an event before the time the database reached is refused as
// late.
#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/error.hpp>
#include <nudge/io/csv.hpp>
#include <nudge/io/load_rules.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/io/snapshot.hpp>
#include <nudge/io/sqlite_store.hpp>
#include <nudge/lifecycle.hpp>
#include <nudge/memory_store.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "file_identity.hpp"
#include "follow.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "observe.hpp"
#include "out_file.hpp"
#include "stdin_spool.hpp"

namespace nudge_cli {
namespace {

constexpr std::string_view meta_contacts = "run.contacts";
constexpr std::string_view meta_offset = "run.events_offset";
constexpr std::string_view meta_lines = "run.events_lines";
// The consumed file's identity (file_identity.hpp): "device:inode" and a hash of the prefix.
constexpr std::string_view meta_file = "run.events_file";
constexpr std::string_view meta_hash = "run.events_hash";
// The latest `now` a run advanced the database to: a changed rule file takes effect there.
constexpr std::string_view meta_now = "run.now";

// One CSV line; fields quoted as RFC 4180 says where needed (nudge/io/csv.hpp).
void append_action_line(fmt::memory_buffer& out, const nudge::due_action& a, bool iso) {
  auto it = fmt::format_to(fmt::appender(out), "{},",
                           iso ? nudge::format_time(a.ts) : std::to_string(nudge::to_epoch(a.ts)));
  it = nudge::write_csv_field(it, a.contact);
  *it++ = ',';
  it = nudge::write_csv_field(
      it, a.from_workflow() ? fmt::format("{}/{}", a.rule, a.step) : std::string{a.rule});
  *it++ = ',';
  it = nudge::write_csv_field(it, a.action());
  *it++ = ',';
  it = nudge::write_csv_field(it, a.arg);
  fmt::format_to(it, ",{}\n", a.idempotency_key);
}

// The events of one chunk and the lines they came from.
struct chunk_lines {
  std::vector<std::size_t> begin;  ///< offset of each non-blank line of the chunk
  std::vector<std::size_t> end;    ///< its end offset (after the '\n')
  std::vector<std::size_t> line;   ///< its 1-based line number in the file
};

// A refused line waiting for the commit that consumes it (lines after the commit's position are
// read, and refused, again by the next chunk).
struct pending_reject {
  std::size_t index;  ///< into chunk_lines
  nudge::input_problem problem;
};

// The first event of `contact` in `batch` that makes the rules loop, tried on a scratch copy of
// the contact's state: nullopt when none does (the loop is in timers already pending, or needs
// other contacts).
std::optional<std::size_t> find_looping_event(std::shared_ptr<const nudge::program> program,
                                              nudge::store& db, std::span<const nudge::event> batch,
                                              nudge::time_point now, const std::string& contact) {
  const auto saved = db.load(contact);
  auto loops = [&](std::span<const nudge::event> events) {
    nudge::memory_store scratch;
    if (saved) {
      std::vector<nudge::contact_state> states{*saved};
      scratch.save(states);
    }
    nudge::engine engine{program, &scratch};
    try {
      engine.process(events, now);
    } catch (const nudge::rule_cycle_error&) {
      return true;
    } catch (const std::exception&) {
      return false;
    }
    return false;
  };
  if (loops({})) {
    return std::nullopt;
  }
  std::vector<nudge::event> mine;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (batch[i].contact == contact) {
      mine.push_back(batch[i]);
      if (loops(mine)) {
        return i;
      }
    }
  }
  return std::nullopt;
}

// Delivered actions as `ts,contact,rule,action,arg,idempotency_key` lines: one append per batch.
// The engine defers trimming (durable_engine::defer_trim): flush_out fsyncs the file (with
// --sync normal or full) and then trims, so a trimmed action is always in the file.
class append_sink final : public nudge::sink {
 public:
  append_sink(const std::string& path, bool sync, bool iso) : file_(path, sync), iso_(iso) {}

  void deliver(std::span<const nudge::due_action> actions) override {
    fmt::memory_buffer buf;
    for (const auto& a : actions) {
      append_action_line(buf, a, iso_);
    }
    last_batch = actions.size();
    failed = true;
    file_.append({buf.data(), buf.size()});
    failed = false;
    delivered += actions.size();
    if (observer != nullptr) {
      observer->on_actions(actions);
    }
  }
  // fsyncs what was appended; `count` actions wait for it (for the error message). On failure
  // throws delivery_error (its cause nested), as a failed deliver does.
  void sync(std::size_t count) {
    last_batch = count;
    failed = true;
    try {
      file_.sync();
    } catch (...) {
      std::throw_with_nested(nudge::delivery_error(fmt::format("{}: fsync failed", path())));
    }
    failed = false;
  }
  const std::string& path() const noexcept { return file_.path(); }

  std::size_t delivered = 0;
  std::size_t last_batch = 0;  ///< actions in the last deliver, or waiting for the last sync
  bool failed = false;         ///< the last deliver or sync threw
  /// Told of every action taken and, by the run loops, of every batch (observe.hpp): the sink
  /// carries it because every loop has the sink at hand.
  run_observer* observer = nullptr;

 private:
  line_file file_;
  bool iso_ = false;  // --time-format iso
};

// Batches whose actions may wait in the outbox, already appended to --out, before one fsync of
// --out and one trim: a power loss redelivers at most this many batches' actions (same keys).
constexpr std::size_t trim_every_batches = 100;
// Nor more actions than this (bounds the duplicates a crash can leave in --out).
constexpr std::size_t trim_every_actions = 10'000;

// Makes --out durable, then trims from the outbox what it holds: in that order, so a trimmed
// action is in --out also after a power loss.
void flush_out(nudge::durable_engine& engine, append_sink& sink) {
  const std::size_t n = engine.untrimmed();
  if (n == 0) {
    return;
  }
  sink.sync(n);
  engine.trim();
}

// On an error path: whatever --out already holds leaves the outbox if it can (fewer duplicates
// on the next run); if not, it stays there and is delivered again with the same keys.
void flush_out_quietly(nudge::durable_engine& engine, append_sink& sink) noexcept {
  const std::size_t last_batch = sink.last_batch;
  const bool failed = sink.failed;
  try {
    flush_out(engine, sink);
  } catch (const std::exception&) {
    // The original error is reported; these actions are redelivered under the same keys.
  }
  sink.last_batch = last_batch;  // the original error's message counts the original batch
  sink.failed = failed;
}

// The library's delivery_error advises its API (deliver_pending); a CLI user runs nudge run
// again. Rethrows `e` with that advice, its cause nested.
[[noreturn]] void rethrow_for_cli(const nudge::delivery_error& e, const run_args& args,
                                  const append_sink& sink, nudge::sqlite_store& db) {
  std::size_t waiting = sink.last_batch;
  try {
    waiting = std::max(waiting, db.outbox_size());
  } catch (const std::exception&) {
    // The database may be what failed: the batch's count is still right.
  }
  const std::string message =
      sink.failed
          ? fmt::format(
                "{}: {} actions are committed but could not be written to {}; they stay in the "
                "outbox, and the next nudge run writes them (with the same idempotency keys) "
                "once {} can be written",
                args.db, waiting, sink.path(), sink.path())
          : fmt::format(
                "{}: {} actions were written to {} but could not be marked delivered; the next "
                "nudge run writes them again, with the same idempotency keys",
                args.db, sink.last_batch, sink.path());
  if (e.nested_ptr()) {
    try {
      e.rethrow_nested();
    } catch (...) {
      std::throw_with_nested(std::runtime_error(message));
    }
  }
  throw std::runtime_error(message);
}

// The events loop of `nudge run`: chunks of --batch lines from the consumed position, each one
// durable transaction with the new position.
int run_events(const run_args& args, const std::shared_ptr<const nudge::program>& program,
               const std::string& rules_text, std::string_view text, nudge::file_format format,
               const file_text& events_file, nudge::sqlite_store& db, nudge::durable_engine& engine,
               append_sink& sink, line_file* rejects_file, std::optional<nudge::time_point> until,
               bool skip, run_totals* totals = nullptr) {
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
  const std::size_t first_line = format == nudge::file_format::csv ? 2 : 1;
  if (!db.get_meta(meta_rules)) {
    db.begin();
    db.put_meta(meta_rules, rules_text);
    db.commit();
  }
  // The contacts file is upserted at the first event the run takes (the file's first, on the
  // first run), as nudge replay does, in one transaction with run.contacts: segments and yearly
  // dates (birthdays) are evaluated from there, also for contacts without events. A run that
  // takes no event leaves them for the next one.
  std::vector<nudge::contact> contacts;
  const bool load_contacts = !args.contacts.empty() && !db.get_meta(meta_contacts);
  if (load_contacts) {
    contacts = nudge::read_contacts(args.contacts, {.program = program.get()});
  }
  bool contacts_pending = load_contacts;
  std::size_t pos = start;
  std::size_t lines = 0;
  if (auto saved = db.get_meta(meta_offset)) {
    const std::size_t offset = std::stoull(*saved);
    std::optional<consumed_identity> stored;
    auto file = db.get_meta(meta_file);
    auto hash = db.get_meta(meta_hash);
    if (file && hash) {
      stored = consumed_identity{*file, *hash};
    }
    std::string note;
    if (auto why = refuse_continuing(args.events, events_file, offset, stored, note)) {
      if (!args.from_start) {
        fmt::print(stderr, "{}\n", *why);
        return exit_input;
      }
      log().warn(fmt::format("{}: not the file consumed so far: reading it from its first line",
                             args.events));
    } else {
      if (!note.empty()) {
        log().info(note);
      }
      pos = offset;
      lines = std::stoull(db.get_meta(meta_lines).value_or("0"));
    }
  }
  std::size_t pos_line =
      1 + static_cast<std::size_t>(
              std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n'));
  // The time the database reached: an event before it is late, refused as replay refuses an event
  // before the previous one.
  std::optional<nudge::time_point> floor;
  if (auto saved = db.get_meta(meta_now)) {
    floor = nudge::from_epoch(std::stoll(*saved));
  }

  std::size_t processed = 0;
  std::size_t rejected = 0;
  std::optional<nudge::time_point> last_time;
  chunk_lines cl;
  std::vector<nudge::event> events;
  std::vector<std::size_t> event_line;  // index into `cl` of each event
  std::vector<pending_reject> refused;
  std::vector<bool> refused_written;
  std::size_t batches_untrimmed = 0;
  // Tells the observer about a committed batch (observe.hpp).
  auto report_batch = [&](std::chrono::steady_clock::time_point began, std::size_t events_applied,
                          std::size_t actions, std::size_t rejected_before, nudge::time_point at) {
    if (sink.observer == nullptr) {
      return;
    }
    if (args.outbox_only && actions > 0) {
      observe_outbox_tail(*sink.observer, db, *program, actions);
    }
    batch_report r;
    r.events = events_applied;
    r.actions = actions;
    r.rejected = rejected - rejected_before;
    r.duration = std::chrono::steady_clock::now() - began;
    r.engine_now = at;
    sink.observer->on_batch(r, sink.observer->wants_outbox()
                                   ? std::optional{read_outbox(db, engine.untrimmed())}
                                   : std::nullopt);
  };
  for (;;) {
    const auto began = std::chrono::steady_clock::now();
    const std::size_t rejected_before = rejected;
    // The next chunk: up to `batch` non-empty complete lines (a partial last line waits).
    cl.begin.clear();
    cl.end.clear();
    cl.line.clear();
    refused.clear();
    refused_written.clear();
    std::string chunk = header;
    std::size_t p = pos;
    std::size_t p_line = pos_line;
    while (cl.begin.size() < args.batch && p < text.size()) {
      const auto nl = text.find('\n', p);
      if (nl == std::string_view::npos) {
        break;  // an incomplete line: a writer may still be appending it
      }
      const auto line = text.substr(p, nl - p);
      if (!line.empty() && line != "\r") {
        if (line.size() > nudge::input_limits{}.max_line_bytes) {
          // Refused before it is copied into the chunk (the reader would refuse it too); an
          // empty line keeps the reader's line numbers.
          refused.push_back(
              {cl.begin.size(),
               {args.events, p_line,
                fmt::format("line is {} bytes long; at most {} are allowed (max_line_bytes)",
                            line.size(), nudge::input_limits{}.max_line_bytes),
                std::string{line.substr(0, 256)} + "..."}});
        } else {
          chunk.append(line);
        }
        chunk += '\n';
        cl.begin.push_back(p);
        cl.end.push_back(nl + 1);
        cl.line.push_back(p_line);
      } else if (cl.begin.empty()) {
        pos = nl + 1;  // skip blank lines before the chunk
        pos_line = p_line + 1;
      }
      p = nl + 1;
      ++p_line;
    }
    const bool at_end = cl.begin.size() < args.batch;
    events.clear();
    event_line.clear();
    if (!cl.begin.empty()) {
      nudge::event_read_options read_options;
      read_options.program = program.get();
      read_options.not_before = floor;
      // One record per line: the position kept in the database counts lines.
      read_options.one_line_records = true;
      if (skip) {
        read_options.on_reject = [&](const nudge::input_problem& problem) {
          const std::size_t k = problem.line - first_line;
          nudge::input_problem located = problem;
          located.line = cl.line[k];
          refused.push_back({k, std::move(located)});
        };
      }
      nudge::event_reader reader{std::move(chunk), format, args.events, std::move(read_options)};
      try {
        reader.read(events, cl.begin.size());
      } catch (const nudge::read_error& e) {
        // The reader numbers the chunk's lines (after the header, for CSV): name the file's.
        nudge::input_problem problem = e.problem();
        if (problem.line >= first_line && problem.line - first_line < cl.begin.size()) {
          const std::size_t k = problem.line - first_line;
          if (!refused.empty() && refused.front().index < k) {
            throw nudge::read_error(refused.front().problem);  // a long line came first
          }
          problem.line = cl.line[k];
        }
        throw nudge::read_error(std::move(problem));
      }
      std::sort(refused.begin(), refused.end(),
                [](const pending_reject& x, const pending_reject& y) { return x.index < y.index; });
      if (!skip && !refused.empty()) {
        throw nudge::read_error(refused.front().problem);
      }
      for (std::size_t k = 0, r = 0; k < cl.begin.size(); ++k) {
        if (r < refused.size() && refused[r].index == k) {
          ++r;
        } else {
          event_line.push_back(k);
        }
      }
      if (event_line.size() != events.size()) {
        throw std::logic_error(fmt::format("{}: {} events read from {} lines ({} refused)",
                                           args.events, events.size(), event_line.size(),
                                           refused.size()));
      }
    }
    refused_written.assign(refused.size(), false);
    // Events after --until wait for a later run.
    std::size_t take = events.size();
    bool stop = at_end;
    if (until) {
      while (take > 0 && events[take - 1].ts > *until) {
        --take;
        stop = true;
      }
    }
    if (take > 0) {
      last_time = events[take - 1].ts;
    }
    // Cut before the last timestamp unless this is the end: its timers must wait for the next
    // chunk's events at the same instant. The cut is nudge::replay's (events_before_last_instant);
    // what differs is that a chunk is committed whole with the file position it reached, so a
    // chunk all at one instant is processed at that instant rather than carried over to the next
    // read as replay does (carried over, it would make no progress: the next chunk starts there).
    std::size_t cut = take;
    nudge::time_point now = nudge::min_time;
    if (stop) {
      now = until ? *until : (last_time ? *last_time : nudge::min_time);
    } else if (take > 0) {
      const auto latest = events[take - 1].ts;
      cut = nudge::events_before_last_instant({events.data(), take});
      if (cut == 0) {
        cut = take;  // a whole chunk at one instant
        now = latest;
      } else {
        now = latest - nudge::seconds(1);
      }
    }
    if (floor && now < *floor) {
      now = *floor;  // an earlier --until: the database stays where it is
    }
    if (contacts_pending && take > 0) {
      engine.upsert_contacts(contacts, events.front().ts,
                             {{{std::string{meta_contacts}, args.contacts}}});
      contacts_pending = false;
      std::vector<nudge::contact>{}.swap(contacts);  // the database has them now
    }
    // Where the commit leaves the file: before the first event not taken, else after the chunk
    // (refused lines included).
    auto new_position = [&] {
      if (cl.begin.empty()) {
        return pos;
      }
      return cut < events.size() ? cl.begin[event_line[cut]] : cl.end.back();
    };
    // Refused lines before `to` go to the rejects file (fsynced) or stderr, before the commit
    // that moves past them.
    auto record_rejects = [&](std::size_t to) {
      std::string out;
      for (std::size_t r = 0; r < refused.size(); ++r) {
        if (refused_written[r] || cl.end[refused[r].index] > to) {
          continue;
        }
        refused_written[r] = true;
        ++rejected;
        if (rejects_file != nullptr) {
          out += refused[r].problem.to_string();
          out += '\t';
          out += refused[r].problem.text;
          out += '\n';
        } else {
          log().warn(fmt::format("rejected: {}", refused[r].problem.to_string()),
                     {{"file", refused[r].problem.file, false},
                      {"line", std::to_string(refused[r].problem.line), true}});
        }
      }
      if (rejects_file != nullptr && !out.empty()) {
        rejects_file->append(out);
        rejects_file->sync();
      }
    };
    auto position_meta = [&](std::size_t to) {
      std::size_t consumed = 0;
      while (consumed < cl.end.size() && cl.end[consumed] <= to) {
        ++consumed;
      }
      const auto id = consumed_identity::of(events_file, to);
      return std::vector<std::pair<std::string, std::string>>{
          {std::string{meta_offset}, std::to_string(to)},
          {std::string{meta_lines}, std::to_string(lines + consumed)},
          {std::string{meta_file}, id.file},
          {std::string{meta_hash}, id.hash}};
    };
    // An event the engine refuses (a rule cycle, an identity conflict): stop, or set it aside
    // and process the batch again without it.
    auto refuse_event = [&](std::size_t i, const std::string& reason) {
      const std::size_t k = event_line[i];
      nudge::input_problem problem{
          args.events, cl.line[k], reason,
          std::string{text.substr(cl.begin[k], cl.end[k] - 1 - cl.begin[k])}};
      if (!skip) {
        throw nudge::read_error(std::move(problem));
      }
      refused.push_back({k, std::move(problem)});
      refused_written.push_back(false);
      events.erase(events.begin() + static_cast<std::ptrdiff_t>(i));
      event_line.erase(event_line.begin() + static_cast<std::ptrdiff_t>(i));
      --cut;
      --take;
    };
    std::size_t new_pos = new_position();
    if (take > 0 || (stop && until)) {
      std::size_t actions = 0;
      for (;;) {
        new_pos = new_position();
        auto meta = position_meta(new_pos);
        meta.emplace_back(std::string{meta_now}, std::to_string(nudge::to_epoch(now)));
        record_rejects(new_pos);
        try {
          actions = engine.process(std::span<const nudge::event>{events.data(), cut}, now, meta);
          break;
        } catch (const nudge::input_error& e) {
          if (e.event_index() >= cut) {
            throw;
          }
          refuse_event(e.event_index(), fmt::format("contact \"{}\": {}", e.contact(), e.reason()));
        } catch (const nudge::rule_cycle_error& e) {
          const auto i = find_looping_event(program, db, {events.data(), cut}, now, e.contact());
          if (!i) {
            throw;
          }
          refuse_event(*i, e.what());
        }
      }
      processed += cut;
      floor = now;
      if (engine.untrimmed() > 0 &&
          (++batches_untrimmed >= trim_every_batches || engine.untrimmed() >= trim_every_actions)) {
        flush_out(engine, sink);
        batches_untrimmed = 0;
      }
      report_batch(began, cut, actions, rejected_before, now);
    } else if (new_pos != pos) {
      // Every line of the chunk refused: commit the position past them.
      record_rejects(new_pos);
      db.begin();
      try {
        for (const auto& [key, value] : position_meta(new_pos)) {
          db.put_meta(key, value);
        }
        db.commit();
      } catch (...) {
        db.rollback();
        throw;
      }
      report_batch(began, 0, 0, rejected_before, floor.value_or(nudge::min_time));
    }
    if (new_pos != pos) {
      std::size_t consumed = 0;
      while (consumed < cl.end.size() && cl.end[consumed] <= new_pos) {
        ++consumed;
      }
      lines += consumed;
      pos_line = consumed == 0                     ? pos_line
                 : new_pos == cl.end[consumed - 1] ? cl.line[consumed - 1] + 1
                                                   : cl.line[consumed];
      pos = new_pos;
    }
    // --follow: SIGTERM or SIGINT ends the run here, between committed batches.
    if (stop || (totals != nullptr && stop_requested())) {
      break;
    }
  }
  engine.deliver_pending();
  flush_out(engine, sink);
  if (totals != nullptr) {  // --follow sums the steps up and prints that once
    totals->processed += processed;
    totals->rejected += rejected;
    totals->lines = lines;
    return exit_ok;
  }
  const std::size_t in_outbox = db.outbox_size();
  if (sink.observer != nullptr) {
    sink.observer->on_end(sink.observer->wants_outbox()
                              ? std::optional{read_outbox(db, engine.untrimmed())}
                              : std::nullopt);
  }
  log().info(fmt::format("{} events processed, {} rejected ({} lines of {} so far), {} actions "
                         "delivered, {} in the outbox",
                         processed, rejected, lines, args.events, sink.delivered, in_outbox),
             {{"events", std::to_string(processed), true},
              {"rejected", std::to_string(rejected), true},
              {"actions", std::to_string(sink.delivered), true},
              {"outbox", std::to_string(in_outbox), true}});
  return exit_ok;
}

}  // namespace

int run_live(const run_args& args) {
  log().configure(parse_log_format(args.log_format), parse_log_level(args.log_level));
  std::optional<nudge::time_point> until;
  if (!parse_until(args.until, until)) {
    return exit_usage;
  }
  if (args.batch == 0) {
    fmt::print(stderr, "--batch must be at least 1\n");
    return exit_usage;
  }
  if (!check_error_options(args.on_error, args.rejects)) {
    return exit_usage;
  }
  if (std::string host, port;
      !args.metrics.empty() && !split_metrics_address(args.metrics, host, port)) {
    log().error(fmt::format("--metrics {}: not an address: expected HOST:PORT, :PORT or PORT",
                            args.metrics));
    return exit_usage;
  }
  if (!check_follow_options(args)) {
    return exit_usage;
  }
  if (args.outbox_only && !args.out.empty()) {
    fmt::print(stderr, "--out cannot be combined with --outbox-only (nudge deliver delivers)\n");
    return exit_usage;
  }
  const bool skip = args.on_error == "skip";
  const auto rules_text = read_file_text(args.rules).text;
  auto program = load_rules_text(rules_text, args.rules);
  if (!program) {
    return exit_input;
  }
  if (args.follow && args.events == "-") {
    return run_live_from_stdin(args);  // spooled to a file beside the database (stdin_spool.hpp)
  }
  // The run resumes at a byte offset of the file: standard input cannot be read again, and a
  // compressed file's offsets are not its text's.
  if (args.events == "-" || args.events.ends_with(".gz") || args.events.ends_with(".GZ")) {
    fmt::print(stderr,
               "--events {}: nudge run resumes the events file at a byte offset, so it reads a "
               "plain .csv or .jsonl file, not standard input or a .gz file (nudge replay reads "
               "both; nudge run --follow spools standard input to a file)\n",
               args.events);
    return exit_usage;
  }
  const auto format = nudge::format_of(args.events);
  const file_text events_file = read_file_text(args.events);
  const std::string_view text = events_file.text;

  nudge::sqlite_options options;
  options.synchronous = args.sync == "full"  ? nudge::sqlite_sync::full
                        : args.sync == "off" ? nudge::sqlite_sync::off
                                             : nudge::sqlite_sync::normal;
  options.max_pages = args.max_pages;
  // --out and --rejects are fsynced before the database records them done, unless --sync off.
  const bool sync_files = args.sync != "off";
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
    if (stored_rules && *stored_rules != rules_text) {
      running = load_rules_text(*stored_rules, args.db + " (stored rules)");
      if (!running) {
        return exit_input;
      }
      if (nudge::program_fingerprint(*running) == nudge::program_fingerprint(*program)) {
        running = program;  // the same rules, written differently
      }
    }
  }
  // Metrics and per-batch log lines (observe.hpp). The server binds before the database opens,
  // so that a taken port fails the run before it does anything.
  observers watching;
  std::optional<metrics_observer> metrics;
  if (!args.metrics.empty() || !args.metrics_file.empty()) {
    std::unique_ptr<metrics_server> server;
    std::string bound;
    if (!args.metrics.empty()) {
      server = std::make_unique<metrics_server>(args.metrics);
      bound = server->bound();
    }
    metrics.emplace(args.metrics_file, std::move(server));  // publishes the zeros at once
    watching.add(&*metrics);
    if (!bound.empty()) {
      // Port 0 picks a free port: this line names it (tests read it, then scrape at once).
      log().info(fmt::format("metrics: serving http://{}/metrics", bound),
                 {{"address", bound, false}});
    }
  }
  batch_log batch_lines;
  if (log().format() != log_format::plain) {
    watching.add(&batch_lines);
  }
  nudge::sqlite_store db{args.db, *running, options};
  append_sink sink{args.out, sync_files, args.time_format == "iso"};
  sink.observer = &watching;
  std::optional<line_file> rejects_file;
  if (!args.rejects.empty()) {
    rejects_file.emplace(args.rejects, sync_files);
  }
  // --outbox-only: no sink; the actions wait in the outbox for nudge deliver.
  nudge::durable_engine engine{running, db, args.outbox_only ? nullptr : &sink};
  engine.defer_trim(true);  // flush_out fsyncs --out once per group of batches, then trims
  try {
    // What a killed run left in the outbox, at once and trimmed, before any event: every
    // restart then writes at most one group again, however often runs are killed. (Also, outbox
    // entries name workflow steps of the stored rules, which change_program replaces.)
    db.trim_delivered();  // what nudge deliver marked leaves the outbox first
    engine.deliver_pending();
    flush_out(engine, sink);
    if (running != program && !outbox_empty_for_rule_change(args, db)) {
      return exit_input;
    }
    if (running != program) {
      nudge::time_point at = nudge::min_time;
      if (auto saved = db.get_meta(meta_now)) {
        at = nudge::from_epoch(std::stoll(*saved));
      } else {
        for (const auto& id : db.contacts()) {
          at = std::max(at, db.load(id)->clock);
        }
      }
      try {
        engine.change_program(program, at, {{{std::string{meta_rules}, rules_text}}});
      } catch (const nudge::rule_error& e) {
        fmt::print(stderr, "{}: the database {} runs other rules; they can only change this way:\n",
                   args.rules, args.db);
        for (auto d : e.diagnostics()) {
          d.file = args.rules;
          fmt::print(stderr, "{}\n", d.to_string());
        }
        return exit_input;
      }
      // Rules whose delay, condition or actions changed, with what happened to their timers.
      std::string rules_note;
      const auto& before = running->rules().rules;
      for (std::size_t i = 0; i < before.size() && i < program->rules().rules.size(); ++i) {
        const auto& r = program->rules().rules[i];
        if (nudge::rule_changed(before[i], r)) {
          rules_note +=
              fmt::format("{}{} ({})", rules_note.empty() ? "; changed rules: " : ", ", r.id,
                          r.on_change == nudge::rule_change::drop ? "drop" : "reevaluate");
        }
      }
      log().info(fmt::format("{}: rules changed; workflows moved to them at {}{}", args.db,
                             nudge::format_time(at), rules_note));
    }
    if (args.follow) {
      return follow_run(args, db, sink.delivered, [&](nudge::time_point now, run_totals& totals) {
        const file_text f = read_file_text(args.events);
        return run_events(args, program, rules_text, f.text, format, f, db, engine, sink,
                          rejects_file ? &*rejects_file : nullptr, now, skip, &totals);
      });
    }
    const int rc = run_events(args, program, rules_text, text, format, events_file, db, engine,
                              sink, rejects_file ? &*rejects_file : nullptr, until, skip);
    if (args.outbox_only) {
      db.trim_delivered();  // what nudge deliver marked leaves the outbox
    }
    return rc;
  } catch (const nudge::delivery_error& e) {
    if (sink.failed) {
      flush_out_quietly(engine, sink);  // the batches before the one --out refused
    }
    rethrow_for_cli(e, args, sink, db);
  } catch (...) {
    flush_out_quietly(engine, sink);
    throw;
  }
}

}  // namespace nudge_cli
