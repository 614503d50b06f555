// A host program: one rule built in C++, one batch through the engine, the result checked.
// Exits 0 when the engine returns exactly the expected action, 1 otherwise.
#include <cstdio>
#include <string>
#include <vector>

#include <nudge/nudge.hpp>

int main() {
  nudge::rule_set rules;
  rules.rules.push_back(
      nudge::rule_builder("abandoned_cart")
          .on(nudge::on("cart"))
          .check_after(nudge::hours(2))
          .only_if(nudge::not_happened(nudge::on("purchase")).within(nudge::hours(2)))
          .then(nudge::send_email("cart_reminder")));
  nudge::engine engine{nudge::program::compile(std::move(rules))};

  const auto t0 = nudge::from_epoch(1'704'103'200);  // 2024-01-01T10:00:00Z
  const std::vector<nudge::event> events{
      {.contact = "ann", .type = "cart", .ts = t0},
      {.contact = "bob", .type = "cart", .ts = t0},
      {.contact = "bob", .type = "purchase", .ts = t0 + nudge::minutes(30)},
  };
  auto due = engine.process(events, t0 + nudge::hours(1));
  if (!due.empty()) {
    std::puts("consumer: FAIL: nothing should be due after one hour");
    return 1;
  }
  due = engine.advance(t0 + nudge::days(1));
  if (due.size() != 1 || due[0].contact != "ann" || due[0].ts != t0 + nudge::hours(2) ||
      due[0].action() != "send_email" || due[0].arg != "cart_reminder" ||
      due[0].rule != "abandoned_cart") {
    std::printf("consumer: FAIL: expected one cart_reminder for ann at %s, got %zu action(s)\n",
                nudge::format_time(t0 + nudge::hours(2)).c_str(), due.size());
    return 1;
  }
  std::printf("consumer: OK: %s %s %.*s at %s\n", due[0].contact.c_str(),
              std::string(due[0].action()).c_str(), static_cast<int>(due[0].arg.size()),
              due[0].arg.data(), nudge::format_time(due[0].ts).c_str());
  return 0;
}
