// nudge/action.hpp: what a rule does, as data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nudge/condition.hpp>
#include <nudge/contact.hpp>
#include <nudge/time.hpp>
#include <nudge/value.hpp>

namespace nudge {

/// Every action nudge knows. External actions are handed to the host's sink; internal ones
/// change the contact's state inside the engine (and may trigger further rules).
enum class action_kind : std::uint8_t {
  // external: delivered by the host
  send_email,
  send_sms,
  web_push,
  notify_owner,
  generate_coupon,
  webhook,
  show_popup,  ///< a pop-up on the host's site or app (channel "popup")
  send_chat,   ///< a chat message (channel "chat")
  // internal: applied by the engine
  add_tag,
  remove_tag,
  set_detail,
  set_status,
  add_score,
  set_stage,
  assign_owner,
  add_to_group,
  remove_from_group,
};

/// The action's verb as it appears in rule files and output ("send_email", "add_tag", ...).
std::string_view action_name(action_kind k) noexcept;
/// The kind named `name`, or nullopt.
std::optional<action_kind> action_from_name(std::string_view name) noexcept;
/// True for actions the host delivers.
constexpr bool is_external(action_kind k) noexcept {
  return k <= action_kind::send_chat;
}

/// How assign_owner picks a member of an owner group.
enum class owner_pick : std::uint8_t {
  /// fnv1a64(contact id bytes, then the salt's bytes) % group size: the same contact always
  /// gets the same rep, and reps share contacts evenly.
  hash,
  /// The next member after the previous pick of this rule (a counter kept by the engine, across
  /// contacts; so it depends on the order contacts are processed in).
  round_robin,
};

/// One action of a rule.
///
/// `arg` is the main parameter: the template for messages, the tag, status, stage or group for
/// internal actions, the detail name for set_detail, the owner group for assign_owner, the URL
/// for webhook. Further parameters (subject, coupon value, ...) go in `params` and reach the
/// host untouched.
struct action {
  action_kind kind = action_kind::send_email;
  std::string arg;
  value val = std::int64_t{0};  ///< set_detail: the value; add_score: the points
  owner_pick pick = owner_pick::hash;
  std::string salt;  ///< assign_owner with pick::hash
  name_map<std::string> params;
  /// Emit this long after the rule's check passed (a drip inside one rule); 0: at once.
  duration delay{0};
  /// Checked when a delayed action comes due; "since trigger" windows count from the trigger.
  std::optional<nudge::condition> condition;
  /// Internal actions: also hand a record of the change to the host (e.g. the chosen owner).
  bool notify = false;
  /// A transactional message (order confirmation, password reset): exempt from the delivery
  /// policy (consent, caps, hours) and not counted by caps (delivery.hpp).
  bool transactional = false;

  friend bool operator==(const action&, const action&) = default;
};

}  // namespace nudge
