// nudge pg init, nudge run --pg and nudge outbox --pg: live mode on many processes sharing one
// PostgreSQL database (nudge/io/pg_store.hpp; docs/live.md, "Many processes: PostgreSQL").
//
// Each worker reads the whole events file and applies only the events of the partitions it holds
// by lease. A batch takes up to --batch events of the file from the lowest position among its
// partitions, cut between distinct timestamps as nudge run --db cuts them, and commits every held
// partition's share, position and statistics in one fenced transaction: a partition taken over
// by another worker continues exactly at the event its last batch ended before.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include <nudge/io/csv.hpp>
#include <nudge/io/pg_store.hpp>
#include <nudge/io/read_events.hpp>
#include <nudge/io/replay.hpp>

#include "commands.hpp"
#include "common.hpp"
#include "follow.hpp"
#include "log.hpp"

namespace nudge_cli {
namespace {

// Round-robin owner counters run across contacts in the order one process meets them: the
// partitions cannot reproduce them (docs/scale.md). Each such rule and step, named.
std::vector<std::string> round_robin_actions(const nudge::program& program) {
  std::vector<std::string> found;
  const auto& rs = program.rules();
  for (const auto& r : rs.rules) {
    for (const auto& a : r.actions) {
      if (a.kind == nudge::action_kind::assign_owner && a.pick == nudge::owner_pick::round_robin) {
        found.push_back(fmt::format("rule \"{}\"", r.id));
        break;
      }
    }
  }
  for (const auto& w : rs.workflows) {
    for (const auto& st : w.steps) {
      if (st.act.kind == nudge::action_kind::assign_owner &&
          st.act.pick == nudge::owner_pick::round_robin) {
        found.push_back(fmt::format("workflow \"{}\" step \"{}\"", w.id, st.id));
      }
    }
  }
  return found;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    out += (out.empty() ? "" : ", ") + p;
  }
  return out;
}

}  // namespace

int run_pg_init(const std::string& url, std::uint32_t partitions) {
  fmt::print("{}\n", nudge::pg_init(url, partitions));
  return exit_ok;
}

int run_live_pg(const run_args& args) {
  log().configure(parse_log_format(args.log_format), parse_log_level(args.log_level));
  // What --pg does not do (yet): each refused by name rather than ignored.
  for (const auto& [given, option] :
       {std::pair{!args.db.empty(), "--db"},
        {args.follow, "--follow"},
        {!args.out.empty(), "--out"},
        {args.on_error != "stop", "--on-error skip"},
        {!args.metrics.empty() || !args.metrics_file.empty(), "--metrics"},
        {args.from_start, "--from-start"},
        {args.max_pages != 0, "--max-pages"},
        {args.outbox_only, "--outbox-only"}}) {
    if (given) {
      fmt::print(stderr,
                 "{} cannot be combined with --pg (the actions stay in the database's outbox: "
                 "nudge outbox --pg URL delivers them)\n",
                 option);
      return exit_usage;
    }
  }
  std::optional<nudge::time_point> until;
  if (!parse_until(args.until, until)) {
    return exit_usage;
  }
  if (args.batch == 0) {
    fmt::print(stderr, "--batch must be at least 1\n");
    return exit_usage;
  }
  std::chrono::milliseconds lease{10'000};
  if (!parse_duration("lease", args.lease, lease)) {
    return exit_usage;
  }
  if (lease < std::chrono::milliseconds{500}) {
    fmt::print(stderr, "--lease: at least 500ms\n");
    return exit_usage;
  }
  auto program = load_or_report(args.rules);
  if (!program) {
    return exit_input;
  }
  if (const auto rr = round_robin_actions(*program); !rr.empty()) {
    fmt::print(stderr,
               "{}: round-robin owner picks in {}: the counter runs across contacts in the order "
               "one process meets them, which partitions by contact cannot reproduce; run these "
               "rules in one process (nudge run --db)\n",
               args.rules, join(rr));
    return exit_input;
  }
  if (args.events_table == !args.events.empty()) {
    fmt::print(stderr, "nudge run --pg takes --events FILE or --events-table, one of them\n");
    return exit_usage;
  }
  if (args.events == "-" || args.events.ends_with(".gz") || args.events.ends_with(".GZ")) {
    fmt::print(stderr, "--events {}: nudge run --pg reads a plain .csv or .jsonl file\n",
               args.events);
    return exit_usage;
  }
  // All the events, checked as nudge replay checks them, before anything is written: the file,
  // or the rows of nudge_events in seq order (named "nudge_events" in messages).
  const std::string source = args.events_table ? "nudge_events" : args.events;
  const auto events =
      args.events_table
          ? nudge::pg_read_events(args.pg, source, {.program = program.get()})
          : nudge::read_events(args.events, {.program = program.get(), .one_line_records = true});
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (events[i].type == nudge::event_types::identify) {
      fmt::print(stderr,
                 "{}: event {} (contact \"{}\") is an identify event: identity merges join "
                 "contacts of different partitions, which nudge run --pg cannot split; run this "
                 "log in one process (nudge run --db)\n",
                 source, i + 1, events[i].contact);
      return exit_input;
    }
  }
  std::vector<nudge::contact> contacts;
  if (!args.contacts.empty()) {
    contacts = nudge::read_contacts(args.contacts, {.program = program.get()});
  }

  const nudge::pg_options options{.worker_id = args.worker_id, .lease = lease};
  auto db = std::make_unique<nudge::pg_store>(args.pg, program, options);
  const std::uint32_t parts = db->partitions();
  std::vector<std::uint32_t> part_of(events.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    part_of[i] = nudge::pg_partition_of(events[i].contact, parts);
  }
  std::map<std::uint32_t, std::vector<nudge::contact>> contacts_of;
  for (auto& c : contacts) {
    contacts_of[nudge::pg_partition_of(c.id, parts)].push_back(std::move(c));
  }
  // Events after --until wait for a later run; the end is --until, or the last event's time.
  const auto taken = static_cast<std::int64_t>(
      until
          ? std::upper_bound(events.begin(), events.end(), *until,
                             [](nudge::time_point t, const nudge::event& e) { return t < e.ts; }) -
                events.begin()
          : static_cast<std::ptrdiff_t>(events.size()));
  if (!until && events.empty()) {
    log().info(fmt::format("{}: no events and no --until: nothing to do", source));
    return exit_ok;
  }
  const nudge::time_point end = until ? *until : events.back().ts;

  std::size_t applied = 0, actions = 0, lost = 0;
  auto plan = [&](std::span<const nudge::pg_progress> progress) {
    std::vector<nudge::pg_partition_batch> work;
    std::int64_t lo = taken;
    for (const auto& p : progress) {
      lo = std::min(lo, p.next_event);
    }
    std::int64_t cut = taken;
    nudge::time_point now = end;
    if (lo < taken) {
      const std::int64_t hi =
          std::min<std::int64_t>(lo + static_cast<std::int64_t>(args.batch), taken);
      if (hi < taken) {
        // Cut before the chunk's last instant (the next batch may hold more of it), and process
        // up to just before it, as nudge run --db does: the actions equal a replay's.
        const auto before = static_cast<std::int64_t>(nudge::events_before_last_instant(
            {events.data() + lo, static_cast<std::size_t>(hi - lo)}));
        const auto latest = events[static_cast<std::size_t>(hi - 1)].ts;
        if (before == 0) {
          cut = hi;
          now = latest;
        } else {
          cut = lo + before;
          now = latest - nudge::seconds(1);
        }
      }
    }
    for (const auto& p : progress) {
      const bool at_end = p.next_event >= taken;
      if (at_end ? (p.now && *p.now >= end) : p.next_event >= cut) {
        continue;  // done, or ahead of this chunk (taken over from a worker that got further)
      }
      nudge::pg_partition_batch b;
      b.partition = p.partition;
      b.now = std::max(now, p.now.value_or(nudge::min_time));
      b.next_event = std::max(cut, p.next_event);
      for (auto i = p.next_event; i < cut; ++i) {
        const auto k = static_cast<std::size_t>(i);
        if (part_of[k] != p.partition) {
          continue;
        }
        if (p.now && events[k].ts < *p.now) {
          // Appended after a run that went on to a later --until: late, as for nudge run --db.
          throw std::runtime_error(fmt::format(
              "{}: event {} (contact \"{}\") at {} is before {}, the time its partition {} "
              "already reached: a late event (events must be sorted by ts)",
              source, i + 1, events[k].contact, nudge::format_time(events[k].ts),
              nudge::format_time(*p.now), p.partition));
        }
        b.events.push_back(events[k]);
      }
      // (Not before any event is taken, as nudge run --db: a run whose --until comes before the
      // first event leaves the contacts for a later one.)
      if (!p.contacts_loaded && taken > 0) {
        if (auto it = contacts_of.find(p.partition); it != contacts_of.end()) {
          b.contacts = it->second;
          b.contacts_at = events.front().ts;
        }
      }
      applied += b.events.size();
      work.push_back(std::move(b));
    }
    return work;
  };

  const auto idle = std::min(lease / 5, std::chrono::milliseconds{200});
  std::size_t commits = 0;
  for (;;) {
    const std::size_t applied_before = applied;
    std::size_t n = 0;
    bool worked = false;
    std::vector<std::uint32_t> held;
    try {
      held = db->keep_leases();
      if (const auto& gone = db->taken_over(); !gone.empty()) {
        std::string list;
        for (const auto p : gone) {
          list += fmt::format("{}{}", list.empty() ? "" : ", ", p);
        }
        ++lost;
        log().warn(
            fmt::format("{}: worker {} lost its lease on partitions {}: another worker took "
                        "them over while it did not renew (paused?); it commits nothing "
                        "for them",
                        db->name(), db->worker_id(), list));
      }
      if (db->finished(taken, end)) {
        break;
      }
      n = db->process([&](std::span<const nudge::pg_progress> progress) {
        auto work = plan(progress);
        worked = !work.empty();
        return work;
      });
    } catch (const nudge::pg_lease_lost& e) {
      applied = applied_before;
      ++lost;
      log().warn(e.what());
      continue;
    } catch (const nudge::pg_error& e) {
      if (!db->connection_lost()) {
        db->release_leases();
        throw;
      }
      // The server ended the session (this worker was paused inside a batch for longer than
      // the lease): the batch is rolled back and its partitions are the others' to take. Go on
      // with a new connection and no partitions.
      applied = applied_before;
      ++lost;
      log().warn(fmt::format(
          "{} (worker {}); the batch was rolled back, nothing committed: reconnecting without "
          "partitions",
          e.what(), db->worker_id()));
      commits += db->commits();
      db.reset();
      db = std::make_unique<nudge::pg_store>(args.pg, program, options);
      continue;
    } catch (...) {
      db->release_leases();
      throw;
    }
    if (!worked) {
      applied = applied_before;
      // Nothing of ours to do: wait for the others (or their leases to expire).
      std::this_thread::sleep_for(idle);
      continue;
    }
    actions += n;
    if (log().format() != log_format::plain) {
      log().info(fmt::format("batch committed by worker {}: {} events, {} actions, partitions {}",
                             db->worker_id(), applied - applied_before, n, held.size()),
                 {{"worker", db->worker_id(), false},
                  {"events", std::to_string(applied - applied_before), true},
                  {"actions", std::to_string(n), true}});
    }
  }
  const std::size_t held_at_end = db->held().size();
  if (const auto ours = db->release_leases(); ours < held_at_end) {
    // Paused after its last renewal: it commits nothing more, but says so.
    ++lost;
    log().warn(
        fmt::format("{}: worker {} lost its lease on {} of its {} partitions: others took "
                    "them over while it did not renew (paused?); it committed nothing for "
                    "them",
                    db->name(), db->worker_id(), held_at_end - ours, held_at_end));
  }
  commits += db->commits();
  log().info(fmt::format("worker {}: {} batches committed, {} events applied, {} actions into the "
                         "outbox, {} leases lost; every partition is done (up to {})",
                         db->worker_id(), commits, applied, actions, lost, nudge::format_time(end)),
             {{"worker", db->worker_id(), false},
              {"batches", std::to_string(commits), true},
              {"events", std::to_string(applied), true},
              {"actions", std::to_string(actions), true},
              {"lost", std::to_string(lost), true}});
  return exit_ok;
}

int run_outbox_pg(const std::string& url, std::size_t claim) {
  // Without --claim: everything, in transactions of 1,000.
  const std::size_t per = claim == 0 ? 1000 : claim;
  std::size_t total = 0;
  bool header = true;
  for (;;) {
    const auto n = nudge::pg_store::claim_outbox(
        url, claim == 0 ? per : claim - total, [&](std::span<const nudge::pg_outbox_entry> es) {
          std::string out = header ? "ts,contact,rule,action,arg,idempotency_key\n" : "";
          header = false;
          for (const auto& e : es) {
            auto it = std::back_inserter(out);
            it = fmt::format_to(it, "{},", nudge::to_epoch(e.ts));
            it = nudge::write_csv_field(it, e.contact);
            *it++ = ',';
            it = nudge::write_csv_field(it, e.rule);
            *it++ = ',';
            it = nudge::write_csv_field(it, e.action);
            *it++ = ',';
            it = nudge::write_csv_field(it, e.arg);
            fmt::format_to(it, ",{}\n", e.idempotency_key);
          }
          // Delivered before the claim commits: a failed write marks nothing.
          if (std::fwrite(out.data(), 1, out.size(), stdout) != out.size() ||
              std::fflush(stdout) != 0) {
            throw std::runtime_error("standard output: cannot write the claimed actions");
          }
        });
    total += n;
    if (n < per || (claim != 0 && total >= claim)) {
      break;
    }
  }
  if (header) {
    fmt::print("ts,contact,rule,action,arg,idempotency_key\n");
  }
  return exit_ok;
}

int run_pg_stats(const std::string& url, const std::string& rules) {
  auto program = load_or_report(rules);
  if (!program) {
    return exit_input;
  }
  nudge::pg_store db{url, program, {.reader = true}};
  print_stats(db.stats());
  return exit_ok;
}

}  // namespace nudge_cli
