// Evaluating a compiled condition tree for the contact at an instant.

#include "evaluator.hpp"

namespace nudge::eval {

namespace {

// -1, 0, 1, or 2 when the two cannot be ordered (different kinds).
int order(const value& a, const value& b) noexcept {
  double x, y;
  if (as_number(a, x) && as_number(b, y)) {
    return x < y ? -1 : (x > y ? 1 : 0);
  }
  if (a.index() != b.index()) {
    return 2;
  }
  return std::visit(
      [&](const auto& lhs) -> int {
        using T = std::decay_t<decltype(lhs)>;
        const auto& rhs = std::get<T>(b);
        return lhs < rhs ? -1 : (rhs < lhs ? 1 : 0);
      },
      a);
}

}  // namespace

bool compare_value(const value* v, compare_op op, const std::vector<value>& operands) {
  if (op == compare_op::exists) {
    if (v == nullptr) {
      return false;
    }
    const auto* s = std::get_if<std::string>(v);
    return s == nullptr || !s->empty();
  }
  if (v == nullptr) {
    return op == compare_op::ne;  // a missing detail differs from any value
  }
  switch (op) {
    case compare_op::eq:
      return order(*v, operands[0]) == 0;
    case compare_op::ne:
      return order(*v, operands[0]) != 0;
    case compare_op::lt:
      return order(*v, operands[0]) == -1;
    case compare_op::le: {
      int o = order(*v, operands[0]);
      return o == -1 || o == 0;
    }
    case compare_op::gt:
      return order(*v, operands[0]) == 1;
    case compare_op::ge: {
      int o = order(*v, operands[0]);
      return o == 1 || o == 0;
    }
    case compare_op::in:
      return std::any_of(operands.begin(), operands.end(),
                         [&](const value& c) { return order(*v, c) == 0; });
    case compare_op::contains:
    case compare_op::prefix: {
      const auto* s = std::get_if<std::string>(v);
      const auto* p = std::get_if<std::string>(&operands[0]);
      if (s == nullptr || p == nullptr) {
        return false;
      }
      return op == compare_op::contains ? s->find(*p) != std::string::npos
                                        : std::string_view{*s}.starts_with(*p);
    }
    case compare_op::exists:
      break;
  }
  return false;
}

auto evaluator::eval(std::uint32_t n, time_point now, time_point triggered_at) const -> bool {
  const detail::node& nd = c_.nodes[n];
  using k = condition::kind;
  switch (nd.kind) {
    case k::always:
      return true;
    case k::all:
      for (std::uint32_t i = 0; i < nd.count; ++i) {
        if (!eval(c_.children[nd.first + i], now, triggered_at)) {
          return false;
        }
      }
      return true;
    case k::any:
      for (std::uint32_t i = 0; i < nd.count; ++i) {
        if (eval(c_.children[nd.first + i], now, triggered_at)) {
          return true;
        }
      }
      return false;
    case k::negate:
      return !eval(c_.children[nd.first], now, triggered_at);
    case k::has_tag:
      return s_.contact.has_tag(nd.source->name);
    case k::in_group:
      return s_.contact.in_group(nd.source->name);
    case k::compare:
      return eval_compare(*nd.source);
    case k::happened:
      return eval_happened(*nd.source, s_.history[nd.slot], now, triggered_at);
    case k::in_segment:
      return members_[nd.slot] != 0;
    case k::in_workflow:
    case k::completed_workflow:
    case k::exited_workflow:
      return detail::workflow_state_holds(nd, s_, c_);
    case k::near:
    case k::moved:
      return detail::location_holds(*nd.source, s_);
    case k::aggregate: {
      const condition& leaf = *nd.source;
      double sum = 0;
      std::int64_t events = 0;
      const auto& recent = s_.measures[nd.slot].recent;
      for (auto it = recent.rbegin(); it != recent.rend() && expiry(leaf, it->at) > now; ++it) {
        sum += it->amount;
        ++events;
      }
      return aggregate_holds(leaf, sum, events);
    }
    case k::occurred: {
      const condition& leaf = *nd.source;
      const history_slot& h = s_.history[nd.slot];
      if (h.count == 0) {
        return false;
      }
      const time_point leaves = expiry(leaf, leaf.which == occurrence::first ? h.first : h.last);
      return leaf.is_older ? leaves <= now : leaves > now;
    }
  }
  return false;
}

auto evaluator::eval_compare(const condition& leaf) const -> bool {
  const contact& c = s_.contact;
  auto text = [&](const std::string& s) -> bool {
    if (leaf.op == compare_op::exists) {
      return !s.empty();
    }
    const value v{s};
    return compare_value(s.empty() ? nullptr : &v, leaf.op, leaf.operands);
  };
  switch (leaf.target) {
    case field::detail:
      return compare_value(c.detail(leaf.name), leaf.op, leaf.operands);
    case field::status:
      return text(c.status);
    case field::stage:
      return text(c.stage);
    case field::owner:
      return text(c.owner);
    case field::time_zone:
      return text(c.time_zone);
    case field::score: {
      const value v{c.score};
      return compare_value(&v, leaf.op, leaf.operands);
    }
  }
  return false;
}

auto evaluator::eval_happened(const condition& leaf, const history_slot& h, time_point now,
                              time_point triggered_at) const -> bool {
  std::int64_t n = 0;
  if (leaf.window == window_kind::lifetime) {
    n = h.count;
  } else {
    // History holds only events at or before `now` (later ones are not applied yet), so
    // counting the recent times still inside counts the window, capped at what is kept.
    const bool within = leaf.window == window_kind::within;
    for (auto it = h.recent.rbegin();
         it != h.recent.rend() && (within ? expiry(leaf, *it) > now : *it > triggered_at); ++it) {
      ++n;
    }
  }
  return check_count(n, leaf.count, leaf.count_bound);
}

}  // namespace nudge::eval
