// The walker's workflows: entry, re-entry, steps and waits.
#include "walker.hpp"

namespace nudge::json_rules {

void walker::workflows_at(const json::value& v, rule_set& out) {
  const path& wat = workflows_at_;
  const json::array* list = array_at(v, wat);
  if (list == nullptr) {
    return;
  }
  std::unordered_map<std::string_view, std::size_t> first_with_id;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const path at = child(wat, i);
    const json::value& item = (*list)[i];
    if (const auto* o = item.if_object()) {
      if (const auto* id = o->if_contains("id"); id != nullptr && id->is_string()) {
        if (auto [it, fresh] = first_with_id.emplace(std::string_view{id->get_string()}, i);
            !fresh) {
          fail(child(at, "id"), "duplicate_id",
               fmt::format("duplicate workflow id {} (first used by /workflows/{})",
                           quoted(id->get_string()), it->second));
        }
      }
    }
    out.workflows.push_back(workflow_at(item, at));
  }
}

workflow walker::workflow_at(const json::value& v, const path& at) {
  workflow w;
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return w;
  }
  check_fields(
      *o, at,
      {"id", "description", "version", "status", "on_new_version", "entry", "exit_on", "exit_if",
       "reentry", "max_active_runs", "on_complete", "delivery", "steps", "previous_versions"});
  if (const auto* id = o->if_contains("id")) {
    if (auto s = name(*id, child(at, "id"), "a workflow id")) {
      w.id = std::move(*s);
    }
  } else {
    fail(at, "missing_field", "missing required field \"id\"");
  }
  if (const auto* d = o->if_contains("description")) {
    string(*d, child(at, "description"));
  }
  if (const auto* n = o->if_contains("version")) {
    if (auto x = count(*n, child(at, "version"), 1, std::numeric_limits<std::uint32_t>::max())) {
      w.version = static_cast<std::uint32_t>(*x);
    }
  }
  if (const auto* s = o->if_contains("status")) {
    const path sat = child(at, "status");
    if (auto t = string(*s, sat)) {
      if (*t == "draft") {
        w.status = workflow_status::draft;
      } else if (*t == "active") {
        w.status = workflow_status::active;
      } else if (*t == "paused") {
        w.status = workflow_status::paused;
      } else if (*t == "archived") {
        w.status = workflow_status::archived;
      } else {
        fail(sat, "bad_value",
             fmt::format("unknown status {} (expected \"draft\", \"active\", \"paused\" or "
                         "\"archived\")",
                         describe(*s)));
      }
    }
  }
  if (const auto* s = o->if_contains("on_new_version")) {
    const path sat = child(at, "on_new_version");
    if (auto t = string(*s, sat)) {
      if (*t == "finish_on_old") {
        w.on_new_version = version_policy::finish_on_old;
      } else if (*t == "move_by_step_id") {
        w.on_new_version = version_policy::move_by_step_id;
      } else {
        fail(sat, "bad_value",
             fmt::format("unknown version policy {} (expected \"finish_on_old\" or "
                         "\"move_by_step_id\")",
                         describe(*s)));
      }
    }
  }
  if (const auto* e = o->if_contains("entry")) {
    entry_at(*e, child(at, "entry"), w.entry);
  } else {
    fail(at, "missing_field", "missing required field \"entry\"");
  }
  if (const auto* e = o->if_contains("exit_on")) {
    const path eat = child(at, "exit_on");
    if (const json::array* a = array_at(*e, eat)) {
      for (std::size_t j = 0; j < a->size(); ++j) {
        if (auto m = trigger((*a)[j], child(eat, j))) {
          w.exit_on.push_back(std::move(*m));
        }
      }
    }
  }
  if (const auto* c = o->if_contains("exit_if")) {
    if (auto cc = condition_at(*c, child(at, "exit_if"), 1)) {
      w.exit_when = std::move(*cc);
    }
  }
  if (const auto* re = o->if_contains("reentry")) {
    workflow_reentry_at(*re, child(at, "reentry"), w);
  }
  if (const auto* n = o->if_contains("max_active_runs")) {
    if (auto x = count(*n, child(at, "max_active_runs"), 1, max_kept_count)) {
      w.max_active_runs = static_cast<std::uint32_t>(*x);
    }
  }
  if (const auto* d = o->if_contains("delivery")) {
    own_delivery_at(*d, child(at, "delivery"), w.delivery);
  }
  if (const auto* c = o->if_contains("on_complete")) {
    const path cat = child(at, "on_complete");
    if (const json::object* co = object_at(*c, cat)) {
      check_fields(*co, cat, {"copy_to_group", "move_to_group", "from_group"});
      const auto* copy = co->if_contains("copy_to_group");
      const auto* move = co->if_contains("move_to_group");
      const auto* from = co->if_contains("from_group");
      if ((copy != nullptr) == (move != nullptr)) {
        fail(cat, copy != nullptr ? "ambiguous_form" : "missing_field",
             "give exactly one of \"copy_to_group\" and \"move_to_group\"");
      } else if (copy != nullptr) {
        if (from != nullptr) {
          fail(child(cat, "from_group"), "field_not_allowed",
               "\"from_group\" goes with \"move_to_group\"", true);
        }
        if (auto g = name(*copy, child(cat, "copy_to_group"), "a group")) {
          w.complete_to_group = std::move(*g);
        }
      } else {
        if (auto g = name(*move, child(cat, "move_to_group"), "a group")) {
          w.complete_to_group = std::move(*g);
        }
        if (from == nullptr) {
          fail(cat, "missing_field",
               "missing required field \"from_group\" (a move needs the group it leaves)");
        } else if (auto g = name(*from, child(cat, "from_group"), "a group")) {
          w.complete_from_group = std::move(*g);
        }
      }
    }
  }
  if (const auto* s = o->if_contains("steps")) {
    const path sat = child(at, "steps");
    if (const json::array* a = array_at(*s, sat)) {
      if (a->empty()) {
        fail(sat, "empty_list", "a workflow needs at least one step");
      }
      for (std::size_t j = 0; j < a->size(); ++j) {
        w.steps.push_back(step_at((*a)[j], child(sat, j)));
      }
    }
  } else {
    fail(at, "missing_field", "missing required field \"steps\"");
  }
  if (const auto* pvs = o->if_contains("previous_versions")) {
    const path pat = child(at, "previous_versions");
    if (const json::array* a = array_at(*pvs, pat)) {
      for (std::size_t k = 0; k < a->size(); ++k) {
        const path vat = child(pat, k);
        const json::object* vo = object_at((*a)[k], vat);
        if (vo == nullptr) {
          continue;
        }
        check_fields(*vo, vat, {"version", "steps"});
        workflow_version pv;
        if (const auto* n = vo->if_contains("version")) {
          if (auto x =
                  count(*n, child(vat, "version"), 1, std::numeric_limits<std::uint32_t>::max())) {
            pv.version = static_cast<std::uint32_t>(*x);
          }
        } else {
          fail(vat, "missing_field", "missing required field \"version\"");
        }
        if (const auto* s = vo->if_contains("steps")) {
          const path sat = child(vat, "steps");
          if (const json::array* steps = array_at(*s, sat)) {
            if (steps->empty()) {
              fail(sat, "empty_list", "a workflow version needs at least one step");
            }
            for (std::size_t j = 0; j < steps->size(); ++j) {
              pv.steps.push_back(step_at((*steps)[j], child(sat, j)));
            }
          }
        } else {
          fail(vat, "missing_field", "missing required field \"steps\"");
        }
        w.previous_versions.push_back(std::move(pv));
      }
    }
  }
  return w;
}

void walker::entry_at(const json::value& v, const path& at, workflow_entry& e) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return;
  }
  check_fields(*o, at, {"on", "yearly", "if"});
  const auto* on = o->if_contains("on");
  const auto* yearly = o->if_contains("yearly");
  if ((on != nullptr) == (yearly != nullptr)) {
    fail(at, on != nullptr ? "ambiguous_form" : "missing_field",
         "give exactly one of \"on\" (an event) and \"yearly\" (a date detail)");
  } else if (on != nullptr) {
    e.kind = entry_kind::event;
    if (auto m = trigger(*on, child(at, "on"))) {
      e.on = std::move(*m);
    }
  } else {
    e.kind = entry_kind::date;
    const path yat = child(at, "yearly");
    if (const json::object* y = object_at(*yearly, yat)) {
      check_fields(*y, yat, {"detail", "at", "offset_days"});
      if (const auto* d = y->if_contains("detail")) {
        if (auto s = name(*d, child(yat, "detail"), "a detail name")) {
          e.detail = std::move(*s);
        }
      } else {
        fail(yat, "missing_field", "missing required field \"detail\"");
      }
      if (const auto* t = y->if_contains("at")) {
        if (auto s = clock_time(*t, child(yat, "at"))) {
          e.time_of_day = *s;
        }
      }
      if (const auto* d = y->if_contains("offset_days")) {
        if (auto n = count(*d, child(yat, "offset_days"), -366, 366)) {
          e.offset_days = static_cast<std::int32_t>(*n);
        }
      }
    }
  }
  if (const auto* c = o->if_contains("if")) {
    if (auto cc = condition_at(*c, child(at, "if"), 1)) {
      e.condition = std::move(*cc);
    }
  }
}

void walker::workflow_reentry_at(const json::value& v, const path& at, workflow& w) {
  if (const auto* s = v.if_string()) {
    if (*s == "always") {
      w.reentry = workflow_reentry::always;
    } else if (*s == "never") {
      w.reentry = workflow_reentry::never;
    } else {
      fail(at, "bad_reentry",
           fmt::format("unknown re-entry policy {} (expected \"always\", \"never\" or "
                       "{{\"cool_down\": DURATION}})",
                       describe(v)));
    }
    return;
  }
  if (const auto* o = v.if_object()) {
    check_fields(*o, at, {"cool_down"});
    if (const auto* d = o->if_contains("cool_down")) {
      if (auto x = window(*d, child(at, "cool_down"))) {
        w.reentry = workflow_reentry::cool_down;
        w.cool_down = *x;
      }
    } else {
      fail(at, "missing_field", "missing required field \"cool_down\"");
    }
    return;
  }
  wrong_type(v, at, "\"always\", \"never\" or {\"cool_down\": DURATION}");
}

// "HH:MM" or "HH:MM:SS" -> seconds after midnight.
std::optional<std::int32_t> walker::clock_time(const json::value& v, const path& at) {
  auto s = string(v, at);
  if (!s) {
    return std::nullopt;
  }
  auto two = [&](std::size_t pos) {
    return pos + 2 <= s->size() && std::isdigit(static_cast<unsigned char>((*s)[pos])) != 0 &&
                   std::isdigit(static_cast<unsigned char>((*s)[pos + 1])) != 0
               ? ((*s)[pos] - '0') * 10 + ((*s)[pos + 1] - '0')
               : -1;
  };
  const bool shape = (s->size() == 5 || (s->size() == 8 && (*s)[5] == ':')) && (*s)[2] == ':';
  const int h = two(0), m = two(3), sec = s->size() == 8 ? two(6) : 0;
  if (!shape || h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59) {
    fail(at, "bad_time",
         fmt::format("{} is not a time of day (expected \"HH:MM\" or \"HH:MM:SS\", e.g. "
                     "\"09:30\")",
                     describe(v)));
    return std::nullopt;
  }
  return h * 3600 + m * 60 + sec;
}

// A duration that may be negative: "-3d" or "3d".
std::optional<duration> walker::offset(const json::value& v, const path& at) {
  const auto* s = v.if_string();
  if (s == nullptr) {
    wrong_type(v, at, "a duration, possibly negative (e.g. \"-3d\")");
    return std::nullopt;
  }
  std::string_view text{*s};
  const bool negative = text.starts_with('-');
  if (negative) {
    text.remove_prefix(1);
  }
  auto d = parse_duration(text);
  if (!d || *d > limits_.max_delay) {
    fail(at, "bad_duration",
         fmt::format("{} is not an offset (expected e.g. \"-3d\" or \"12h\", at most {})",
                     describe(v), format_duration(limits_.max_delay)));
    return std::nullopt;
  }
  return negative ? -*d : *d;
}

std::string walker::step_ref(const json::object& o, const path& at, std::string_view field) {
  if (const auto* n = o.if_contains(field)) {
    if (auto s = name(*n, child(at, field), "a step id")) {
      return std::move(*s);
    }
  }
  return {};
}

workflow_step walker::step_at(const json::value& v, const path& at) {
  workflow_step st;
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return st;
  }
  static constexpr std::array<std::string_view, 7> forms{"send",     "act",   "wait", "if",
                                                         "wait_for", "split", "end"};
  check_fields(*o, at,
               {"id", "description", "send", "act", "wait", "if", "wait_for", "split", "end",
                "next", "yes", "no", "within", "from_previous_message"});
  if (const auto* id = o->if_contains("id")) {
    if (auto s = name(*id, child(at, "id"), "a step id")) {
      st.id = std::move(*s);
    }
  } else {
    fail(at, "missing_field", "missing required field \"id\"");
  }
  if (const auto* d = o->if_contains("description")) {
    string(*d, child(at, "description"));
  }
  std::string_view form;
  int found = 0;
  for (auto f : forms) {
    if (o->if_contains(f) != nullptr) {
      form = form.empty() ? f : form;
      ++found;
    }
  }
  if (found != 1) {
    fail(at, found == 0 ? "missing_field" : "ambiguous_form",
         fmt::format("a step needs exactly one of {}", list_words(forms)));
    return st;
  }
  // Which of next / yes / no / within / from_previous_message the form takes.
  auto allow = [&](std::initializer_list<std::string_view> ok) {
    for (auto f : {"next", "yes", "no", "within", "from_previous_message"}) {
      if (o->if_contains(f) != nullptr &&
          std::find(ok.begin(), ok.end(), std::string_view{f}) == ok.end()) {
        fail(child(at, f), "field_not_allowed",
             fmt::format("{} does not apply to a {} step", quoted(f), quoted(form)), true);
      }
    }
  };
  const json::value& body = *o->if_contains(form);
  const path bat = child(at, form);
  if (form == "send" || form == "act") {
    st.kind = form == "send" ? step_kind::send : step_kind::act;
    allow({"next"});
    if (auto a = action_at(body, bat)) {
      st.act = std::move(*a);
    }
    st.next = step_ref(*o, at, "next");
  } else if (form == "wait") {
    st.kind = step_kind::wait;
    allow({"next"});
    wait_at(body, bat, st);
    st.next = step_ref(*o, at, "next");
  } else if (form == "if") {
    st.kind = step_kind::branch;
    allow({"yes", "no"});
    if (auto c = condition_at(body, bat, 1)) {
      st.condition = std::move(*c);
    }
    st.yes = step_ref(*o, at, "yes");
    st.no = step_ref(*o, at, "no");
  } else if (form == "wait_for") {
    st.kind = step_kind::wait_for;
    allow({"yes", "no", "within", "from_previous_message"});
    if (auto m = trigger(body, bat)) {
      st.event = std::move(*m);
    }
    if (const auto* w = o->if_contains("within")) {
      if (auto d = window(*w, child(at, "within"))) {
        st.timeout = *d;
      }
    }
    if (const auto* f = o->if_contains("from_previous_message")) {
      st.from_previous_message = boolean(*f, child(at, "from_previous_message")).value_or(false);
    }
    st.yes = step_ref(*o, at, "yes");
    st.no = step_ref(*o, at, "no");
  } else if (form == "split") {
    st.kind = step_kind::split;
    allow({});
    if (const json::array* a = array_at(body, bat)) {
      for (std::size_t k = 0; k < a->size(); ++k) {
        const path pat = child(bat, k);
        const json::object* po = object_at((*a)[k], pat);
        if (po == nullptr) {
          continue;
        }
        check_fields(*po, pat, {"percent", "next"});
        split_path sp;
        if (const auto* p = po->if_contains("percent")) {
          sp.percent =
              static_cast<std::uint32_t>(count(*p, child(pat, "percent"), 0, 100).value_or(0));
        } else {
          fail(pat, "missing_field", "missing required field \"percent\"");
        }
        if (po->if_contains("next") == nullptr) {
          fail(pat, "missing_field", "missing required field \"next\"");
        }
        sp.next = step_ref(*po, pat, "next");
        st.paths.push_back(std::move(sp));
      }
    }
  } else {
    st.kind = step_kind::end;
    allow({});
    if (auto b = boolean(body, bat); b && !*b) {
      fail(bat, "bad_value", "\"end\" must be true");
    }
  }
  return st;
}

// WAIT: "1d" | {"after": "delivered"|"opened"|"clicked", "plus", "timeout", "no"}
//       | {"until_time": "09:00", "weekdays": [...]} | {"until_date": DETAIL, "offset"}
void walker::wait_at(const json::value& v, const path& at, workflow_step& st) {
  if (v.is_string()) {
    st.wait = wait_kind::fixed;
    bool ok = true;
    if (auto m = calendar(v, at, true, st.length, ok)) {
      st.length_months = m->count;
    }
    return;
  }
  const json::object* o = v.if_object();
  if (o == nullptr) {
    wrong_type(v, at, "a duration or an object with \"after\", \"until_time\" or \"until_date\"");
    return;
  }
  const auto* after = o->if_contains("after");
  const auto* time = o->if_contains("until_time");
  const auto* date = o->if_contains("until_date");
  if ((after != nullptr) + (time != nullptr) + (date != nullptr) != 1) {
    fail(at, "missing_field", "give exactly one of \"after\", \"until_time\" and \"until_date\"");
    return;
  }
  if (after != nullptr) {
    st.wait = wait_kind::after_message;
    check_fields(*o, at, {"after", "plus", "timeout", "no"});
    const path aat = child(at, "after");
    if (auto s = string(*after, aat)) {
      if (*s == "delivered") {
        st.moment = message_moment::delivered;
      } else if (*s == "opened") {
        st.moment = message_moment::opened;
      } else if (*s == "clicked") {
        st.moment = message_moment::clicked;
      } else {
        fail(aat, "bad_value",
             fmt::format("unknown moment {} (expected \"delivered\", \"opened\" or "
                         "\"clicked\")",
                         describe(*after)));
      }
    }
    if (const auto* p = o->if_contains("plus")) {
      st.length = delay(*p, child(at, "plus")).value_or(duration{0});
    }
    if (const auto* t = o->if_contains("timeout")) {
      st.timeout = window(*t, child(at, "timeout")).value_or(duration{0});
    }
    st.no = step_ref(*o, at, "no");
  } else if (time != nullptr) {
    st.wait = wait_kind::time_of_day;
    check_fields(*o, at, {"until_time", "weekdays"});
    st.time_of_day = clock_time(*time, child(at, "until_time")).value_or(0);
    if (const auto* w = o->if_contains("weekdays")) {
      st.weekdays = weekdays_at(*w, child(at, "weekdays")).value_or(st.weekdays);
    }
  } else {
    st.wait = wait_kind::date;
    check_fields(*o, at, {"until_date", "offset"});
    if (auto s = name(*date, child(at, "until_date"), "a detail name")) {
      st.detail = std::move(*s);
    }
    if (const auto* d = o->if_contains("offset")) {
      st.length = offset(*d, child(at, "offset")).value_or(duration{0});
    }
  }
}

}  // namespace nudge::json_rules
