// Names and text of values, event-type and action-name tables, error messages.
#include <array>
#include <utility>

#include <fmt/format.h>

#include <nudge/action.hpp>
#include <nudge/error.hpp>
#include <nudge/event.hpp>
#include <nudge/value.hpp>

namespace nudge {

const char* kind_name(const value& v) noexcept {
  static constexpr std::array<const char*, 5> names{"string", "integer", "decimal", "bool", "time"};
  return names[v.index()];
}

std::string to_string(const value& v) {
  struct visitor {
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(std::int64_t i) const { return fmt::format("{}", i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(time_point t) const { return format_time(t); }
  };
  return std::visit(visitor{}, v);
}

bool is_builtin_event_type(std::string_view type) noexcept {
  namespace et = event_types;
  for (auto t : {et::page_view,      et::cart,           et::purchase,       et::email_open,
                 et::email_click,    et::signup,         et::tag_added,      et::tag_removed,
                 et::stage_entered,  et::status_changed, et::owner_assigned, et::group_added,
                 et::group_removed,  et::detail_set,     et::score_changed,  et::segment_entered,
                 et::segment_exited, et::score_crossed,  et::identify,       et::area_entered,
                 et::area_exited}) {
    if (t == type) {
      return true;
    }
  }
  return false;
}

namespace {
constexpr std::array<std::pair<action_kind, std::string_view>, 17> action_names{{
    {action_kind::send_email, "send_email"},
    {action_kind::send_sms, "send_sms"},
    {action_kind::web_push, "web_push"},
    {action_kind::notify_owner, "notify_owner"},
    {action_kind::generate_coupon, "generate_coupon"},
    {action_kind::webhook, "webhook"},
    {action_kind::show_popup, "show_popup"},
    {action_kind::send_chat, "send_chat"},
    {action_kind::add_tag, "add_tag"},
    {action_kind::remove_tag, "remove_tag"},
    {action_kind::set_detail, "set_detail"},
    {action_kind::set_status, "set_status"},
    {action_kind::add_score, "add_score"},
    {action_kind::set_stage, "set_stage"},
    {action_kind::assign_owner, "assign_owner"},
    {action_kind::add_to_group, "add_to_group"},
    {action_kind::remove_from_group, "remove_from_group"},
}};
}  // namespace

std::string_view action_name(action_kind k) noexcept {
  return action_names[static_cast<std::size_t>(k)].second;
}

std::optional<action_kind> action_from_name(std::string_view name) noexcept {
  for (auto [k, n] : action_names) {
    if (n == name) {
      return k;
    }
  }
  return std::nullopt;
}

std::string diagnostic::to_string() const {
  std::string out;
  if (!file.empty()) {
    out += file;
    out += ':';
  }
  if (line != 0) {
    out += fmt::format("{}:{}:", line, column);
  }
  if (!out.empty()) {
    out += ' ';
  }
  if (!json_pointer.empty()) {
    out += json_pointer;
    out += ": ";
  }
  out += message;
  return out;
}

namespace {
std::string join_diagnostics(const std::vector<diagnostic>& ds) {
  std::string out;
  for (const auto& d : ds) {
    if (!out.empty()) {
      out += '\n';
    }
    out += d.to_string();
  }
  return out;
}
std::vector<diagnostic> non_empty(std::vector<diagnostic> ds) {
  if (ds.empty()) {
    diagnostic d;
    d.code = "invalid";
    d.message = "invalid rule set";
    ds.push_back(std::move(d));
  }
  return ds;
}
std::string join_chain(const std::vector<std::string>& chain) {
  std::string out;
  for (const auto& r : chain) {
    if (!out.empty()) {
      out += " -> ";
    }
    out += r;
  }
  return out;
}
}  // namespace

rule_error::rule_error(std::vector<diagnostic> diagnostics)
    : std::runtime_error(join_diagnostics(non_empty(diagnostics))),
      diagnostics_(non_empty(std::move(diagnostics))) {}

input_error::input_error(std::string contact, std::size_t event_index, const std::string& reason)
    : std::runtime_error(
          fmt::format("event {} (contact \"{}\"): {}", event_index, contact, reason)),
      contact_(std::move(contact)),
      event_index_(event_index),
      reason_(reason) {}

rule_cycle_error::rule_cycle_error(std::string contact, std::vector<std::string> chain)
    : std::runtime_error(fmt::format(
          "contact \"{}\": internal actions trigger rules past the depth limit; rule cycle: {}",
          contact, join_chain(chain))),
      contact_(std::move(contact)),
      chain_(std::move(chain)) {}

rule_cycle_error::rule_cycle_error(const std::string& what, std::string contact,
                                   std::vector<std::string> chain)
    : std::runtime_error(what), contact_(std::move(contact)), chain_(std::move(chain)) {}

rule_cycle_error rule_cycle_error::pending_timers(std::string contact,
                                                  std::vector<std::string> rules,
                                                  const std::vector<std::size_t>& counts,
                                                  std::size_t limit) {
  std::string held;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    held +=
        fmt::format("{}{} ({})", i == 0 ? "" : ", ", rules[i], i < counts.size() ? counts[i] : 0);
  }
  return {fmt::format("contact \"{}\": more than {} pending timers "
                      "(program_limits::max_pending_timers); rules holding them: {}; a rule that "
                      "re-triggers itself through a delay schedules timers without end",
                      contact, limit, held),
          std::move(contact), std::move(rules)};
}

rule_cycle_error rule_cycle_error::cascade_events(std::string contact,
                                                  std::vector<std::string> rules,
                                                  const std::vector<std::size_t>& counts,
                                                  std::size_t limit) {
  std::string raising;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    raising +=
        fmt::format("{}{} ({})", i == 0 ? "" : ", ", rules[i], i < counts.size() ? counts[i] : 0);
  }
  return {fmt::format("contact \"{}\": internal actions raised more than {} events in one cascade "
                      "(program_limits::max_cascade_events); rules raising the queued events: {}; "
                      "rules that answer an event by raising it again fan out without end",
                      contact, limit, raising),
          std::move(contact), std::move(rules)};
}

callback_error::callback_error(std::string callback, std::string contact,
                               const std::string& message)
    : std::runtime_error(contact.empty() ? fmt::format("{} failed: {}", callback, message)
                                         : fmt::format("{} failed for contact \"{}\": {}", callback,
                                                       contact, message)),
      callback_(std::move(callback)),
      contact_(std::move(contact)) {}

}  // namespace nudge
