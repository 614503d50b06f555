// pg_store: one worker's store, leases and batches over PostgreSQL (nudge/io/pg_store.hpp).
#include <algorithm>
#include <bit>
#include <map>
#include <sstream>

#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <nudge/due_action.hpp>
#include <nudge/engine.hpp>
#include <nudge/io/pg_store.hpp>
#include <nudge/io/snapshot.hpp>

#include "io/pg/conn.hpp"
#include "io/pg/schema.hpp"
#include "io/sqlite/row_codec.hpp"

namespace nudge {

using namespace pg_detail;  // NOLINT(google-build-using-namespace)

namespace {

std::string interval(std::chrono::milliseconds ms) {
  return fmt::format("{} ms", ms.count());
}

std::string default_worker_id() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return fmt::format("{}:{}", host, getpid());
}

// The state record: the snapshot codec with its zero runs coded, as the SQLite store's rows
// hold it (src/io/sqlite/row_codec.hpp), so there is one state format.
std::string encode_state(const contact_state& s, std::string& scratch) {
  scratch.clear();
  encode_contact_state(s, scratch);
  std::string out;
  sqlite_detail::put_zero_runs(out, scratch);
  return out;
}

void add_stats(std::vector<rule_stats>& into, const std::vector<rule_stats>& more) {
  if (into.empty()) {
    into = more;
    return;
  }
  for (std::size_t i = 0; i < into.size() && i < more.size(); ++i) {
    auto& a = into[i];
    const auto& b = more[i];
    a.triggered += b.triggered;
    a.passed += b.passed;
    a.failed += b.failed;
    a.suppressed += b.suppressed;
    a.emitted += b.emitted;
    a.delivery += b.delivery;
    if (b.first && (!a.first || *b.first < *a.first)) {
      a.first = b.first;
    }
    if (b.last && (!a.last || *b.last > *a.last)) {
      a.last = b.last;
    }
  }
}

}  // namespace

struct pg_store::impl {
  impl(const std::string& url, std::shared_ptr<const nudge::program> p, pg_options o)
      : conn(url), program(std::move(p)), options(std::move(o)) {}

  connection conn;
  std::shared_ptr<const nudge::program> program;
  pg_options options;
  std::uint64_t fingerprint = 0;
  std::uint32_t partitions = 0;
  std::map<std::uint32_t, std::int64_t> held;  ///< partition -> the generation acquired
  std::size_t commits = 0;
  std::vector<std::uint32_t> taken_over;  ///< by others, found by the last keep_leases

  // The open batch: the states it fetched or saved (by id; a contact lives in one partition,
  // `part` says which), and the partition the engine is evaluating (`focus`: due() answers for it).
  struct held_state {
    std::uint32_t part = 0;
    contact_state state;
  };
  std::uint32_t focus = 0;
  boost::unordered_flat_map<std::string, held_state> current;
  boost::unordered_flat_set<std::string> asked;  ///< ids the fetch looked for
  boost::unordered_flat_set<std::string> dirty;  ///< saved in this batch
  // The batch's outbox rows, as PostgreSQL array texts (one INSERT at the end).
  std::string out_keys, out_parts, out_ts, out_contacts, out_rules, out_verbs, out_args;
  std::string scratch;

  void clear_batch() {
    current.clear();
    asked.clear();
    dirty.clear();
    for (auto* a :
         {&out_keys, &out_parts, &out_ts, &out_contacts, &out_rules, &out_verbs, &out_args}) {
      a->clear();
    }
  }

  contact_state decode(std::string_view coded, std::string_view id) {
    scratch.clear();
    if (!sqlite_detail::get_zero_runs(coded, scratch)) {
      throw pg_error(fmt::format("{}: the state of contact \"{}\" is corrupt (broken zero run)",
                                 conn.name(), id));
    }
    try {
      return decode_contact_state(scratch, program.get());
    } catch (const snapshot_error& e) {
      throw pg_error(fmt::format("{}: the state of contact \"{}\": {}", conn.name(), id, e.what()));
    }
  }

  // The states the whole batch needs, in one query: the events' contacts by id and the contacts
  // of the batch's partitions with a timer due by `now` (the latest of the partitions'), through
  // the (part, next_due) index. due() then answers per partition and time from these.
  void fetch(const std::vector<std::int64_t>& parts, const std::vector<std::string>& ids,
             time_point now) {
    std::string array;
    for (const auto& id : ids) {
      if (asked.insert(id).second) {
        array_element(array, id);
      }
    }
    array += array.empty() ? "{}" : "}";
    auto r = conn.exec("read the batch's contact states",
                       "SELECT id, part, state FROM nudge_contacts WHERE part = ANY($1::int[]) AND "
                       "(id = ANY($2::text[]) OR next_due <= $3)",
                       {int_array(parts), array, std::to_string(to_epoch(now))});
    for (int i = 0; i < r.rows(); ++i) {
      std::string id{r.text(i, 0)};
      auto state = decode(r.bytes(i, 2), id);
      asked.insert(id);
      current.insert_or_assign(
          std::move(id), held_state{static_cast<std::uint32_t>(r.int64(i, 1)), std::move(state)});
    }
  }

  // Writes every state the batch saved, in one statement.
  void write_states() {
    if (dirty.empty()) {
      return;
    }
    std::string ids, parts, dues, states;
    std::string record;
    std::vector<std::string_view> order(dirty.begin(), dirty.end());
    std::sort(order.begin(), order.end());  // rows locked in one order
    for (const auto id : order) {
      const auto& h = current.at(std::string{id});
      array_element(ids, id);
      array_element(parts, std::to_string(h.part));
      array_element(dues, std::to_string(to_epoch(h.state.next_due())));
      array_element(states, bytea_text(encode_state(h.state, record)));
    }
    for (auto* a : {&ids, &parts, &dues, &states}) {
      *a += '}';
    }
    conn.exec("save the contact states",
              "INSERT INTO nudge_contacts(id, part, next_due, state) "
              "SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bytea[]) "
              "ON CONFLICT (id) DO UPDATE SET part = excluded.part, next_due = excluded.next_due, "
              "state = excluded.state",
              {ids, parts, dues, states});
  }

  // Queues a partition's actions for write_outbox (as text now: an action's views live only as
  // long as the engine that returned it).
  void add_to_outbox(std::uint32_t part, std::span<const due_action> actions) {
    for (const auto& a : actions) {
      array_element(out_keys, std::to_string(std::bit_cast<std::int64_t>(a.idempotency_key)));
      array_element(out_parts, std::to_string(part));
      array_element(out_ts, std::to_string(to_epoch(a.ts)));
      array_element(out_contacts, a.contact);
      array_element(out_rules,
                    a.from_workflow() ? fmt::format("{}/{}", a.rule, a.step) : std::string{a.rule});
      array_element(out_verbs, a.action());
      array_element(out_args, a.arg);
    }
  }

  void write_outbox() {
    if (out_keys.empty()) {
      return;
    }
    for (auto* a :
         {&out_keys, &out_parts, &out_ts, &out_contacts, &out_rules, &out_verbs, &out_args}) {
      *a += '}';
    }
    // A key already there is kept once: the same action committed again (never by a fenced
    // batch, but by a replay of the same events) is the same row.
    conn.exec("write the outbox",
              "INSERT INTO nudge_outbox(idempotency_key, part, ts, contact, rule, action, arg) "
              "SELECT * FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[], "
              "$5::text[], $6::text[], $7::text[]) ON CONFLICT (idempotency_key) DO NOTHING",
              {out_keys, out_parts, out_ts, out_contacts, out_rules, out_verbs, out_args});
  }

  void heartbeat() {
    conn.exec("record this worker",
              "INSERT INTO nudge_workers(id, expires_at) VALUES ($1, clock_timestamp() + "
              "$2::interval) ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
              {options.worker_id, interval(options.lease)});
  }

  std::string held_array() const {
    std::vector<std::int64_t> parts;
    for (const auto& [p, g] : held) {
      parts.push_back(p);
    }
    return int_array(parts);
  }
};

pg_store::pg_store(const std::string& url, std::shared_ptr<const nudge::program> program,
                   pg_options options)
    : impl_(std::make_unique<impl>(url, std::move(program), std::move(options))) {
  impl& d = *impl_;
  if (d.options.worker_id.empty()) {
    d.options.worker_id = default_worker_id();
  }
  const auto info = check_schema(d.conn);
  d.partitions = info.partitions;
  d.fingerprint = program_fingerprint(*d.program);
  const auto mine = fmt::format("{:016x}", d.fingerprint);
  // The first worker records the program; later ones must run the same ("reject, never guess").
  d.conn.exec("record the program",
              "INSERT INTO nudge_meta(key, value) VALUES ('program_fingerprint', $1) ON CONFLICT "
              "(key) DO NOTHING",
              {mine});
  const auto stored = d.conn.exec("read the program",
                                  "SELECT value FROM nudge_meta WHERE key = 'program_fingerprint'");
  if (stored.text(0, 0) != mine) {
    throw pg_error(fmt::format(
        "{}: the database belongs to another rule program (fingerprint {}; these rules: {}): "
        "refused, nothing changed (run the rules it was made for, or start a new database)",
        d.conn.name(), stored.text(0, 0), mine));
  }
  // A worker paused inside a batch's transaction must not keep its lease rows locked (the
  // others could not take its partitions over): the server ends such a session after the lease.
  d.conn.exec(
      "set the session's timeouts",
      fmt::format("SET idle_in_transaction_session_timeout = {}", d.options.lease.count()).c_str());
  if (!d.options.reader) {
    d.heartbeat();
    // Heartbeats of workers gone for a day only take room.
    d.conn.exec(
        "forget old workers",
        "DELETE FROM nudge_workers WHERE expires_at < clock_timestamp() - interval '1 day'");
  }
}

pg_store::~pg_store() = default;

std::uint32_t pg_store::partitions() const noexcept {
  return impl_->partitions;
}
const std::string& pg_store::worker_id() const noexcept {
  return impl_->options.worker_id;
}
const std::string& pg_store::name() const noexcept {
  return impl_->conn.name();
}
std::size_t pg_store::commits() const noexcept {
  return impl_->commits;
}
std::vector<std::uint32_t> pg_store::held() const {
  std::vector<std::uint32_t> parts;
  for (const auto& [p, g] : impl_->held) {
    parts.push_back(p);
  }
  return parts;
}
const std::vector<std::uint32_t>& pg_store::taken_over() const noexcept {
  return impl_->taken_over;
}
bool pg_store::connection_lost() const noexcept {
  return impl_->conn.broken();
}

std::optional<contact_state> pg_store::load(std::string_view contact) {
  impl& d = *impl_;
  const std::string id{contact};
  if (auto it = d.current.find(id); it != d.current.end()) {
    return it->second.state;
  }
  if (d.asked.contains(id)) {
    return std::nullopt;
  }
  // Not foreseen by the batch's fetch: read it on its own.
  auto r = d.conn.exec("read a contact state",
                       "SELECT part, state FROM nudge_contacts WHERE id = $1", {id});
  d.asked.insert(id);
  if (r.rows() == 0) {
    return std::nullopt;
  }
  auto s = d.decode(r.bytes(0, 1), id);
  d.current.insert_or_assign(id, impl::held_state{static_cast<std::uint32_t>(r.int64(0, 0)), s});
  return s;
}

void pg_store::save(std::span<contact_state> states) {
  impl& d = *impl_;
  for (auto& s : states) {
    d.dirty.insert(s.contact.id);
    // A new contact belongs to the partition being evaluated (its events were planned there).
    auto& h = d.current[s.contact.id];
    h.part = d.focus;
    h.state = std::move(s);
  }
}

std::vector<std::string> pg_store::due(time_point t) {
  const impl& d = *impl_;
  std::vector<std::string> ids;
  for (const auto& [id, h] : d.current) {
    if (h.part == d.focus && h.state.next_due() <= t && h.state.merged_into.empty()) {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::vector<std::uint32_t> pg_store::keep_leases() {
  impl& d = *impl_;
  d.heartbeat();
  const auto lease = interval(d.options.lease);
  // Renew what is still ours at the generation we acquired; anything else was taken over.
  {
    auto r = d.conn.exec("renew the leases",
                         "UPDATE nudge_leases SET expires_at = clock_timestamp() + $2::interval "
                         "WHERE owner = $1 AND part = ANY($3::int[]) RETURNING part, generation",
                         {d.options.worker_id, lease, d.held_array()});
    std::map<std::uint32_t, std::int64_t> still;
    d.taken_over.clear();
    for (int i = 0; i < r.rows(); ++i) {
      const auto part = static_cast<std::uint32_t>(r.int64(i, 0));
      if (auto it = d.held.find(part); it != d.held.end() && it->second == r.int64(i, 1)) {
        still.emplace(part, it->second);
      }
    }
    for (const auto& [part, generation] : d.held) {
      if (!still.contains(part)) {
        d.taken_over.push_back(part);
      }
    }
    d.held = std::move(still);
  }
  const auto live =
      std::max<std::int64_t>(1, d.conn
                                    .exec("count the live workers",
                                          "SELECT count(*) FROM nudge_workers WHERE expires_at "
                                          "> clock_timestamp()")
                                    .int64(0, 0));
  const auto share = static_cast<std::size_t>((d.partitions + live - 1) / live);
  if (d.held.size() > share) {
    // Above the share: the highest partitions go back, for the workers that came up since.
    std::vector<std::int64_t> extra;
    while (d.held.size() > share) {
      extra.push_back(std::prev(d.held.end())->first);
      d.held.erase(std::prev(d.held.end()));
    }
    d.conn.exec("give leases up",
                "UPDATE nudge_leases SET owner = NULL, expires_at = '-infinity' WHERE owner = $1 "
                "AND part = ANY($2::int[])",
                {d.options.worker_id, int_array(extra)});
  } else if (d.held.size() < share) {
    // Free or expired partitions (or ones an earlier process under this worker id left): each
    // acquisition increments the generation, which fences the previous holder out.
    auto r = d.conn.exec(
        "acquire leases",
        "UPDATE nudge_leases SET owner = $1, generation = generation + 1, expires_at = "
        "clock_timestamp() + $2::interval WHERE part IN (SELECT part FROM nudge_leases WHERE "
        "NOT part = ANY($3::int[]) AND (owner IS NULL OR owner = $1 OR expires_at <= "
        "clock_timestamp()) ORDER BY part LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING part, "
        "generation",
        {d.options.worker_id, lease, d.held_array(), std::to_string(share - d.held.size())});
    for (int i = 0; i < r.rows(); ++i) {
      d.held.emplace(static_cast<std::uint32_t>(r.int64(i, 0)), r.int64(i, 1));
    }
  }
  std::vector<std::uint32_t> parts;
  for (const auto& [p, g] : d.held) {
    parts.push_back(p);
  }
  return parts;
}

std::size_t pg_store::release_leases() noexcept {
  impl& d = *impl_;
  std::size_t still_ours = d.held.size();
  try {
    auto r = d.conn.exec("give leases up",
                         "UPDATE nudge_leases SET owner = NULL, expires_at = '-infinity' WHERE "
                         "owner = $1 AND part = ANY($2::int[]) RETURNING part, generation",
                         {d.options.worker_id, d.held_array()});
    still_ours = 0;
    for (int i = 0; i < r.rows(); ++i) {
      const auto it = d.held.find(static_cast<std::uint32_t>(r.int64(i, 0)));
      still_ours += it != d.held.end() && it->second == r.int64(i, 1) ? 1 : 0;
    }
    d.conn.exec("remove this worker", "DELETE FROM nudge_workers WHERE id = $1",
                {d.options.worker_id});
  } catch (const std::exception&) {
    // They expire on their own.
  }
  d.held.clear();
  return still_ours;
}

std::size_t pg_store::process(
    const std::function<std::vector<pg_partition_batch>(std::span<const pg_progress>)>& plan) {
  impl& d = *impl_;
  if (d.held.empty()) {
    return 0;
  }
  d.conn.exec("begin a batch", "BEGIN");
  std::size_t actions_total = 0;
  try {
    // Fencing: the lease rows locked until COMMIT, their generations still the ones acquired.
    auto r = d.conn.exec("lock the batch's leases",
                         "SELECT l.part, l.owner, l.generation, p.next_event, p.now_epoch, "
                         "p.contacts_loaded, p.engine FROM nudge_leases l JOIN nudge_progress p "
                         "USING (part) WHERE l.part = ANY($1::int[]) ORDER BY l.part FOR UPDATE "
                         "OF l",
                         {d.held_array()});
    std::vector<pg_progress> progress;
    std::map<std::uint32_t, std::string> engines;
    std::vector<std::uint32_t> lost;
    std::string lost_text;
    for (int i = 0; i < r.rows(); ++i) {
      const auto part = static_cast<std::uint32_t>(r.int64(i, 0));
      const auto generation = r.int64(i, 2);
      const std::string owner = r.null(i, 1) ? std::string{} : std::string{r.text(i, 1)};
      if (owner != d.options.worker_id || generation != d.held[part]) {
        lost.push_back(part);
        lost_text += fmt::format("{}partition {} (generation {} acquired, now {} held by {})",
                                 lost_text.empty() ? "" : ", ", part, d.held[part], generation,
                                 owner.empty() ? "nobody" : owner);
        continue;
      }
      pg_progress p;
      p.partition = part;
      p.next_event = r.int64(i, 3);
      if (!r.null(i, 4)) {
        p.now = from_epoch(r.int64(i, 4));
      }
      p.contacts_loaded = r.boolean(i, 5);
      progress.push_back(p);
      if (!r.null(i, 6)) {
        engines.emplace(part, r.bytes(i, 6));
      }
    }
    if (!lost.empty()) {
      for (const auto p : lost) {
        d.held.erase(p);
      }
      throw pg_lease_lost(
          fmt::format("{}: worker {} lost its lease on {}: the batch was rolled back, nothing "
                      "committed",
                      d.conn.name(), d.options.worker_id, lost_text),
          lost);
    }
    auto work = plan(progress);
    if (work.empty()) {
      d.conn.exec("end the batch", "ROLLBACK");  // nothing to write: the leases stay as they are
      return 0;
    }
    std::vector<std::int64_t> parts;
    std::vector<std::string> ids;
    time_point latest = min_time;
    for (const auto& pb : work) {
      parts.push_back(pb.partition);
      latest = std::max(latest, pb.now);
      for (const auto& e : pb.events) {
        ids.push_back(e.contact);
      }
      for (const auto& c : pb.contacts) {
        ids.push_back(c.id);
      }
    }
    d.clear_batch();
    d.fetch(parts, ids, latest);
    std::string p_parts, p_next, p_now, p_contacts, p_engine;
    for (auto& pb : work) {
      d.focus = pb.partition;
      // One engine per partition: its statistics are the partition's, summed over partitions
      // by stats() (round-robin counters, which cannot be split, are refused by nudge run).
      engine e{d.program, this};
      if (auto it = engines.find(pb.partition); it != engines.end()) {
        auto s = parse_snapshot(
            it->second, d.program.get(),
            fmt::format("{} (partition {} statistics)", d.conn.name(), pb.partition));
        e.restore(std::move(s.stats), std::move(s.counters), std::move(s.workflows));
      }
      if (pb.contacts_at) {
        const auto actions = e.upsert_contacts(pb.contacts, *pb.contacts_at);
        d.add_to_outbox(pb.partition, actions);
        actions_total += actions.size();
      }
      const auto actions = e.process(pb.events, pb.now);
      d.add_to_outbox(pb.partition, actions);
      actions_total += actions.size();
      snapshot s;
      s.fingerprint = d.fingerprint;
      s.stats = e.stats();
      s.counters = e.counters();
      s.workflows = e.workflow_stats();
      std::ostringstream out;
      write_snapshot(out, s);
      array_element(p_parts, std::to_string(pb.partition));
      array_element(p_next, std::to_string(pb.next_event));
      array_element(p_now, std::to_string(to_epoch(pb.now)));
      array_element(p_contacts, pb.contacts_at ? "true" : "false");
      array_element(p_engine, bytea_text(out.str()));
    }
    d.write_states();
    d.write_outbox();
    for (auto* a : {&p_parts, &p_next, &p_now, &p_contacts, &p_engine}) {
      *a += '}';
    }
    d.conn.exec("write the partitions' progress",
                "UPDATE nudge_progress p SET next_event = u.next_event, now_epoch = u.now_epoch, "
                "contacts_loaded = p.contacts_loaded OR u.contacts, engine = u.engine, batches = "
                "p.batches + 1 FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::boolean[], "
                "$5::bytea[]) AS u(part, next_event, now_epoch, contacts, engine) WHERE p.part = "
                "u.part",
                {p_parts, p_next, p_now, p_contacts, p_engine});
    before_commit();
    d.conn.exec("commit the batch", "COMMIT");
  } catch (...) {
    d.clear_batch();
    d.conn.exec_quietly("ROLLBACK");
    throw;
  }
  d.clear_batch();
  ++d.commits;
  return actions_total;
}

bool pg_store::finished(std::int64_t events, time_point end) {
  auto r = impl_->conn.exec("read the progress",
                            "SELECT count(*) FROM nudge_progress WHERE next_event < $1 OR "
                            "now_epoch IS NULL OR now_epoch < $2",
                            {std::to_string(events), std::to_string(to_epoch(end))});
  return r.int64(0, 0) == 0;
}

std::vector<rule_stats> pg_store::stats() {
  impl& d = *impl_;
  auto r = d.conn.exec("read the statistics",
                       "SELECT part, engine FROM nudge_progress WHERE engine IS NOT NULL ORDER BY "
                       "part");
  std::vector<rule_stats> total;
  for (int i = 0; i < r.rows(); ++i) {
    auto s =
        parse_snapshot(r.bytes(i, 1), d.program.get(),
                       fmt::format("{} (partition {} statistics)", d.conn.name(), r.text(i, 0)));
    add_stats(total, s.stats);
  }
  if (total.empty()) {
    engine e{d.program};
    total = e.stats();
  }
  return total;
}

std::size_t pg_store::claim_outbox(
    const std::string& url, std::size_t limit,
    const std::function<void(std::span<const pg_outbox_entry>)>& deliver) {
  connection c{url};
  check_schema(c);
  c.exec("begin", "BEGIN");
  try {
    auto r = c.exec("claim the outbox",
                    "SELECT seq, idempotency_key, ts, contact, rule, action, arg FROM nudge_outbox "
                    "WHERE delivered_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                    {std::to_string(limit)});
    std::vector<pg_outbox_entry> entries;
    std::vector<std::int64_t> seqs;
    for (int i = 0; i < r.rows(); ++i) {
      pg_outbox_entry e;
      e.sequence = r.int64(i, 0);
      e.idempotency_key = std::bit_cast<std::uint64_t>(r.int64(i, 1));
      e.ts = from_epoch(r.int64(i, 2));
      e.contact = r.text(i, 3);
      e.rule = r.text(i, 4);
      e.action = r.text(i, 5);
      e.arg = r.text(i, 6);
      seqs.push_back(e.sequence);
      entries.push_back(std::move(e));
    }
    if (!entries.empty()) {
      deliver(entries);
      c.exec("mark the outbox delivered",
             "UPDATE nudge_outbox SET delivered_at = clock_timestamp() WHERE seq = "
             "ANY($1::bigint[])",
             {int_array(seqs)});
    }
    c.exec("commit", "COMMIT");
    return entries.size();
  } catch (...) {
    c.exec_quietly("ROLLBACK");
    throw;
  }
}

}  // namespace nudge
