// Replay of an event log through a fresh engine (the actions CSV writer: actions_csv.cpp).
#include <algorithm>
#include <fstream>
#include <optional>
#include <ostream>
#include <span>
#include <utility>

#include <nudge/detail/compiled.hpp>
#include <nudge/engine.hpp>
#include <nudge/io/replay.hpp>
#include <nudge/memory_store.hpp>

namespace nudge {
namespace {

// Events read per step, when the caller did not ask for engine batches: bounds the reader's
// scratch and sets how often progress is reported.
constexpr std::size_t read_chunk = 1 << 16;

// Contacts per upsert of a contacts file. One upsert of all of them held every new state twice
// (the batch's and the store's) beside the file's profiles: the peak of a replay's memory.
// Slices at one instant give the same actions: each contact is in one slice, slices keep the
// file's order (round-robin picks too), and append() merges their actions by due_order.
constexpr std::size_t upsert_slice = 4096;

// Upserts `contacts` slice by slice (at `at`, or without an instant), freeing each slice's
// profiles once the engine has them; emit() gets each slice's actions.
template <class Emit>
void upsert_in_slices(engine& eng, std::vector<contact>& contacts, std::optional<time_point> at,
                      Emit&& emit) {
  eng.store().reserve(contacts.size());
  std::vector<contact> slice;
  for (std::size_t from = 0; from < contacts.size(); from += upsert_slice) {
    // The slice's profiles move to the engine, and their strings and maps go with its states
    // (not at the end of the replay).
    const std::size_t n = std::min(upsert_slice, contacts.size() - from);
    try {
      if (at) {
        slice.assign(
            std::make_move_iterator(contacts.begin() + static_cast<std::ptrdiff_t>(from)),
            std::make_move_iterator(contacts.begin() + static_cast<std::ptrdiff_t>(from + n)));
        emit(eng.upsert_contacts(std::move(slice), *at));
        slice.clear();
      } else {
        eng.upsert_contacts(std::span<const contact>{contacts.data() + from, n});
      }
    } catch (const input_error& e) {
      throw input_error(e.contact(), from + e.event_index(), e.reason());  // the file's position
    }
    for (std::size_t i = from; i < from + n; ++i) {
      contacts[i] = contact{};
    }
  }
  std::vector<contact>{}.swap(contacts);
}

void append(std::vector<due_action>& to, std::vector<due_action>&& from) {
  if (to.empty()) {
    to = std::move(from);
    return;
  }
  const auto middle = static_cast<std::ptrdiff_t>(to.size());
  const bool in_order = from.empty() || !due_order(from.front(), to.back());
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
  if (!in_order) {
    // The contacts' upsert at the first event's instant and that instant's events both emit
    // there: merge, stably, so each contact keeps its emission order (upsert first).
    std::inplace_merge(to.begin(), to.begin() + middle, to.end(), due_order);
  }
}

}  // namespace

std::size_t events_before_last_instant(std::span<const event> events) noexcept {
  std::size_t cut = events.size();
  while (cut > 0 && events[cut - 1].ts == events.back().ts) {
    --cut;
  }
  return cut;
}

replay_result replay(std::shared_ptr<const program> program, const std::string& events_path,
                     const replay_options& options) {
  // The engine and its store end with this call, also when a batch fails: no batch needs an
  // undo log, and lending states without copying them is a tenth of a replay's time.
  memory_store store{{.undo = false}};
  engine eng{std::move(program), &store};
  return replay(eng, events_path, options);
}

replay_result replay(engine& eng, const std::string& events_path, const replay_options& options) {
  const auto program = eng.shared_program();
  replay_result result;
  result.program = program;

  std::ofstream rejects;
  reject_handler on_reject;
  if (options.on_error == error_policy::skip) {
    if (!options.rejects_path.empty()) {
      rejects.exceptions(std::ios::failbit | std::ios::badbit);
      rejects.open(options.rejects_path, std::ios::binary | std::ios::trunc);
    }
    on_reject = [&](const input_problem& p) {
      ++result.rejected;
      if (rejects.is_open()) {
        rejects << p.to_string() << '\t' << p.text << '\n';
      }
      if (options.on_reject) {
        options.on_reject(p);
      }
    };
  }

  std::vector<contact> contacts;
  if (!options.contacts_path.empty()) {
    contacts =
        read_contacts(options.contacts_path, {.program = program.get(), .on_reject = on_reject});
    result.contacts_read = contacts.size();
  }

  // No is_known_contact check: a contact missing from the contacts file is an anonymous
  // visitor (seed 004), created by its first event as in live use, and its history counts
  // once an identify event merges it.
  event_read_options read_options;
  read_options.program = program.get();
  read_options.not_after = options.until;
  read_options.on_reject = on_reject;
  read_options.strict_columns = options.strict_columns;
  event_reader reader{events_path, std::move(read_options)};

  auto progress = [&](bool evaluating) {
    if (options.on_progress) {
      options.on_progress(
          {reader.bytes_done(), reader.bytes_total(), reader.events_read(), evaluating});
    }
  };

  // Actions ready to go out. With on_actions they are handed out after each process call, so
  // a replay holds one batch of actions at a time; the upsert's wait for the first batch, which
  // may emit at the same instant (append merges them).
  std::vector<due_action> ready;
  bool hold = false;
  auto emit = [&](std::vector<due_action>&& actions) {
    append(ready, std::move(actions));
    if (options.on_actions && !hold && !ready.empty()) {
      result.action_count += ready.size();
      options.on_actions(ready);
      ready.clear();
    }
  };

  // Read, not yet handed to the engine: pending[head, end). The handed-out front is dropped
  // only once it is most of the vector: with small batches (`--batch 1`) an erase per process
  // call moved every pending event each time.
  std::vector<event> pending;
  std::size_t head = 0;
  std::vector<event> batch;
  const std::size_t step = options.batch_events > 0 ? options.batch_events : read_chunk;
  bool upserted = contacts.empty();
  while (reader.read(batch, step)) {
    if (!upserted && !batch.empty()) {
      // The contacts are upserted at the log's first event (the reader refuses events out of
      // time order, so it is the earliest): their segments and yearly dates (birthdays) are
      // evaluated from there, also for contacts that have no events.
      hold = true;
      upsert_in_slices(eng, contacts, batch.front().ts, emit);
      hold = false;
      upserted = true;
    }
    if (head == pending.size()) {
      pending.clear();
      head = 0;
      std::swap(pending, batch);
    } else {
      pending.insert(pending.end(), std::make_move_iterator(batch.begin()),
                     std::make_move_iterator(batch.end()));
    }
    if (options.batch_events > 0 && head < pending.size()) {
      // Hand the engine every event before the latest timestamp, and advance the clock to just
      // before it: timers due at that instant must wait until its events are applied.
      const std::span<const event> waiting{pending.data() + head, pending.size() - head};
      const time_point latest = waiting.back().ts;
      const std::size_t cut = events_before_last_instant(waiting);
      if (cut > 0) {
        emit(eng.process(waiting.first(cut), latest - seconds(1)));
        head += cut;
        if (head >= 1024 && 2 * head >= pending.size()) {
          pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(head));
          head = 0;
        }
      }
    }
    progress(false);
  }
  result.events_read = reader.events_read();
  if (!upserted) {
    upsert_in_slices(eng, contacts, std::nullopt, emit);  // no events: no instant either
  }

  const auto last = reader.last_time();
  if (options.until) {
    result.until = *options.until;
  } else if (last) {
    // Never past the input range: timers set from there could not be stored (nudge/time.hpp).
    result.until = std::min(*last + program->longest_delay(), max_input_time);
  } else {
    result.until = from_epoch(0);  // no events: nothing is pending either
  }
  progress(true);
  emit(eng.process(std::span<const event>{pending}.subspan(head), result.until));
  std::vector<event>{}.swap(pending);
  result.pending = find_pending_work(eng.store());
  if (!options.until && last) {
    // The longest delay does not see messages deferred by quiet hours, send windows or caps
    // (each deferral can start another): go on to the latest pending timer until none is left.
    // Timers past the input range (nudge/time.hpp) stay pending: no clock may go there.
    for (std::size_t n = 0; n < options.max_extensions && result.pending.timers > 0; ++n) {
      const time_point next = std::min(result.pending.last, max_input_time);
      if (next <= result.until) {
        break;  // only timers past the input range are left
      }
      result.until = next;
      emit(eng.advance(result.until));
      result.pending = find_pending_work(eng.store());
    }
  }
  if (!options.on_actions) {
    result.action_count = ready.size();
    result.actions = std::move(ready);
  } else if (!ready.empty()) {
    result.action_count += ready.size();
    options.on_actions(ready);
  }
  result.stats = eng.stats();
  result.workflow_stats = eng.workflow_stats();
  if (options.on_finished) {
    options.on_finished(eng);
  }
  return result;
}

}  // namespace nudge
