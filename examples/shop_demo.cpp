// shop_demo: an online shop replays ten simulated weeks through the classic automation rules.
//
// The rules are built with the C++ builder API: reactivation, abandoned cart (cart page without
// the thank-you page; cart event without a purchase), VIP coupon, lead assignment, an education
// drip gated on opens, and restaurant-style loyalty (thanks per order, an SMS at the fifth).
// A deterministic pseudo-random generator (fixed seed) plays ~50 contacts: visits, carts,
// purchases, signups, tags, and opens of the e-mails the shop actually sent. Each day's events go
// to the engine with now = the end of that day; the sink prints every action as it is delivered,
// week by week; per-rule statistics close the run. Same seed, same output, on any machine.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <nudge/nudge.hpp>

namespace {

// splitmix64: tiny, fast, and the same sequence on every platform and standard library.
class random_source {
 public:
  explicit random_source(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// 0 <= result < n
  std::int64_t below(std::int64_t n) {
    return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n));
  }
  /// true with probability percent / 100
  bool chance(int percent) { return below(100) < percent; }

 private:
  std::uint64_t state_;
};

nudge::rule_set seed_rules() {
  using namespace nudge;
  rule_set rs;
  rs.owner_groups["reps"] = {"anna", "bartek", "celina", "dawid"};

  // Reactivation: visited the pricing page; two months on, not back since -> e-mail.
  rs.rules.push_back(rule_builder("reactivation")
                         .on(on("page_view", "/pricing"))
                         .check_after(days(60))
                         .only_if(not_happened(on("page_view", "/pricing")).within(days(60)))
                         .then(send_email("come_back")));
  // ... and its purchase variant.
  rs.rules.push_back(rule_builder("winback")
                         .on(on("purchase"))
                         .check_after(days(60))
                         .only_if(not_happened(on("purchase")).within(days(60)))
                         .then(send_email("winback")));
  // Abandoned cart, by URL: the cart page without the thank-you page within an hour.
  rs.rules.push_back(rule_builder("cart_page")
                         .on(on_prefix("page_view", "/cart"))
                         .check_after(hours(1))
                         .only_if(not_happened(on("page_view", "/thank-you")).since_trigger())
                         .then(send_email("cart_reminder"))
                         .once_per(days(1)));
  // Abandoned cart, by event: a cart without a purchase within a day -> a push.
  rs.rules.push_back(rule_builder("cart_event")
                         .on(on("cart"))
                         .check_after(days(1))
                         .only_if(not_happened(on("purchase")).since_trigger())
                         .then(web_push("still_in_your_cart"))
                         .at_most(1, weeks(1)));
  // A purchase makes a customer.
  rs.rules.push_back(
      rule_builder("customer_on_purchase").on(on("purchase")).then(set_status("customer")));
  // Coupon: a customer tagged VIP gets a coupon and an e-mail carrying it.
  rs.rules.push_back(rule_builder("vip_coupon")
                         .on(on("tag_added", "vip"))
                         .only_if(status().eq("customer"))
                         .then(generate_coupon("10_percent") | with_param{"value", "10%"})
                         .then(send_email("your_coupon") | with_param{"coupon", "generated"})
                         .once());
  // Lead assignment: a qualified lead on the pricing page or tagged hot gets a rep.
  const condition qualified = any({contact_detail("company").exists(), stage().eq("sql")});
  rs.rules.push_back(rule_builder("lead_by_visit")
                         .on(on("page_view", "/pricing"))
                         .only_if(all({qualified, !owner().exists()}))
                         .then(assign_owner("reps") | notify_host{})
                         .then(notify_owner("new_lead")));
  rs.rules.push_back(rule_builder("lead_by_tag")
                         .on(on("tag_added", "hot"))
                         .only_if(all({qualified, !owner().exists()}))
                         .then(assign_owner("reps") | notify_host{})
                         .then(notify_owner("hot_lead")));
  // Education: a signup enters the onboarding stage; readers get a drip, each next message only
  // if the previous one was opened.
  rs.rules.push_back(rule_builder("onboarding").on(on("signup")).then(set_stage("onboarding")));
  rs.rules.push_back(rule_builder("education")
                         .on(on("stage_entered", "onboarding"))
                         .only_if(any({has_tag("newsletter"), contact_detail("language").exists()}))
                         .then(send_email("edu_1"))
                         .then(notify_owner("edu_started"))
                         .then(send_email("edu_2") | after{days(3)} |
                               only_if{happened(on("email_open", "edu_1")).since_trigger()})
                         .then(send_email("edu_3") | after{days(6)} |
                               only_if{happened(on("email_open", "edu_2")).since_trigger()}));
  // Loyalty: thanks for every order, an SMS at the fifth, a nudge after 30 quiet days.
  rs.rules.push_back(
      rule_builder("order_thanks").on(on("purchase")).then(send_email("thanks_for_order")));
  rs.rules.push_back(rule_builder("fifth_order")
                         .on(on("purchase"))
                         .only_if(happened(on("purchase")).exactly(5))
                         .then(send_sms("fifth_order_reward")));
  rs.rules.push_back(rule_builder("we_miss_you")
                         .on(on("purchase"))
                         .check_after(days(30))
                         .only_if(not_happened(on("purchase")).within(days(30)))
                         .then(send_email("we_miss_you")));
  return rs;
}

struct shopper {
  std::string id;
  bool signed_up = false;  // pre-existing customers are; the rest sign up during the run
  int signup_day = 0;
  bool regular = false;  // buys about twice a week
  int purchases = 0;
  bool vip = false;
};

// The host's delivery: prints each action and remembers e-mails so shoppers can open them.
class printing_sink final : public nudge::sink {
 public:
  void deliver(std::span<const nudge::due_action> actions) override {
    for (const auto& a : actions) {
      const auto when = nudge::format_time(a.ts);
      fmt::print("  {} {}  {:<4} {:<21} {:<15} {}\n", when.substr(0, 10), when.substr(11, 5),
                 a.contact, a.rule, a.action(), a.arg);
      if (a.kind == nudge::action_kind::send_email) {
        sent_emails.emplace_back(a.contact, std::string{a.arg});
      }
      ++delivered;
    }
  }
  std::vector<std::pair<std::string, std::string>> sent_emails;  // today's, cleared daily
  std::size_t delivered = 0;
};

std::string day_of(nudge::time_point t) {
  return nudge::format_time(t).substr(0, 10);
}
std::string optional_time(const std::optional<nudge::time_point>& t) {
  return t ? nudge::format_time(*t).substr(0, 16) : "-";
}

}  // namespace

int main() {
  try {
    constexpr int contact_count = 50;
    constexpr int week_count = 10;
    const auto start = nudge::from_epoch(1'704'067'200);  // Monday 2024-01-01T00:00:00Z

    auto program = nudge::program::compile(seed_rules());
    printing_sink sink;
    nudge::engine engine{program, nullptr, &sink};
    random_source rng{20240101};

    // The shop's contacts: half known before the run (some customers with a company or a
    // language), half signing up during the first four weeks. Five regulars buy often.
    std::vector<shopper> shoppers;
    std::vector<nudge::contact> known;
    for (int i = 0; i < contact_count; ++i) {
      shopper s;
      s.id = fmt::format("c{:02}", i + 1);
      s.regular = i < 5;
      if (i % 2 == 0) {
        s.signed_up = true;
        nudge::contact c{.id = s.id};
        if (rng.chance(40)) {
          c.details["company"] = fmt::format("Company {}", i);
        }
        if (rng.chance(50)) {
          c.details["language"] = std::string{rng.chance(50) ? "pl" : "en"};
        }
        if (rng.chance(20)) {
          c.stage = "sql";
        }
        known.push_back(std::move(c));
      } else {
        s.signup_day = static_cast<int>(rng.below(28));
      }
      shoppers.push_back(std::move(s));
    }
    engine.upsert_contacts(known);

    std::vector<std::pair<std::string, std::string>> to_open;  // e-mails sent yesterday
    std::size_t event_count = 0;
    for (int day = 0; day < week_count * 7; ++day) {
      const auto midnight = start + nudge::days(day);
      if (day % 7 == 0) {
        fmt::print("\n== week {} ({} .. {}) ==\n", day / 7 + 1, day_of(midnight),
                   day_of(midnight + nudge::days(6)));
      }
      std::vector<nudge::event> events;
      auto add = [&](const std::string& id, const char* type, nudge::time_point at,
                     std::string key = {}) {
        events.push_back({.contact = id, .type = type, .ts = at, .key = std::move(key)});
      };
      const auto some_time = [&] { return midnight + nudge::seconds(rng.below(86'400 - 3'600)); };
      for (auto& s : shoppers) {
        if (!s.signed_up) {
          if (day != s.signup_day) {
            continue;
          }
          s.signed_up = true;
          const auto at = some_time();
          if (rng.chance(50)) {
            add(s.id, "tag_added", at, "newsletter");  // ticked the newsletter box
          }
          add(s.id, "signup", at);
        }
        if (rng.chance(25)) {
          add(s.id, "page_view", some_time(), rng.chance(50) ? "/" : "/blog");
        }
        if (rng.chance(2)) {
          add(s.id, "page_view", some_time(), "/pricing");
        }
        if (rng.chance(1)) {
          add(s.id, "tag_added", some_time(), "hot");  // a sales rep's call went well
        }
        if (rng.chance(s.regular ? 30 : 4)) {
          const auto at = some_time();
          add(s.id, "page_view", at, "/cart");
          add(s.id, "cart", at);
          if (rng.chance(s.regular ? 90 : 40)) {
            const auto paid = at + nudge::minutes(5 + rng.below(50));
            ++s.purchases;
            add(s.id, "page_view", paid, "/thank-you");
            add(s.id, "purchase", paid, fmt::format("order-{}-{}", s.id, s.purchases));
            if (s.purchases >= 3 && !s.vip) {
              s.vip = true;
              add(s.id, "tag_added", paid + nudge::minutes(1), "vip");
            }
          }
        }
      }
      for (const auto& [id, email] : to_open) {
        if (rng.chance(60)) {
          add(id, "email_open", some_time(), email);
        }
      }
      // Each contact's events must be in time order; equal times keep the order made above.
      std::stable_sort(events.begin(), events.end(),
                       [](const nudge::event& a, const nudge::event& b) { return a.ts < b.ts; });
      event_count += events.size();
      sink.sent_emails.clear();
      engine.process(events, midnight + nudge::days(1) - nudge::seconds(1));
      to_open = std::move(sink.sent_emails);
      sink.sent_emails = {};
    }

    fmt::print("\n{} events from {} contacts over {} weeks; {} actions delivered.\n\n", event_count,
               contact_count, week_count, sink.delivered);
    fmt::print("{:<21} {:>9} {:>6} {:>6} {:>10} {:>7}  {:<16} {:<16}\n", "rule", "triggered",
               "passed", "failed", "suppressed", "emitted", "first", "last");
    for (const auto& st : engine.stats()) {
      fmt::print("{:<21} {:>9} {:>6} {:>6} {:>10} {:>7}  {:<16} {:<16}\n", st.rule, st.triggered,
                 st.passed, st.failed, st.suppressed, st.emitted, optional_time(st.first),
                 optional_time(st.last));
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shop_demo: %s\n", e.what());
    return 1;
  }
}
