// The walker's actions.
#include "walker.hpp"

namespace nudge::json_rules {

std::optional<action> walker::action_at(const json::value& v, const path& at) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  static constexpr std::array<std::string_view, 10> all_fields{
      "do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt", "transactional"};
  const json::value* verb = o->if_contains("do");
  if (verb == nullptr) {
    check_fields(
        *o, at,
        {"do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt", "transactional"});
    fail(at, "missing_field", "missing required field \"do\"");
    return std::nullopt;
  }
  auto verb_name = string(*verb, child(at, "do"));
  if (!verb_name) {
    return std::nullopt;
  }
  auto kind = action_from_name(*verb_name);
  if (!kind) {
    auto hint = closest(*verb_name, verbs);
    fail(child(at, "do"), "unknown_action",
         hint ? fmt::format("unknown action {} (did you mean {}?)", quoted(*verb_name),
                            quoted(*hint))
              : fmt::format("unknown action {} (expected {})", quoted(*verb_name),
                            list_words(verbs)));
    check_fields(
        *o, at,
        {"do", "arg", "delay", "if", "params", "notify", "value", "pick", "salt", "transactional"});
    return std::nullopt;
  }
  const action_kind k = *kind;
  // Which optional fields apply to this verb.
  auto applies = [k](std::string_view f) {
    if (f == "do" || f == "delay" || f == "if" || f == "params") {
      return true;
    }
    if (f == "arg") {
      return k != action_kind::add_score;
    }
    if (f == "notify") {
      return !is_external(k);
    }
    if (f == "value") {
      return k == action_kind::set_detail || k == action_kind::add_score;
    }
    if (f == "pick" || f == "salt") {
      return k == action_kind::assign_owner;
    }
    if (f == "transactional") {
      return channel_of(k).has_value();
    }
    return false;
  };
  bool ok = true;
  for (const auto& m : *o) {
    const std::string_view f{m.key()};
    if (std::find(all_fields.begin(), all_fields.end(), f) == all_fields.end()) {
      std::vector<std::string_view> fitting;
      for (auto a : all_fields) {
        if (applies(a)) {
          fitting.push_back(a);
        }
      }
      unknown_field(f, at, fitting);
      ok = false;
    } else if (!applies(f)) {
      fail(child(at, f), "field_not_allowed",
           fmt::format("{} does not apply to {}", quoted(f), *verb_name), true);
      ok = false;
    }
  }
  action a;
  a.kind = k;
  if (k != action_kind::add_score) {
    if (const auto* arg = o->if_contains("arg")) {
      // The description is only needed for a message: check the common case first.
      auto s = arg->is_string() && !arg->get_string().empty()
                   ? std::optional<std::string>{std::string{arg->get_string()}}
                   : name(*arg, child(at, "arg"), fmt::format("the argument of {}", *verb_name));
      ok = ok && s.has_value();
      a.arg = s.value_or("");
      if (s && k == action_kind::assign_owner && groups_ != nullptr &&
          groups_->find(*s) == groups_->end()) {
        unknown_group(*s, child(at, "arg"));
        ok = false;
      } else if (s && k == action_kind::assign_owner && groups_ == nullptr) {
        unknown_group(*s, child(at, "arg"));
        ok = false;
      }
    } else {
      fail(at, "missing_field",
           fmt::format("missing required field \"arg\" ({} needs {})", *verb_name, arg_meaning(k)));
      ok = false;
    }
  }
  if (k == action_kind::set_detail || k == action_kind::add_score) {
    if (const auto* x = o->if_contains("value")) {
      const path vat = child(at, "value");
      if (k == action_kind::add_score) {
        if (x->is_number() && std::isfinite(x->to_number<double>())) {
          a.val = x->to_number<double>();
        } else if (x->is_number()) {
          fail(vat, "bad_value", "the number is out of range for a decimal");
          ok = false;
        } else {
          wrong_type(*x, vat, "a number of points");
          ok = false;
        }
      } else {
        auto y = val(*x, vat);
        ok = ok && y.has_value();
        if (y) {
          a.val = std::move(*y);
        }
      }
    } else {
      fail(at, "missing_field",
           fmt::format("missing required field \"value\" ({} needs {})", *verb_name,
                       k == action_kind::add_score ? "the points" : "the value to set"));
      ok = false;
    }
  }
  if (const auto* d = o->if_contains("delay")) {
    auto dd = delay(*d, child(at, "delay"));
    ok = ok && dd.has_value();
    a.delay = dd.value_or(duration{0});
  }
  if (const auto* c = o->if_contains("if")) {
    auto cc = condition_at(*c, child(at, "if"), 1);
    ok = ok && cc.has_value();
    if (cc) {
      a.condition = std::move(*cc);
    }
  }
  if (const auto* p = o->if_contains("params"); p != nullptr && applies("params")) {
    const path pat = child(at, "params");
    if (const json::object* po = object_at(*p, pat)) {
      for (const auto& m : *po) {
        if (auto s = string(m.value(), child(pat, m.key()))) {
          a.params[std::string{m.key()}] = std::move(*s);
        } else {
          ok = false;
        }
      }
    } else {
      ok = false;
    }
  }
  if (const auto* n = o->if_contains("transactional"); n != nullptr && applies("transactional")) {
    auto b = boolean(*n, child(at, "transactional"));
    ok = ok && b.has_value();
    a.transactional = b.value_or(false);
  }
  if (const auto* n = o->if_contains("notify"); n != nullptr && applies("notify")) {
    auto b = boolean(*n, child(at, "notify"));
    ok = ok && b.has_value();
    a.notify = b.value_or(false);
  }
  if (k == action_kind::assign_owner) {
    if (const auto* p = o->if_contains("pick")) {
      const path pat = child(at, "pick");
      if (auto s = string(*p, pat)) {
        if (*s == "hash") {
          a.pick = owner_pick::hash;
        } else if (*s == "round_robin") {
          a.pick = owner_pick::round_robin;
        } else {
          fail(pat, "bad_value",
               fmt::format("unknown pick {} (expected \"hash\" or \"round_robin\")", describe(*p)));
          ok = false;
        }
      } else {
        ok = false;
      }
    }
    if (const auto* s = o->if_contains("salt")) {
      auto ss = string(*s, child(at, "salt"));
      ok = ok && ss.has_value();
      a.salt = ss.value_or("");
      if (ss && a.pick == owner_pick::round_robin) {
        fail(child(at, "salt"), "field_not_allowed", "\"salt\" applies to the \"hash\" pick only",
             true);
        ok = false;
      }
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return a;
}

const char* walker::arg_meaning(action_kind k) {
  switch (k) {
    case action_kind::send_email:
    case action_kind::send_sms:
    case action_kind::web_push:
    case action_kind::show_popup:
    case action_kind::send_chat:
    case action_kind::notify_owner:
      return "a template";
    case action_kind::generate_coupon:
      return "a coupon kind";
    case action_kind::webhook:
      return "a URL";
    case action_kind::add_tag:
    case action_kind::remove_tag:
      return "a tag";
    case action_kind::set_detail:
      return "a detail name";
    case action_kind::set_status:
      return "a status";
    case action_kind::set_stage:
      return "a stage";
    case action_kind::assign_owner:
      return "an owner group";
    case action_kind::add_to_group:
    case action_kind::remove_from_group:
      return "a group";
    case action_kind::add_score:
      break;
  }
  return "an argument";
}

}  // namespace nudge::json_rules
