// Delivery policy helpers: channels and POSIX time zone rules (Boost.Date_Time's
// posix_time_zone). Reading the system zone database is in src/io/zones/system_zones.cpp.
#include <cctype>

#include <boost/date_time/local_time/posix_time_zone.hpp>
#include <boost/date_time/posix_time/posix_time.hpp>

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

struct zone_rules::impl {
  std::int64_t base_seconds = 0;
  std::int64_t dst_seconds = 0;
  bool has_dst = false;
  boost::local_time::posix_time_zone zone;
  explicit impl(const std::string& text) : zone(text) {}
};

namespace {

// Rewrites a POSIX TZ rule into the form Boost's posix_time_zone reads. Two differences:
// abbreviations may be quoted in POSIX ("<+03>-3") but Boost reads letters only (the
// abbreviation carries nothing we use, so they become STD / DST); and Boost takes offsets with
// the ISO sign (east of Greenwich positive), the opposite of POSIX ("CET-1" is UTC+1).
// nullopt if the text does not have the shape name offset [name [offset]] [,rule].
std::optional<std::string> to_boost_form(std::string_view posix) {
  std::string out;
  std::size_t i = 0;
  auto name = [&](std::string_view replacement) {
    if (i < posix.size() && posix[i] == '<') {
      const auto close = posix.find('>', i);
      if (close == std::string_view::npos) {
        return false;
      }
      i = close + 1;
      out += replacement;
      return true;
    }
    const std::size_t start = i;
    while (i < posix.size() && std::isalpha(static_cast<unsigned char>(posix[i])) != 0) {
      ++i;
    }
    if (i - start < 3) {
      return false;
    }
    out.append(posix.substr(start, i - start));
    return true;
  };
  auto offset = [&] {
    char sign = '-';  // unsigned POSIX offsets are west of Greenwich: negative in ISO
    if (i < posix.size() && (posix[i] == '+' || posix[i] == '-')) {
      sign = posix[i] == '+' ? '-' : '+';
      ++i;
    }
    const std::size_t start = i;
    while (i < posix.size() &&
           (std::isdigit(static_cast<unsigned char>(posix[i])) != 0 || posix[i] == ':')) {
      ++i;
    }
    if (i == start) {
      return false;
    }
    out += sign;
    out.append(posix.substr(start, i - start));
    return true;
  };
  if (!name("STD") || !offset()) {
    return std::nullopt;
  }
  if (i < posix.size() && posix[i] != ',') {
    if (!name("DST")) {
      return std::nullopt;
    }
    if (i < posix.size() && posix[i] != ',' && !offset()) {
      return std::nullopt;
    }
  }
  out.append(posix.substr(i));
  return out;
}

std::int64_t to_seconds(const boost::posix_time::time_duration& d) {
  return static_cast<std::int64_t>(d.total_seconds());
}

std::int64_t epoch_of(const boost::posix_time::ptime& t) {
  static const boost::posix_time::ptime epoch{boost::gregorian::date{1970, 1, 1}};
  return to_seconds(t - epoch);
}

}  // namespace

std::optional<zone_rules> zone_rules::parse(std::string_view posix) {
  if (posix.empty()) {
    return std::nullopt;
  }
  try {
    const auto boost_form = to_boost_form(posix);
    if (!boost_form) {
      return std::nullopt;
    }
    auto i = std::make_shared<impl>(*boost_form);
    i->base_seconds = to_seconds(i->zone.base_utc_offset());
    i->has_dst = i->zone.has_dst();
    i->dst_seconds = i->has_dst ? to_seconds(i->zone.dst_offset()) : 0;
    if (i->has_dst) {
      // Probe the rule once: Boost throws on impossible dates only when asked for them.
      (void)i->zone.dst_local_start_time(2024);
      (void)i->zone.dst_local_end_time(2024);
    }
    zone_rules z;
    z.posix_ = std::string{posix};
    z.impl_ = std::move(i);
    return z;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

duration zone_rules::utc_offset(time_point t) const {
  const impl& z = *impl_;
  if (!z.has_dst) {
    return duration{z.base_seconds};
  }
  const std::int64_t s = to_epoch(t);
  // The UTC year of t; transitions lie months away from new year in every real zone, so the
  // local year and the UTC year agree wherever it matters.
  const auto year = static_cast<unsigned short>(
      boost::posix_time::from_time_t(static_cast<std::time_t>(s)).date().year());
  const std::int64_t start = epoch_of(z.zone.dst_local_start_time(year)) - z.base_seconds;
  const std::int64_t end =
      epoch_of(z.zone.dst_local_end_time(year)) - z.base_seconds - z.dst_seconds;
  const bool in_dst = start < end ? (s >= start && s < end) : (s >= start || s < end);
  return duration{z.base_seconds + (in_dst ? z.dst_seconds : 0)};
}

}  // namespace nudge
