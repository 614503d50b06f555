// Delivery policy helpers: channels. Time zone rules are in src/core/zones.cpp.
#include <nudge/delivery.hpp>

namespace nudge {

std::string_view channel_name(channel c) noexcept {
  switch (c) {
    case channel::email:
      return "email";
    case channel::sms:
      return "sms";
    case channel::web_push:
      return "web_push";
    case channel::popup:
      return "popup";
    case channel::chat:
      return "chat";
  }
  return "unknown";
}

std::optional<channel> channel_from_name(std::string_view name) noexcept {
  for (std::size_t i = 0; i < channel_count; ++i) {
    const auto c = static_cast<channel>(i);
    if (channel_name(c) == name) {
      return c;
    }
  }
  return std::nullopt;
}

std::optional<channel> channel_of(action_kind k) noexcept {
  switch (k) {
    case action_kind::send_email:
      return channel::email;
    case action_kind::send_sms:
      return channel::sms;
    case action_kind::web_push:
      return channel::web_push;
    case action_kind::show_popup:
      return channel::popup;
    case action_kind::send_chat:
      return channel::chat;
    default:
      return std::nullopt;
  }
}

}  // namespace nudge
