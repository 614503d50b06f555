// The engine's batch: setup, the order of its actions, commit and rollback (batch.hpp).
#include "batch.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include <fmt/format.h>

#include "host_call.hpp"

namespace nudge::detail {
namespace {

void count(rule_stats& s, time_point at) {
  outcome_recorder::touch(s.first, s.last, at);
}

void add(workflow_stats& into, const workflow_stats& d) {
  into.entered += d.entered;
  into.completed += d.completed;
  into.exited += d.exited;
  into.ended += d.ended;
  into.sent += d.sent;
  into.opened += d.opened;
  into.clicked += d.clicked;
  into.active += d.active;
  into.delivery += d.delivery;
  for (const auto& t : {d.first, d.last}) {
    if (t) {
      outcome_recorder::touch(into.first, into.last, *t);
    }
  }
  for (std::size_t j = 0; j < d.steps.size(); ++j) {
    auto& s = into.steps[j];
    const auto& x = d.steps[j];
    s.reached += x.reached;
    s.sent += x.sent;
    s.opened += x.opened;
    s.clicked += x.clicked;
    s.waiting += x.waiting;
    s.ended += x.ended;
    s.delivery += x.delivery;
    for (const auto& t : {x.first, x.last}) {
      if (t) {
        outcome_recorder::touch(s.first, s.last, *t);
      }
    }
  }
}

}  // namespace

std::vector<workflow_stats> empty_workflow_stats(const program& p) {
  std::vector<workflow_stats> out;
  for (const auto& w : p.rules().workflows) {
    workflow_stats s;
    s.workflow = w.id;
    for (const auto& st : w.steps) {
      s.steps.push_back({});
      s.steps.back().step = st.id;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string too_many_events(std::size_t limit) {
  return fmt::format(
      "more than {} events for one contact in one batch (engine_options::max_events_per_contact); "
      "split the batch",
      limit);
}

namespace {
// Zero counts that keep the workflow's and steps' names (no allocation: give_back is noexcept).
void clear(workflow_stats& w) noexcept {
  std::string name = std::move(w.workflow);
  std::vector<workflow_step_stats> steps = std::move(w.steps);
  w = workflow_stats{};
  w.workflow = std::move(name);
  for (auto& st : steps) {
    std::string id = std::move(st.step);
    st = workflow_step_stats{};
    st.step = std::move(id);
  }
  w.steps = std::move(steps);
}
}  // namespace

batch::batch(engine& owner)
    : owner_(owner),
      program_(*owner.program_),
      counters_(owner.counters_),
      counts_(std::move(owner.spare_counts_)),
      workflow_counts_(std::move(owner.spare_workflow_counts_)),
      touched_(std::move(owner.batch_scratch_.touched)),
      workflows_touched_(std::move(owner.batch_scratch_.workflows_touched)),
      outcomes_{nullptr, &counts_, nullptr, &workflow_counts_, &touched_, &workflows_touched_} {
  // The engine's spares are zeroed; a second batch alive at once (the identity path) or the
  // first after a program change builds its own.
  if (counts_.size() != owner.stats_.size()) {
    counts_.assign(owner.stats_.size(), rule_stats{});
  }
  if (workflow_counts_.size() != owner.workflow_stats_.size()) {
    workflow_counts_ = empty_workflow_stats(program_);
  }
  // The engine's buffers from the previous batch (empty, with their capacity).
  runs_ = std::move(owner.batch_scratch_.runs);
  states_ = std::move(owner.batch_scratch_.states);
}

batch::~batch() {
  if (lent_any_ && !saved_) {
    owner_.store_->abandon();  // the store puts back what was evaluated in place
  }
  give_back();
}

void batch::give_back() noexcept {
  for (const std::uint32_t r : touched_) {
    // Field by field: the spare counts have no rule name, and assigning a whole rule_stats{}
    // moved a string per touched rule and batch.
    rule_stats& c = counts_[r];
    c.triggered = c.passed = c.failed = c.suppressed = c.emitted = 0;
    c.delivery = delivery_counts{};
    c.first.reset();
    c.last.reset();
  }
  for (const std::uint32_t w : workflows_touched_) {
    clear(workflow_counts_[w]);
  }
  if (owner_.spare_counts_.empty()) {
    owner_.spare_counts_ = std::move(counts_);
  }
  if (owner_.spare_workflow_counts_.empty()) {
    owner_.spare_workflow_counts_ = std::move(workflow_counts_);
  }
  // The lists go back empty, keeping their capacity for the next batch (unless a batch alive
  // at the same time already gave its own back).
  auto& spare = owner_.batch_scratch_;
  touched_.clear();
  workflows_touched_.clear();
  runs_.clear();
  states_.clear();
  if (spare.touched.capacity() == 0) {
    spare.touched = std::move(touched_);
  }
  if (spare.workflows_touched.capacity() == 0) {
    spare.workflows_touched = std::move(workflows_touched_);
  }
  if (spare.runs.capacity() == 0) {
    spare.runs = std::move(runs_);
  }
  if (spare.states.capacity() == 0) {
    spare.states = std::move(states_);
  }
}

contact_state* batch::lend(std::string_view id) {
  contact_state* s = call_host("store.lend", id, [&] { return owner_.store_->lend(id); });
  lent_any_ = lent_any_ || s != nullptr;
  return s;
}

std::vector<due_action> batch::commit(std::span<const std::string_view> ids) {
  sort(ids);
  deliver_and_save();
  saved_ = true;
  fold_in();
  return std::move(actions_);
}

// Sorts the actions by (ts, contact id), keeping each contact's emission order within an
// instant: due_order applied stably. The keys start in (run, position) order, and a stable radix
// sort by due time keeps that order among equal times; only a run of equal times with actions
// of several contacts is then put in contact id order, which is rare. (std::sort with a
// comparator was 3 % of a replay's instructions.)
void batch::sort(std::span<const std::string_view> ids) {
  if (runs_.size() <= 1) {
    return;  // one run of one contact: already in emission (= time) order
  }
  struct sort_key {
    std::uint64_t due;  // seconds since the batch's earliest action
    std::uint32_t run, position;
  };
  std::vector<sort_key> keys(actions_.size());
  std::int64_t earliest = to_epoch(actions_.front().ts);
  for (const auto& a : actions_) {
    earliest = std::min(earliest, to_epoch(a.ts));
  }
  std::uint64_t span = 0;
  std::size_t begin = 0;
  for (std::size_t r = 0; r < runs_.size(); ++r) {
    for (std::size_t i = begin; i < runs_[r].second; ++i) {
      const auto due = static_cast<std::uint64_t>(to_epoch(actions_[i].ts) - earliest);
      span = std::max(span, due);
      keys[i] = {due, static_cast<std::uint32_t>(r), static_cast<std::uint32_t>(i)};
    }
    begin = runs_[r].second;
  }
  auto by_id = [&](const sort_key& a, const sort_key& b) {
    return ids[runs_[a.run].first] < ids[runs_[b.run].first];
  };
  if (keys.size() < 256) {
    // Few actions (small batches): a comparison sort, without the radix sort's counting arrays.
    std::sort(keys.begin(), keys.end(), [&](const sort_key& a, const sort_key& b) {
      if (a.due != b.due) {
        return a.due < b.due;
      }
      if (a.run != b.run && ids[runs_[a.run].first] != ids[runs_[b.run].first]) {
        return by_id(a, b);
      }
      return a.position < b.position;  // one contact's runs in the order they were appended
    });
    apply_order(keys);
    return;
  }
  // Least significant digit first, 11 bits a pass, as many passes as the span of times needs.
  constexpr unsigned bits = 11;
  constexpr std::size_t radix = std::size_t{1} << bits;
  std::vector<sort_key> other(keys.size());
  std::vector<std::uint32_t> counts(radix);
  for (unsigned shift = 0; shift < 64 && (span >> shift) != 0; shift += bits) {
    std::fill(counts.begin(), counts.end(), 0);
    for (const auto& k : keys) {
      ++counts[(k.due >> shift) & (radix - 1)];
    }
    std::uint32_t total = 0;
    for (auto& c : counts) {
      total += std::exchange(c, total);
    }
    for (const auto& k : keys) {
      other[counts[(k.due >> shift) & (radix - 1)]++] = k;
    }
    keys.swap(other);
  }
  // Equal times: contacts by id (a contact's runs keep their order: the sort is stable).
  for (std::size_t i = 0; i < keys.size();) {
    std::size_t j = i + 1;
    bool several = false;
    while (j < keys.size() && keys[j].due == keys[i].due) {
      several = several || keys[j].run != keys[i].run;
      ++j;
    }
    if (several) {
      std::stable_sort(keys.begin() + static_cast<std::ptrdiff_t>(i),
                       keys.begin() + static_cast<std::ptrdiff_t>(j), by_id);
    }
    i = j;
  }
  apply_order(keys);
}

template <class Key>
void batch::apply_order(const std::vector<Key>& keys) {
  // Apply the permutation in place, cycle by cycle: no second copy of a large batch.
  std::vector<bool> placed(actions_.size(), false);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (placed[i] || keys[i].position == i) {
      continue;
    }
    due_action held = std::move(actions_[i]);
    std::size_t at = i;
    while (keys[at].position != i) {
      actions_[at] = std::move(actions_[keys[at].position]);
      placed[at] = true;
      at = keys[at].position;
    }
    actions_[at] = std::move(held);
    placed[at] = true;
  }
}

void batch::deliver_and_save() {
  if (owner_.sink_ != nullptr && !actions_.empty()) {
    call_host("sink.deliver", "", [&] { owner_.sink_->deliver(actions_); });
  }
  if (owner_.sink_ == nullptr || actions_.empty()) {
    // Nothing was handed to a sink: a failed save leaves the batch fully undone.
    call_host("store.save", "", [&] { owner_.store_->save(states_); });
  } else {
    try {
      owner_.store_->save(states_);
    } catch (...) {
      auto original_error = std::current_exception();
      std::throw_with_nested(callback_error(
          "store.save", "",
          fmt::format("{} (the batch's {} actions were delivered; no state was saved: "
                      "process the batch again and drop duplicates by idempotency key)",
                      what_of(original_error), actions_.size())));
    }
  }
}

void batch::fold_in() noexcept {
  // Committed: fold in statistics and counters (cannot throw).
  owner_.counters_ = std::move(counters_);
  std::vector<rule_stats>& stats = owner_.stats_;
  for (const std::uint32_t r : touched_) {  // the others hold nothing
    const rule_stats& c = counts_[r];
    rule_stats& s = stats[r];
    s.triggered += c.triggered;
    s.passed += c.passed;
    s.failed += c.failed;
    s.suppressed += c.suppressed;
    s.delivery += c.delivery;
    if (c.first) {
      count(s, *c.first);
    }
    if (c.last) {
      count(s, *c.last);
    }
  }
  for (const std::uint32_t w : workflows_touched_) {
    add(owner_.workflow_stats_[w], workflow_counts_[w]);
  }
  for (const auto& a : actions_) {
    if (a.from_workflow()) {
      continue;  // counted as `sent` by the workflow's outcomes
    }
    rule_stats& s = stats[a.rule_index];
    ++s.emitted;
    count(s, a.ts);
  }
}

}  // namespace nudge::detail
