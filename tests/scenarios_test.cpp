// The seed scenarios from marketing practice, built with the C++ builder API, each with the exact
// actions and times it must produce.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <nudge/nudge.hpp>

#include "support.hpp"

namespace {

using test_support::ev;
using test_support::t0;

std::string line(const nudge::due_action& a) {
  return fmt::format("{} {} {} {}({})", nudge::format_time(a.ts), a.contact, a.rule, a.action(),
                     a.arg);
}

// A host: an engine over the in-memory store, with every delivered action logged as one line.
struct shop {
  explicit shop(nudge::rule_set rs)
      : program(nudge::program::compile(std::move(rs))), engine(program) {}

  void process(const std::vector<nudge::event>& events, nudge::time_point now) {
    for (const auto& a : engine.process(events, now)) {
      log.push_back(line(a));
    }
  }
  void advance(nudge::time_point now) { process({}, now); }
  nudge::contact profile(const std::string& id) { return engine.find_contact(id).value(); }
  const nudge::rule_stats& stats(std::string_view rule) {
    return engine.stats().at(program->find_rule(rule).value());
  }

  std::shared_ptr<const nudge::program> program;
  nudge::engine engine;
  std::vector<std::string> log;
};

nudge::contact with_detail(std::string id, std::string name, nudge::value v) {
  nudge::contact c{.id = std::move(id)};
  c.details[std::move(name)] = std::move(v);
  return c;
}

// FNV-1a, 64 bits, written out independently of the library's.
std::uint64_t fnv1a(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  return h;
}

using lines = std::vector<std::string>;

}  // namespace

TEST_CASE("scenario: reactivation e-mails a visitor who has not come back to the URL for 60 days",
          "[scenario][reactivation]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("reactivation")
          .on(nudge::on("page_view", "/pricing"))
          .check_after(nudge::days(60))  // "check in 2 months"
          .only_if(nudge::not_happened(nudge::on("page_view", "/pricing")).within(nudge::days(60)))
          .then(nudge::send_email("come_back")));
  shop s{rs};
  s.process({ev("ann", "page_view", t0 + nudge::hours(10), "/pricing"),
             ev("bob", "page_view", t0, "/pricing"),
             ev("cid", "page_view", t0, "/blog"),  // another URL: no trigger
             ev("dan", "page_view", t0, "/pricing"),
             ev("dan", "page_view", t0 + nudge::days(5), "/blog"),  // does not count as a return
             ev("bob", "page_view", t0 + nudge::days(30), "/pricing")},  // came back: restart
            t0 + nudge::days(30));
  CHECK(s.log.empty());
  s.advance(t0 + nudge::days(200));
  CHECK(s.log == lines{
                     "2024-03-01T00:00:00Z dan reactivation send_email(come_back)",
                     "2024-03-01T10:00:00Z ann reactivation send_email(come_back)",
                     "2024-03-31T00:00:00Z bob reactivation send_email(come_back)",
                 });
  const auto& st = s.stats("reactivation");
  CHECK(st.triggered == 4);
  CHECK(st.passed == 3);
  CHECK(st.failed == 1);  // bob's first check: he came back on day 30
  CHECK(st.emitted == 3);
  CHECK(st.first == t0);
  CHECK(st.last == t0 + nudge::days(90));
}

TEST_CASE("scenario: reactivation e-mails a customer with no PURCHASE for 60 days",
          "[scenario][reactivation]") {
  nudge::rule_set rs;
  rs.event_types = {"PURCHASE"};
  rs.rules.push_back(
      nudge::rule_builder("reactivation_purchase")
          .on(nudge::on("PURCHASE"))
          .check_after(nudge::days(60))
          .only_if(nudge::not_happened(nudge::on("PURCHASE")).within(nudge::days(60)))
          .then(nudge::send_email("winback")));
  shop s{rs};
  s.process({ev("eve", "PURCHASE", t0), ev("fay", "PURCHASE", t0), ev("gus", "PURCHASE", t0),
             ev("fay", "PURCHASE", t0 + nudge::days(59)),
             // Exactly at the first check: events at T are applied before timers due at T, so
             // this purchase is inside the window and cancels the first e-mail ...
             ev("gus", "PURCHASE", t0 + nudge::days(60))},
            t0 + nudge::days(60));
  CHECK(s.log == lines{"2024-03-01T00:00:00Z eve reactivation_purchase send_email(winback)"});
  s.advance(t0 + nudge::days(200));
  // ... and is just outside the window (t - 60d, t] of the second check at day 120.
  CHECK(s.log == lines{
                     "2024-03-01T00:00:00Z eve reactivation_purchase send_email(winback)",
                     "2024-04-29T00:00:00Z fay reactivation_purchase send_email(winback)",
                     "2024-04-30T00:00:00Z gus reactivation_purchase send_email(winback)",
                 });
  const auto& st = s.stats("reactivation_purchase");
  CHECK(st.triggered == 5);
  CHECK(st.passed == 3);
  CHECK(st.failed == 2);
}

TEST_CASE("scenario: abandoned cart via the cart URL without the thank-you page",
          "[scenario][cart]") {
  nudge::rule_set rs;
  rs.rules.push_back(
      nudge::rule_builder("cart_url")
          .on(nudge::on_prefix("page_view", "/cart"))
          .check_after(nudge::hours(1))
          .only_if(nudge::not_happened(nudge::on("page_view", "/thank-you")).since_trigger())
          .then(nudge::send_email("cart_reminder"))
          .once_per(nudge::days(1)));
  shop s{rs};
  const auto nine = t0 + nudge::hours(9);
  s.process({ev("ann", "page_view", nine, "/cart/42"),
             ev("ann", "page_view", nine + nudge::minutes(10), "/cart/43"),  // once per day
             ev("bob", "page_view", nine, "/cart"),
             ev("bob", "page_view", nine + nudge::minutes(30), "/thank-you"),  // bought
             ev("cid", "page_view", nine - nudge::hours(1), "/thank-you"),     // an earlier order
             ev("cid", "page_view", nine, "/cart"), ev("dan", "page_view", nine, "/cart"),
             ev("dan", "page_view", nine + nudge::hours(1), "/thank-you")},  // at the check
            t0 + nudge::hours(12));
  CHECK(s.log == lines{
                     "2024-01-01T10:00:00Z ann cart_url send_email(cart_reminder)",
                     "2024-01-01T10:00:00Z cid cart_url send_email(cart_reminder)",
                 });
  const auto& st = s.stats("cart_url");
  CHECK(st.triggered == 5);
  CHECK(st.passed == 2);
  CHECK(st.failed == 2);
  CHECK(st.suppressed == 1);
  CHECK(st.emitted == 2);
}

TEST_CASE("scenario: abandoned cart via a custom CART event without PURCHASE", "[scenario][cart]") {
  nudge::rule_set rs;
  rs.event_types = {"CART", "PURCHASE", "REFUND"};
  rs.rules.push_back(
      nudge::rule_builder("cart_event")
          .on(nudge::on("CART"))
          .check_after(nudge::hours(2))
          .only_if(nudge::not_happened(nudge::on("PURCHASE")).since_trigger())
          .then(nudge::send_email("cart_reminder") | nudge::with_param{"channel", "shop"}));
  shop s{rs};
  const auto noon = t0 + nudge::hours(12);
  s.process({ev("gil", "CART", noon), ev("hal", "CART", noon),
             ev("hal", "PURCHASE", noon + nudge::hours(1)),
             ev("ivy", "PURCHASE", noon - nudge::hours(1)),  // before the cart: not "since"
             ev("ivy", "CART", noon), ev("ivy", "REFUND", noon + nudge::minutes(30)),
             ev("kim", "CART", noon),
             ev("kim", "purchase", noon + nudge::hours(1))},  // the built-in type is another type
            t0 + nudge::days(1));
  CHECK(s.log == lines{
                     "2024-01-01T14:00:00Z gil cart_event send_email(cart_reminder)",
                     "2024-01-01T14:00:00Z ivy cart_event send_email(cart_reminder)",
                     "2024-01-01T14:00:00Z kim cart_event send_email(cart_reminder)",
                 });

  SECTION("the parameters reach the host as written") {
    auto again = s.engine.process({}, t0 + nudge::days(1));
    CHECK(again.empty());
    nudge::engine fresh{s.program};
    auto due = fresh.process(std::vector{ev("gil", "CART", noon)}, t0 + nudge::days(1));
    REQUIRE(due.size() == 1);
    REQUIRE(due[0].definition != nullptr);
    CHECK(due[0].definition->params == nudge::name_map<std::string>{{"channel", "shop"}});
  }
  SECTION("an undeclared custom type is refused, naming the event") {
    std::vector<nudge::event> bad{ev("jon", "CART", noon + nudge::hours(13)),
                                  ev("jon", "WISHLIST", noon + nudge::hours(14))};
    REQUIRE_THROWS_WITH(s.engine.process(bad, t0 + nudge::days(2)),
                        "event 1 (contact \"jon\"): unknown event type \"WISHLIST\"");
    CHECK_FALSE(s.engine.find_contact("jon").has_value());
  }
}

TEST_CASE("scenario: a customer tagged VIP gets a coupon and an e-mail carrying it",
          "[scenario][coupon]") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("customer_on_purchase")
                         .on(nudge::on("purchase"))
                         .then(nudge::set_status("customer")));
  rs.rules.push_back(nudge::rule_builder("vip_after_three")
                         .on(nudge::on("purchase"))
                         .only_if(nudge::happened(nudge::on("purchase")).at_least(3))
                         .then(nudge::add_tag("vip")));
  rs.rules.push_back(
      nudge::rule_builder("coupon")
          .on(nudge::on(std::string{nudge::event_types::tag_added}, "vip"))
          .only_if(nudge::status().eq("customer"))
          .then(nudge::generate_coupon("10_percent") | nudge::with_param{"value", "10%"})
          .then(nudge::send_email("your_coupon") |
                nudge::with_param{"coupon", "from generate_coupon"})
          .once());
  shop s{rs};
  s.engine.upsert_contacts(std::vector<nudge::contact>{{.id = "ann", .status = "customer"},
                                                       {.id = "bob", .status = "lead"}});
  const auto at = [](int h) { return t0 + nudge::hours(h); };
  s.process({ev("ann", "tag_added", at(1), "vip"),  // the host assigns the tag
             ev("bob", "tag_added", at(1), "vip"),  // a lead: no coupon
             ev("cid", "purchase", at(2)), ev("cid", "purchase", at(3)),
             ev("cid", "purchase", at(4)),           // third purchase: the engine tags cid VIP
             ev("cid", "purchase", at(5)),           // already VIP: no second tag_added
             ev("ann", "tag_added", at(6), "vip")},  // once per contact
            t0 + nudge::days(1));
  CHECK(s.log == lines{
                     "2024-01-01T01:00:00Z ann coupon generate_coupon(10_percent)",
                     "2024-01-01T01:00:00Z ann coupon send_email(your_coupon)",
                     "2024-01-01T04:00:00Z cid coupon generate_coupon(10_percent)",
                     "2024-01-01T04:00:00Z cid coupon send_email(your_coupon)",
                 });
  CHECK(s.profile("bob").has_tag("vip"));
  CHECK(s.profile("cid").status == "customer");
  CHECK(s.profile("cid").tags == nudge::name_map<nudge::time_point>{{"vip", at(4)}});
  const auto& st = s.stats("coupon");
  CHECK(st.triggered == 4);
  CHECK(st.passed == 2);
  CHECK(st.failed == 1);
  CHECK(st.suppressed == 1);
  CHECK(st.emitted == 4);
  CHECK(s.stats("vip_after_three").passed == 2);   // purchases 3 and 4
  CHECK(s.stats("vip_after_three").emitted == 0);  // internal, not reported
}

TEST_CASE("scenario: lead assignment picks a rep by hash of the contact id", "[scenario][lead]") {
  // Standard FNV-1a 64 test vectors, so the pick is pinned independently of the library.
  CHECK(nudge::fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(nudge::fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(nudge::fnv1a64("foobar") == 0x85944171f73967e8ULL);

  const std::vector<std::string> reps{"anna", "bartek", "celina"};
  nudge::rule_set rs;
  rs.owner_groups["reps"] = reps;
  const auto qualified =
      nudge::any({nudge::contact_detail("company").exists(), nudge::stage().eq("sql")});
  rs.rules.push_back(nudge::rule_builder("lead_by_visit")
                         .on(nudge::on("page_view", "/pricing"))
                         .only_if(qualified)
                         .then(nudge::assign_owner("reps") | nudge::notify_host{})
                         .then(nudge::notify_owner("new_lead")));
  rs.rules.push_back(nudge::rule_builder("lead_by_tag")
                         .on(nudge::on("tag_added", "hot"))
                         .only_if(qualified)
                         .then(nudge::assign_owner("reps") | nudge::notify_host{}));
  shop s{rs};
  s.engine.upsert_contacts(std::vector<nudge::contact>{
      with_detail("acme-1", "company", std::string{"Acme"}),
      {.id = "lead-7", .stage = "sql"},
      {.id = "anon-3"},
      with_detail("globex-2", "company", std::string{"Globex"}),
      with_detail("empty-co", "company", std::string{}),  // an empty text does not "exist"
  });
  const auto at = [](int h) { return t0 + nudge::hours(h); };
  s.process(
      {ev("acme-1", "page_view", at(1), "/pricing"), ev("lead-7", "tag_added", at(2), "hot"),
       ev("anon-3", "page_view", at(3), "/pricing"), ev("globex-2", "tag_added", at(4), "hot"),
       ev("empty-co", "page_view", at(5), "/pricing")},
      t0 + nudge::days(1));
  const auto pick = [&](std::string_view id) { return reps[fnv1a(id) % reps.size()]; };
  CHECK(
      s.log ==
      lines{
          fmt::format("2024-01-01T01:00:00Z acme-1 lead_by_visit assign_owner({})", pick("acme-1")),
          "2024-01-01T01:00:00Z acme-1 lead_by_visit notify_owner(new_lead)",
          fmt::format("2024-01-01T02:00:00Z lead-7 lead_by_tag assign_owner({})", pick("lead-7")),
          fmt::format("2024-01-01T04:00:00Z globex-2 lead_by_tag assign_owner({})",
                      pick("globex-2")),
      });
  for (const char* id : {"acme-1", "lead-7", "globex-2"}) {
    INFO(id);
    CHECK(s.profile(id).owner == pick(id));
  }
  CHECK(s.profile("anon-3").owner.empty());
  CHECK(s.profile("empty-co").owner.empty());
}

TEST_CASE("scenario: lead assignment spreads contacts over reps", "[scenario][lead]") {
  const std::vector<std::string> reps{"anna", "bartek", "celina"};
  nudge::rule_set rs;
  rs.owner_groups["reps"] = reps;
  auto salted = nudge::assign_owner("reps") | nudge::notify_host{};
  salted.salt = "2024-q1";
  rs.rules.push_back(nudge::rule_builder("salted").on(nudge::on("page_view")).then(salted));
  rs.rules.push_back(nudge::rule_builder("round_robin")
                         .on(nudge::on("signup"))
                         .then(nudge::assign_owner("reps", nudge::owner_pick::round_robin) |
                               nudge::notify_host{}));
  shop s{rs};

  SECTION("by hash of the contact id followed by the salt") {
    std::vector<nudge::event> visits;
    lines expected;
    std::vector<std::size_t> per_rep(reps.size());
    for (int i = 0; i < 30; ++i) {
      const auto id = fmt::format("c{:02}", i);
      visits.push_back(ev(id, "page_view", t0 + nudge::minutes(i), "/"));
      const auto k = fnv1a(id + "2024-q1") % reps.size();
      ++per_rep[k];
      expected.push_back(fmt::format("{} {} salted assign_owner({})",
                                     nudge::format_time(t0 + nudge::minutes(i)), id, reps[k]));
    }
    s.process(visits, t0 + nudge::hours(1));
    CHECK(s.log == expected);
    for (auto n : per_rep) {
      CHECK(n > 0);  // every rep gets someone from 30 contacts
    }
  }
  SECTION("round robin, in the order contacts are processed, across batches") {
    s.process(
        {ev("s1", "signup", t0), ev("s2", "signup", t0 + nudge::minutes(1)),
         ev("s3", "signup", t0 + nudge::minutes(2)), ev("s4", "signup", t0 + nudge::minutes(3)),
         ev("s5", "signup", t0 + nudge::minutes(4))},
        t0 + nudge::hours(1));
    s.process({ev("s6", "signup", t0 + nudge::hours(2))}, t0 + nudge::hours(2));
    CHECK(s.log == lines{
                       "2024-01-01T00:00:00Z s1 round_robin assign_owner(anna)",
                       "2024-01-01T00:01:00Z s2 round_robin assign_owner(bartek)",
                       "2024-01-01T00:02:00Z s3 round_robin assign_owner(celina)",
                       "2024-01-01T00:03:00Z s4 round_robin assign_owner(anna)",
                       "2024-01-01T00:04:00Z s5 round_robin assign_owner(bartek)",
                       "2024-01-01T02:00:00Z s6 round_robin assign_owner(celina)",
                   });
  }
}

TEST_CASE("scenario: education drip, each next message only if the previous was opened",
          "[scenario][education]") {
  nudge::rule_set rs;
  rs.rules.push_back(nudge::rule_builder("enter_onboarding")
                         .on(nudge::on("signup"))
                         .then(nudge::set_stage("onboarding")));
  rs.rules.push_back(
      nudge::rule_builder("education")
          .on(nudge::on("stage_entered", "onboarding"))
          .only_if(nudge::any(
              {nudge::has_tag("newsletter"), nudge::contact_detail("language").exists()}))
          .then(nudge::send_email("edu_1"))
          .then(nudge::notify_owner("edu_started"))
          .then(nudge::send_email("edu_2") | nudge::after{nudge::days(3)} |
                nudge::only_if{nudge::happened(nudge::on("email_open", "edu_1")).since_trigger()})
          .then(nudge::send_email("edu_3") | nudge::after{nudge::days(6)} |
                nudge::only_if{nudge::happened(nudge::on("email_open", "edu_2")).since_trigger()}));
  shop s{rs};
  s.engine.upsert_contacts(
      std::vector<nudge::contact>{with_detail("ann", "language", std::string{"pl"}),
                                  with_detail("dan", "language", std::string{"en"}),
                                  {.id = "cid"}});
  s.process({ev("ann", "signup", t0),  // set_stage raises stage_entered
             ev("bob", "tag_added", t0 + nudge::minutes(30), "newsletter"),
             ev("bob", "stage_entered", t0 + nudge::hours(1), "onboarding"),  // from the host
             ev("cid", "signup", t0 + nudge::hours(2)),  // neither tag nor language
             ev("dan", "signup", t0 + nudge::hours(3)),
             ev("ann", "email_open", t0 + nudge::days(1), "edu_1"),
             ev("dan", "email_open", t0 + nudge::days(1) + nudge::hours(3), "edu_1"),
             ev("ann", "email_open", t0 + nudge::days(3) + nudge::hours(1), "edu_2")},
            t0 + nudge::days(4));
  CHECK(s.log == lines{
                     "2024-01-01T00:00:00Z ann education send_email(edu_1)",
                     "2024-01-01T00:00:00Z ann education notify_owner(edu_started)",
                     "2024-01-01T01:00:00Z bob education send_email(edu_1)",
                     "2024-01-01T01:00:00Z bob education notify_owner(edu_started)",
                     "2024-01-01T03:00:00Z dan education send_email(edu_1)",
                     "2024-01-01T03:00:00Z dan education notify_owner(edu_started)",
                     "2024-01-04T00:00:00Z ann education send_email(edu_2)",
                     "2024-01-04T03:00:00Z dan education send_email(edu_2)",
                 });
  s.log.clear();
  s.advance(t0 + nudge::days(30));
  CHECK(s.log == lines{"2024-01-07T00:00:00Z ann education send_email(edu_3)"});
  CHECK(s.profile("cid").stage == "onboarding");
  const auto& st = s.stats("education");
  CHECK(st.triggered == 4);
  CHECK(st.passed == 3);
  CHECK(st.failed == 1);
  CHECK(st.emitted == 9);
}

TEST_CASE("scenario: restaurant loyalty thanks each order, rewards the fifth, misses the absent",
          "[scenario][loyalty]") {
  nudge::rule_set rs;
  rs.event_types = {"order"};
  rs.rules.push_back(nudge::rule_builder("order_thanks")
                         .on(nudge::on("order"))
                         .then(nudge::send_email("thanks_for_order")));
  rs.rules.push_back(nudge::rule_builder("fifth_order")
                         .on(nudge::on("order"))
                         .only_if(nudge::happened(nudge::on("order")).exactly(5))
                         .then(nudge::send_sms("fifth_order_reward")));
  rs.rules.push_back(nudge::rule_builder("we_miss_you")
                         .on(nudge::on("order"))
                         .check_after(nudge::days(30))
                         .only_if(nudge::not_happened(nudge::on("order")).within(nudge::days(30)))
                         .then(nudge::send_email("we_miss_you")));
  shop s{rs};
  std::vector<nudge::event> orders;
  for (int week = 0; week < 5; ++week) {
    orders.push_back(ev("ann", "order", t0 + nudge::weeks(week) + nudge::hours(19)));
  }
  orders.push_back(ev("bob", "order", t0 + nudge::days(2) + nudge::hours(12)));
  for (int h = 10; h < 16; ++h) {
    orders.push_back(ev("cid", "order", t0 + nudge::days(1) + nudge::hours(h)));
  }
  s.process(orders, t0 + nudge::days(29));
  CHECK(s.log == lines{
                     "2024-01-01T19:00:00Z ann order_thanks send_email(thanks_for_order)",
                     "2024-01-02T10:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-02T11:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-02T12:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-02T13:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-02T14:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-02T14:00:00Z cid fifth_order send_sms(fifth_order_reward)",
                     "2024-01-02T15:00:00Z cid order_thanks send_email(thanks_for_order)",
                     "2024-01-03T12:00:00Z bob order_thanks send_email(thanks_for_order)",
                     "2024-01-08T19:00:00Z ann order_thanks send_email(thanks_for_order)",
                     "2024-01-15T19:00:00Z ann order_thanks send_email(thanks_for_order)",
                     "2024-01-22T19:00:00Z ann order_thanks send_email(thanks_for_order)",
                     "2024-01-29T19:00:00Z ann order_thanks send_email(thanks_for_order)",
                     "2024-01-29T19:00:00Z ann fifth_order send_sms(fifth_order_reward)",
                 });
  s.log.clear();
  s.advance(t0 + nudge::days(90));
  CHECK(s.log == lines{
                     "2024-02-01T15:00:00Z cid we_miss_you send_email(we_miss_you)",
                     "2024-02-02T12:00:00Z bob we_miss_you send_email(we_miss_you)",
                     "2024-02-28T19:00:00Z ann we_miss_you send_email(we_miss_you)",
                 });
  CHECK(s.stats("we_miss_you").triggered == 12);
  CHECK(s.stats("we_miss_you").passed == 3);
  CHECK(s.stats("we_miss_you").failed == 9);
  CHECK(s.stats("fifth_order").passed == 2);
  CHECK(s.stats("fifth_order").failed == 10);
  CHECK(s.stats("order_thanks").emitted == 12);
}
