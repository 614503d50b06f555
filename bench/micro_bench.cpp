// Micro benchmarks of the replay's hot path, on synthetic W1-like data (no files needed).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <nudge/io/read_events.hpp>
#include <nudge/nudge.hpp>

namespace {

// The W1 shop rules plus `filler` interest rules, built in C++ (the same program
// examples/w1/make_rules.py describes).
std::shared_ptr<const nudge::program> w1_program(int filler) {
  using namespace nudge;
  rule_set rs;
  rs.owner_groups["sales"] = {"anna", "bartek", "celina"};
  rs.rules.push_back(
      rule_builder("become_customer").on(on("purchase")).then(set_status("customer")));
  rs.rules.push_back(rule_builder("winback")
                         .on(on("purchase"))
                         .check_after(days(60))
                         .only_if(not_happened(on("purchase")).within(days(60)))
                         .then(send_email("winback")));
  rs.rules.push_back(rule_builder("abandoned_cart")
                         .on(on("cart"))
                         .check_after(hours(1))
                         .only_if(not_happened(on("purchase")).within(hours(1)))
                         .at_most(1, hours(24))
                         .then(send_email("cart_reminder")));
  rs.rules.push_back(rule_builder("coupon")
                         .on(on("tag_added", "ZAKUPY-W-SEKCJI-MESKIEJ"))
                         .only_if(status().eq(std::string{"customer"}))
                         .then(generate_coupon("coupon"))
                         .then(send_email("coupon")));
  rs.rules.push_back(rule_builder("lead_assign")
                         .on(on("page_view", "/pricing"))
                         .only_if(all({contact_detail("company").exists(), !owner().exists()}))
                         .then(assign_owner("sales") | notify_host{}));
  rs.rules.push_back(rule_builder("loyalty")
                         .on(on("purchase"))
                         .only_if(happened(on("purchase")).exactly(5))
                         .then(send_sms("loyalty")));
  rs.rules.push_back(rule_builder("welcome")
                         .on(on("signup"))
                         .then(send_email("welcome_1"))
                         .then(send_email("welcome_2") | after{days(2)})
                         .then(send_email("welcome_3") | after{days(14)} |
                               only_if{happened(on("email_open")).since_trigger()}));
  for (int i = 0; i < filler; ++i) {
    rs.rules.push_back(rule_builder(fmt::format("interest_{}", i))
                           .on(on("page_view", fmt::format("/p/{}", i)))
                           .once()
                           .then(web_push(fmt::format("p{}", i))));
  }
  return program::compile(std::move(rs));
}

// W1-like events: mostly product page views, some carts and purchases, sorted by ts.
std::string synthetic_events_csv(std::size_t n, std::size_t contacts) {
  std::mt19937_64 rng{42};
  std::string text = "ts,contact,type,key,value\n";
  std::int64_t ts = 1704067200;
  for (std::size_t i = 0; i < n; ++i) {
    ts += static_cast<std::int64_t>(rng() % 16);
    const auto c = rng() % contacts + 1;
    const auto r = rng() % 100;
    if (r < 83) {
      text += fmt::format("{},c{:07},page_view,/p/{},\n", ts, c, rng() % 200);
    } else if (r < 91) {
      text += fmt::format("{},c{:07},cart,sku{},\n", ts, c, rng() % 200);
    } else if (r < 94) {
      text += fmt::format("{},c{:07},purchase,o{:08},{}.{:02}\n", ts, c, i, 5 + rng() % 300,
                          rng() % 100);
    } else if (r < 97) {
      text += fmt::format("{},c{:07},email_open,newsletter_20240102,\n", ts, c);
    } else if (r < 99) {
      text += fmt::format("{},c{:07},tag_added,ZAKUPY-W-SEKCJI-MESKIEJ,\n", ts, c);
    } else {
      text += fmt::format("{},c{:07},signup,,\n", ts, c);
    }
  }
  return text;
}

std::vector<nudge::event> parse_all(const std::string& text) {
  nudge::event_reader reader{text, nudge::file_format::csv, "events.csv"};
  std::vector<nudge::event> all, batch;
  while (reader.read(batch, 1 << 16)) {
    all.insert(all.end(), batch.begin(), batch.end());
  }
  return all;
}

void BM_ParseEventsCsv(benchmark::State& state) {
  const std::string text = synthetic_events_csv(200'000, 20'000);
  auto program = w1_program(100);
  std::vector<nudge::event> batch;
  batch.reserve(1 << 16);
  for (auto _ : state) {
    nudge::event_reader reader{
        text, nudge::file_format::csv, "events.csv", {.program = program.get()}};
    std::size_t n = 0;
    while (reader.read(batch, 1 << 16)) {
      n += batch.size();
    }
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * 200'000);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}
BENCHMARK(BM_ParseEventsCsv)->Unit(benchmark::kMillisecond);

// One page view of a product page through evaluate(): trigger lookup, the once-policy and one
// emitted push. Arg: K filler rules (indexing means K should not matter).
void BM_EvaluatePageView(benchmark::State& state) {
  auto program = w1_program(static_cast<int>(state.range(0)));
  const nudge::contact_state fresh = program->new_state({.id = "c0000042"});
  const nudge::event e{.contact = "c0000042",
                       .type = "page_view",
                       .ts = nudge::from_epoch(1704067200),
                       .key = "/p/7"};
  for (auto _ : state) {
    auto out = nudge::evaluate(*program, fresh, std::span<const nudge::event>{&e, 1}, e.ts);
    benchmark::DoNotOptimize(out.actions.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}
BENCHMARK(BM_EvaluatePageView)->Arg(100)->Arg(1000);

// engine.process over 200,000 events of 20,000 contacts (events in memory). Arg: K.
void BM_EngineProcess(benchmark::State& state) {
  auto program = w1_program(static_cast<int>(state.range(0)));
  const auto events = parse_all(synthetic_events_csv(200'000, 20'000));
  const auto until = events.back().ts + program->longest_delay();
  for (auto _ : state) {
    state.PauseTiming();
    auto engine = std::make_unique<nudge::engine>(program);
    state.ResumeTiming();
    auto due = engine->process(events, until);
    benchmark::DoNotOptimize(due.data());
    state.PauseTiming();
    engine.reset();
    due = {};
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * events.size()));
}
BENCHMARK(BM_EngineProcess)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond);

}  // namespace
