// nudge/workflow.hpp: a workflow (a multi-step journey with waits) as data, and a builder.
//
// A rule answers "when X happens, do Y". A workflow is a journey a contact walks through step by
// step: it enters on an event (or yearly on a date detail such as a birthday), then is sent
// messages, waits, is branched on conditions, waits for an event with a timeout, is split at
// random, gets internal actions, and ends. Every step has a stable string id: statistics, due
// actions and open / click attribution name it.
//
//     auto w = nudge::workflow_builder("abandoned_cart")
//                  .enter_on(nudge::on("cart"))
//                  .exit_on(nudge::on("purchase"))
//                  .wait("w1", nudge::hours(1))
//                  .send("r1", nudge::send_email("cart_reminder_1"))
//                  .wait("w2", nudge::days(1))
//                  .send("r2", nudge::send_email("cart_reminder_2"))
//                  .build();
//
// Steps run in the order listed unless a step names its `next`; branches, waits for an event and
// splits name the steps they lead to. A step without a successor (the last one, or an `end`
// step) completes the run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nudge/action.hpp>
#include <nudge/condition.hpp>
#include <nudge/contact.hpp>
#include <nudge/delivery.hpp>
#include <nudge/event.hpp>
#include <nudge/time.hpp>

namespace nudge {

/// Property names an `email_open` / `email_click` event carries to attribute itself to the
/// workflow step whose message was opened or clicked. Without them, a key
/// "<workflow id>/<step id>" attributes it (for event logs that carry no properties).
namespace workflow_props {
inline constexpr std::string_view workflow = "workflow";
inline constexpr std::string_view step = "step";
}  // namespace workflow_props

/// How a contact enters a workflow.
enum class entry_kind : std::uint8_t {
  event,  ///< an event matching `on` (tag added, stage entered, segment entered, purchase, ...)
  date,   ///< yearly, on the date held by the contact detail `detail`, at `time_of_day`
};

/// The entry of a workflow.
///
/// A date entry reads the detail as a `time_point` value or as text "YYYY-MM-DD" (the year is
/// ignored: only month and day count). It fires on that month and day plus `offset_days`, at
/// `time_of_day` seconds after midnight. A date of 29 February fires on 28 February in years
/// without it (the last day of February; documented in docs/rules.md).
/// Dates and times of day are the contact's local wall time (its `time_zone`, else the rule
/// set's default zone; see delivery.hpp for zones and for what a local time means on a
/// daylight-saving day).
struct workflow_entry {
  entry_kind kind = entry_kind::event;
  event_match on;      ///< entry_kind::event
  std::string detail;  ///< entry_kind::date: the detail holding the date
  std::int32_t offset_days = 0;
  std::int32_t time_of_day = 0;  ///< seconds after midnight, 0 to 86399
  /// JSON "if": checked at entry time; false: the contact does not enter.
  nudge::condition condition = always();
  friend bool operator==(const workflow_entry&, const workflow_entry&) = default;
};

/// What a step does.
enum class step_kind : std::uint8_t {
  send,      ///< emit an external action (send_email, send_sms, web_push, webhook, ...)
  act,       ///< apply an internal action (tag, score, stage, owner, group, detail, status)
  wait,      ///< pause (see wait_kind)
  branch,    ///< condition true: go to `yes`, else `no`
  wait_for,  ///< wait for an event: it came -> `yes`; `timeout` passed first -> `no`
  split,     ///< random (deterministic per contact and workflow) split by percentage
  end,       ///< complete the run
};

/// How long a wait step waits.
enum class wait_kind : std::uint8_t {
  fixed,          ///< `length` after the contact reached the step
  after_message,  ///< `length` after the previous message was delivered / opened / clicked
  time_of_day,    ///< until the next local `time_of_day` on an allowed weekday (may be now)
  /// until the local midnight starting the date in detail `detail` (this year's or next) plus
  /// `length`
  date,
};

/// Which moment of the previous message an after_message wait counts from.
enum class message_moment : std::uint8_t {
  delivered,  ///< when the send step emitted it
  opened,     ///< the first `email_open` attributed to it (props workflow + step)
  clicked,    ///< the first `email_click` attributed to it
};

/// One arm of a split: `percent` of contacts go to step `next`.
struct split_path {
  std::uint32_t percent = 0;
  std::string next;
  friend bool operator==(const split_path&, const split_path&) = default;
};

/// One step. Which members matter depends on `kind`; the builder sets them.
struct workflow_step {
  std::string id;  ///< unique in the workflow, stable across versions
  step_kind kind = step_kind::end;
  /// send / wait / act: the step that follows; empty: the next one listed (or completion).
  std::string next;
  action act;  ///< send, act
  // wait
  wait_kind wait = wait_kind::fixed;
  duration length{0};  ///< duration, after_message offset, date offset (may be negative)
  /// A fixed wait of this many calendar months instead of `length` (then 0; time.hpp).
  std::int32_t length_months = 0;
  message_moment moment = message_moment::delivered;
  std::int32_t time_of_day = 0;  ///< seconds after midnight (time_of_day waits)
  std::uint8_t weekdays = 0x7f;  ///< bit 0 Monday ... bit 6 Sunday (time_of_day waits)
  std::string detail;            ///< date waits
  // branch (JSON "if")
  nudge::condition condition = always();
  std::string yes, no;  ///< branch, wait_for (and an after_message wait's timeout: `no`)
  // wait_for (and the opened / clicked after_message waits)
  event_match event;
  /// wait_for: only events whose props name this workflow and the previous send step count.
  bool from_previous_message = false;
  duration timeout{0};  ///< wait_for / opened or clicked waits: 0 waits without a limit
  // split
  std::vector<split_path> paths;
  friend bool operator==(const workflow_step&, const workflow_step&) = default;
};

/// When a contact may enter a workflow again.
enum class workflow_reentry : std::uint8_t {
  never,      ///< at most one run per contact, ever
  always,     ///< any time it is not already inside (see max_active_runs)
  cool_down,  ///< only `cool_down` after its previous entry
};

/// A definition's lifecycle.
enum class workflow_status : std::uint8_t {
  draft,     ///< validated, never runs
  active,    ///< runs
  paused,    ///< no entries; contacts hold where they are; nothing is sent
  archived,  ///< no entries; contacts inside are ended
};

/// What happens to a contact's run when a new program replaces the definition (lifecycle.hpp).
enum class version_policy : std::uint8_t {
  /// Runs keep walking the version they are on; its steps must be kept in previous_versions.
  finish_on_old,
  move_by_step_id,  ///< runs continue in the new version at the step with the same id
};

/// An older version of a workflow's steps, kept so that runs can finish on it.
struct workflow_version {
  std::uint32_t version = 1;
  std::vector<workflow_step> steps;
  friend bool operator==(const workflow_version&, const workflow_version&) = default;
};

/// A workflow.
struct workflow {
  std::string id;  ///< unique among workflows; names it in output, statistics and attribution
  std::uint32_t version = 1;
  workflow_status status = workflow_status::active;
  version_policy on_new_version = version_policy::move_by_step_id;
  workflow_entry entry;
  std::vector<workflow_step> steps;  ///< the first one is where a run starts
  /// Older versions' steps that runs may still be walking (finish_on_old, or a run whose step
  /// the current version lacks); each older than `version`. Nobody enters them.
  std::vector<workflow_version> previous_versions;
  /// Goals / exits: any of these events, or this condition becoming true when the contact is
  /// evaluated, ends the run wherever it is ("a purchase ends the abandoned-cart flow").
  std::vector<event_match> exit_on;
  condition exit_when = always();  ///< `always` here means "no exit condition"
  workflow_reentry reentry = workflow_reentry::always;
  duration cool_down{0};
  /// Runs of one contact inside at once (1: "at most one active run").
  std::uint32_t max_active_runs = 1;
  /// On completion: copy the contact to this group, and for a move remove it from `from_group`.
  std::string complete_to_group;
  std::string complete_from_group;
  /// The delivery policy of its messages, replacing the rule set's default policy (rule files
  /// merge a workflow's "delivery" fields over the file's defaults). A send step whose message
  /// the policy defers holds the run at that step until the message goes out (or is dropped);
  /// a dropped message lets the run move on as if the step had sent nothing.
  std::optional<delivery_policy> delivery;
  friend bool operator==(const workflow&, const workflow&) = default;
};

/// Builds a workflow step by step; build() returns the plain data.
class workflow_builder {
 public:
  explicit workflow_builder(std::string id) { w_.id = std::move(id); }

  workflow_builder& enter_on(event_match m, condition c = always()) {
    w_.entry.kind = entry_kind::event;
    w_.entry.on = std::move(m);
    w_.entry.condition = std::move(c);
    return *this;
  }
  /// Yearly on the date in `detail` (+ offset_days) at `time_of_day` (seconds after midnight).
  workflow_builder& enter_yearly_on(std::string detail, std::int32_t time_of_day = 0,
                                    std::int32_t offset_days = 0) {
    w_.entry.kind = entry_kind::date;
    w_.entry.detail = std::move(detail);
    w_.entry.time_of_day = time_of_day;
    w_.entry.offset_days = offset_days;
    return *this;
  }
  workflow_builder& exit_on(event_match m) {
    w_.exit_on.push_back(std::move(m));
    return *this;
  }
  workflow_builder& exit_when(condition c) {
    w_.exit_when = std::move(c);
    return *this;
  }
  workflow_builder& reenter(workflow_reentry r, duration cool_down = duration{0}) {
    w_.reentry = r;
    w_.cool_down = cool_down;
    return *this;
  }
  workflow_builder& max_active_runs(std::uint32_t n) {
    w_.max_active_runs = n;
    return *this;
  }
  workflow_builder& status(workflow_status s) {
    w_.status = s;
    return *this;
  }
  workflow_builder& version(std::uint32_t v, version_policy p = version_policy::move_by_step_id) {
    w_.version = v;
    w_.on_new_version = p;
    return *this;
  }
  /// Keeps the steps of an older version (e.g. the `build().steps` of the previous builder) so
  /// that runs on it can finish there.
  workflow_builder& keep_version(std::uint32_t v, std::vector<workflow_step> steps) {
    w_.previous_versions.push_back({v, std::move(steps)});
    return *this;
  }
  workflow_builder& on_complete_copy_to(std::string group) {
    w_.complete_to_group = std::move(group);
    w_.complete_from_group.clear();
    return *this;
  }
  workflow_builder& on_complete_move(std::string from_group, std::string to_group) {
    w_.complete_to_group = std::move(to_group);
    w_.complete_from_group = std::move(from_group);
    return *this;
  }
  /// This workflow's delivery policy (replaces the rule set's default).
  workflow_builder& deliver(delivery_policy p) {
    w_.delivery = std::move(p);
    return *this;
  }

  /// An external action (send_email("welcome") | with_param("subject", "Hi")).
  workflow_builder& send(std::string id, action a, std::string next = {}) {
    auto& s = add(std::move(id), step_kind::send);
    s.act = std::move(a);
    s.next = std::move(next);
    return *this;
  }
  /// An internal action (add_tag, add_score, set_stage, assign_owner, add_to_group, ...).
  workflow_builder& act(std::string id, action a, std::string next = {}) {
    auto& s = add(std::move(id), step_kind::act);
    s.act = std::move(a);
    s.next = std::move(next);
    return *this;
  }
  workflow_builder& wait(std::string id, duration d, std::string next = {}) {
    auto& s = add(std::move(id), step_kind::wait);
    s.length = d;
    s.next = std::move(next);
    return *this;
  }
  /// Waits `m` calendar months on the contact's calendar (same local time, day clamped).
  workflow_builder& wait(std::string id, months m, std::string next = {}) {
    auto& s = add(std::move(id), step_kind::wait);
    s.length_months = m.count;
    s.next = std::move(next);
    return *this;
  }
  /// `d` after the previous message was delivered / opened / clicked. For opened and clicked,
  /// a `timeout` (0: none) after the message leads to `on_timeout` instead.
  workflow_builder& wait_after_message(std::string id, message_moment m, duration d,
                                       duration timeout = duration{0},
                                       std::string on_timeout = {}) {
    auto& s = add(std::move(id), step_kind::wait);
    s.wait = wait_kind::after_message;
    s.moment = m;
    s.length = d;
    s.timeout = timeout;
    s.no = std::move(on_timeout);
    return *this;
  }
  /// Until the next `time_of_day` (seconds after the contact's local midnight) on a local
  /// weekday in `weekdays` (bit 0 Monday ... bit 6 Sunday); no wait if the contact arrives
  /// exactly then.
  workflow_builder& wait_until_time(std::string id, std::int32_t time_of_day,
                                    std::uint8_t weekdays = 0x7f) {
    auto& s = add(std::move(id), step_kind::wait);
    s.wait = wait_kind::time_of_day;
    s.time_of_day = time_of_day;
    s.weekdays = weekdays;
    return *this;
  }
  /// Until the date in `detail` (its next occurrence, month and day) plus `offset`.
  workflow_builder& wait_until_date(std::string id, std::string detail, duration offset) {
    auto& s = add(std::move(id), step_kind::wait);
    s.wait = wait_kind::date;
    s.detail = std::move(detail);
    s.length = offset;
    return *this;
  }
  workflow_builder& branch(std::string id, condition c, std::string yes, std::string no) {
    auto& s = add(std::move(id), step_kind::branch);
    s.condition = std::move(c);
    s.yes = std::move(yes);
    s.no = std::move(no);
    return *this;
  }
  /// Wait for an event matching `m`; `yes` when it comes, `no` after `timeout` (0: no limit).
  workflow_builder& wait_for(std::string id, event_match m, duration timeout, std::string yes,
                             std::string no, bool from_previous_message = false) {
    auto& s = add(std::move(id), step_kind::wait_for);
    s.event = std::move(m);
    s.timeout = timeout;
    s.yes = std::move(yes);
    s.no = std::move(no);
    s.from_previous_message = from_previous_message;
    return *this;
  }
  workflow_builder& split(std::string id, std::vector<split_path> paths) {
    auto& s = add(std::move(id), step_kind::split);
    s.paths = std::move(paths);
    return *this;
  }
  workflow_builder& end(std::string id) {
    add(std::move(id), step_kind::end);
    return *this;
  }

  workflow build() const { return w_; }
  operator workflow() const { return w_; }  // NOLINT: so a builder can go straight into a set

 private:
  workflow w_;
  workflow_step& add(std::string id, step_kind k) {
    workflow_step s;
    s.id = std::move(id);
    s.kind = k;
    w_.steps.push_back(std::move(s));
    return w_.steps.back();
  }
};

}  // namespace nudge
