// The walker's scoring section.
#include "walker.hpp"

namespace nudge::json_rules {

void walker::scoring_at(const json::value& v, nudge::scoring& out) {
  const path sat = child(root_at, "scoring");
  const json::object* o = object_at(v, sat);
  if (o == nullptr) {
    return;
  }
  check_fields(*o, sat, {"rules", "decay", "thresholds"});
  if (const auto* r = o->if_contains("rules")) {
    const path rat = child(sat, "rules");
    if (const json::array* list = array_at(*r, rat)) {
      for (std::size_t i = 0; i < list->size(); ++i) {
        if (auto sr = score_rule_at((*list)[i], child(rat, i))) {
          out.rules.push_back(std::move(*sr));
        }
      }
    }
  }
  if (const auto* d = o->if_contains("decay")) {
    const path dat = child(sat, "decay");
    if (const json::object* dobj = object_at(*d, dat)) {
      check_fields(*dobj, dat, {"every", "factor", "subtract"});
      score_decay decay;
      bool ok = true;
      if (const auto* e = dobj->if_contains("every")) {
        auto w = window(*e, child(dat, "every"));
        ok = ok && w.has_value();
        decay.every = w.value_or(duration{0});
      } else {
        fail(dat, "missing_field", "missing required field \"every\"");
        ok = false;
      }
      if (const auto* f = dobj->if_contains("factor")) {
        auto x = number(*f, child(dat, "factor"));
        if (x && (*x < 0 || *x > 1)) {
          fail(child(dat, "factor"), "bad_value", "a decay factor must be between 0 and 1");
          x.reset();
        }
        ok = ok && x.has_value();
        decay.factor = x.value_or(1);
      }
      if (const auto* sub = dobj->if_contains("subtract")) {
        auto x = number(*sub, child(dat, "subtract"));
        if (x && *x < 0) {
          fail(child(dat, "subtract"), "bad_value", "decay subtracts a number of 0 or more");
          x.reset();
        }
        ok = ok && x.has_value();
        decay.subtract = x.value_or(0);
      }
      if (ok && !dobj->contains("factor") && !dobj->contains("subtract")) {
        fail(dat, "missing_field", "a decay needs \"factor\", \"subtract\" or both");
        ok = false;
      }
      if (ok) {
        out.decay = decay;
      }
    }
  }
  if (const auto* t = o->if_contains("thresholds")) {
    const path tat = child(sat, "thresholds");
    if (const json::array* list = array_at(*t, tat)) {
      std::unordered_map<std::string_view, std::size_t> first_with_name;
      for (std::size_t i = 0; i < list->size(); ++i) {
        const path at = child(tat, i);
        const json::object* th = object_at((*list)[i], at);
        if (th == nullptr) {
          continue;
        }
        check_fields(*th, at, {"name", "at"});
        score_threshold st;
        bool ok = true;
        if (const auto* n = th->if_contains("name")) {
          auto nm = name(*n, child(at, "name"), "a threshold name");
          ok = nm.has_value();
          if (nm) {
            st.name = std::move(*nm);
            if (auto [it, fresh] = first_with_name.emplace(std::string_view{n->get_string()}, i);
                !fresh) {
              fail(child(at, "name"), "duplicate_name",
                   fmt::format("duplicate threshold {} (first used by /scoring/thresholds/{})",
                               quoted(st.name), it->second));
              ok = false;
            }
          }
        } else {
          fail(at, "missing_field", "missing required field \"name\"");
          ok = false;
        }
        if (const auto* a = th->if_contains("at")) {
          auto x = number(*a, child(at, "at"));
          ok = ok && x.has_value();
          st.at = x.value_or(0);
        } else {
          fail(at, "missing_field", "missing required field \"at\"");
          ok = false;
        }
        if (ok) {
          out.thresholds.push_back(std::move(st));
        }
      }
    }
  }
}

std::optional<score_rule> walker::score_rule_at(const json::value& v, const path& at) {
  const json::object* o = object_at(v, at);
  if (o == nullptr) {
    return std::nullopt;
  }
  check_fields(*o, at, {"id", "description", "on", "points", "cap"});
  score_rule r;
  bool ok = true;
  if (const auto* id = o->if_contains("id")) {
    auto s = name(*id, child(at, "id"), "a score rule id");
    ok = s.has_value();
    r.id = s.value_or("");
  } else {
    fail(at, "missing_field", "missing required field \"id\"");
    ok = false;
  }
  if (const auto* d = o->if_contains("description")) {
    string(*d, child(at, "description"));
  }
  if (const auto* on = o->if_contains("on")) {
    auto m = trigger(*on, child(at, "on"));
    ok = ok && m.has_value();
    if (m) {
      r.on = std::move(*m);
    }
  } else {
    fail(at, "missing_field", "missing required field \"on\"");
    ok = false;
  }
  if (const auto* p = o->if_contains("points")) {
    auto x = number(*p, child(at, "points"));
    ok = ok && x.has_value();
    r.points = x.value_or(0);
  } else {
    fail(at, "missing_field", "missing required field \"points\"");
    ok = false;
  }
  if (const auto* c = o->if_contains("cap")) {
    const path cat = child(at, "cap");
    if (const json::object* co = object_at(*c, cat)) {
      check_fields(*co, cat, {"max", "per"});
      score_cap cap;
      if (const auto* m = co->if_contains("max")) {
        auto x = number(*m, child(cat, "max"));
        if (x && *x <= 0) {
          fail(child(cat, "max"), "bad_cap", "a score cap must be more than 0 points");
          x.reset();
        }
        ok = ok && x.has_value();
        cap.max_points = x.value_or(0);
      } else {
        fail(cat, "missing_field", "missing required field \"max\"");
        ok = false;
      }
      if (const auto* p = co->if_contains("per")) {
        auto w = window(*p, child(cat, "per"));
        ok = ok && w.has_value();
        cap.per = w.value_or(duration{0});
      } else {
        fail(cat, "missing_field", "missing required field \"per\"");
        ok = false;
      }
      r.cap = cap;
    } else {
      ok = false;
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  return r;
}

}  // namespace nudge::json_rules
