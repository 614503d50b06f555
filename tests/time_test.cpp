// Instants, durations, their text forms and the Boost.Date_Time conversions.
#include <optional>
#include <stdexcept>
#include <string>

#include <boost/date_time/posix_time/posix_time.hpp>
#include <catch2/catch.hpp>

#include <nudge/time.hpp>

namespace {

std::optional<std::int64_t> epoch_of(const char* text) {
  auto t = nudge::parse_time(text);
  if (!t) {
    return std::nullopt;
  }
  return nudge::to_epoch(*t);
}

std::optional<std::int64_t> seconds_of(const char* text) {
  auto d = nudge::parse_duration(text);
  if (!d) {
    return std::nullopt;
  }
  return d->count();
}

}  // namespace

TEST_CASE("time: unit helpers count whole seconds", "[time]") {
  STATIC_REQUIRE(nudge::seconds(90).count() == 90);
  STATIC_REQUIRE(nudge::minutes(15).count() == 900);
  STATIC_REQUIRE(nudge::hours(2).count() == 7'200);
  STATIC_REQUIRE(nudge::days(60).count() == 5'184'000);
  STATIC_REQUIRE(nudge::weeks(2).count() == 1'209'600);
  STATIC_REQUIRE(nudge::to_epoch(nudge::from_epoch(1'704'067'200)) == 1'704'067'200);
  STATIC_REQUIRE(nudge::to_epoch(nudge::min_time) == -2'208'988'800);
  STATIC_REQUIRE(nudge::to_epoch(nudge::max_time) == 253'402'300'799);
  STATIC_REQUIRE(nudge::to_epoch(nudge::max_input_time) == 247'090'953'599);
}

TEST_CASE("time: the input range leaves room for the longest delay before max_time", "[time]") {
  // 9799-12-31T23:59:59Z: a timer set from an input by the longest delay, window, wait or cap
  // period program_limits allows (100 years), plus a yearly date or a send window, is still
  // storable (docs/limits.md).
  CHECK(nudge::format_time(nudge::max_input_time) == "9799-12-31T23:59:59Z");
  STATIC_REQUIRE(nudge::max_time - nudge::max_input_time == nudge::days(73'048));  // 200 years
  STATIC_REQUIRE(nudge::max_input_time + 2 * nudge::days(36'500) < nudge::max_time);
  CHECK(nudge::input_range_text ==
        nudge::format_time(nudge::min_time) + " to " + nudge::format_time(nudge::max_input_time));
  CHECK(nudge::in_input_range(nudge::min_time));
  CHECK(nudge::in_input_range(nudge::max_input_time));
  CHECK_FALSE(nudge::in_input_range(nudge::max_input_time + nudge::seconds(1)));
  CHECK_FALSE(nudge::in_input_range(nudge::min_time - nudge::seconds(1)));
}

TEST_CASE("time: parse_duration accepts one integer and one unit letter", "[time][duration]") {
  CHECK(seconds_of("90s") == 90);
  CHECK(seconds_of("15m") == 900);
  CHECK(seconds_of("2h") == 7'200);
  CHECK(seconds_of("60d") == 5'184'000);
  CHECK(seconds_of("2w") == 1'209'600);
  CHECK(seconds_of("0s") == 0);
  CHECK(seconds_of("007d") == 7 * 86'400);
}

TEST_CASE("time: parse_duration rejects everything else", "[time][duration]") {
  for (const char* bad : {"", "s", "5", "d5", "-5d", "+5d", "5x", "5D", "1.5d", " 5d", "5d ", "5 d",
                          "5dd", "9223372036854775807d", "99999999999999999999s"}) {
    INFO("input: \"" << bad << "\"");
    CHECK_FALSE(nudge::parse_duration(bad).has_value());
  }
  // The largest count of seconds that fits is accepted; one more overflows.
  CHECK(seconds_of("9223372036854775807s") == 9'223'372'036'854'775'807);
  CHECK_FALSE(nudge::parse_duration("9223372036854775808s").has_value());
  CHECK(seconds_of("153722867280912930m") == 153'722'867'280'912'930LL * 60);
  CHECK_FALSE(nudge::parse_duration("153722867280912931m").has_value());
}

TEST_CASE("time: format_duration uses the largest unit that divides exactly", "[time][duration]") {
  CHECK(nudge::format_duration(nudge::days(60)) == "60d");
  CHECK(nudge::format_duration(nudge::days(14)) == "2w");
  CHECK(nudge::format_duration(nudge::hours(25)) == "25h");
  CHECK(nudge::format_duration(nudge::minutes(90)) == "90m");
  CHECK(nudge::format_duration(nudge::seconds(90)) == "90s");
  CHECK(nudge::format_duration(nudge::seconds(0)) == "0s");
  CHECK(nudge::format_duration(nudge::seconds(-3600)) == "-1h");
}

TEST_CASE("time: durations round-trip through their text form", "[time][duration]") {
  for (std::int64_t s : {0LL, 1LL, 59LL, 60LL, 61LL, 3'599LL, 3'600LL, 86'399LL, 86'400LL,
                         604'800LL, 5'184'000LL, 31'536'000LL, 3'153'600'000LL}) {
    const auto text = nudge::format_duration(nudge::seconds(s));
    INFO(s << " s formats as " << text);
    CHECK(seconds_of(text.c_str()) == s);
  }
}

TEST_CASE("time: parse_time reads ISO-8601 with an explicit offset", "[time][parse]") {
  CHECK(epoch_of("1970-01-01T00:00:00Z") == 0);
  CHECK(epoch_of("2024-01-01T00:00:00Z") == 1'704'067'200);
  CHECK(epoch_of("2024-01-01T10:00:00Z") == 1'704'103'200);
  CHECK(epoch_of("2024-01-01T10:00:00z") == 1'704'103'200);
  CHECK(epoch_of("2024-01-01 10:00:00Z") == 1'704'103'200);
  // An offset says how far local time is ahead of UTC: 10:00+02:00 is 08:00Z.
  CHECK(epoch_of("2024-01-01T10:00:00+02:00") == 1'704'103'200 - 7'200);
  CHECK(epoch_of("2024-01-01T10:00:00-05:30") == 1'704'103'200 + 19'800);
  CHECK(epoch_of("2024-01-01T00:30:00+01:00") == 1'704'067'200 - 1'800);  // the day before in UTC
  CHECK(epoch_of("2024-02-29T12:00:00Z") == 1'709'208'000);               // leap day
  CHECK(epoch_of("1969-12-31T23:59:59Z") == -1);
  CHECK(epoch_of("1900-01-01T00:00:00Z") == -2'208'988'800);
  CHECK(epoch_of("9799-12-31T23:59:59Z") == 247'090'953'599);
}

TEST_CASE("time: parse_time reads offsets without a colon and fractions of a second",
          "[time][parse]") {
  CHECK(epoch_of("2024-01-01T10:00:00+0000") == 1'704'103'200);
  CHECK(epoch_of("2024-01-01T10:00:00+0200") == 1'704'103'200 - 7'200);
  CHECK(epoch_of("2024-01-01T10:00:00-0530") == 1'704'103'200 + 19'800);
  CHECK(epoch_of("2024-01-01T10:00:00+01") == 1'704'103'200 - 3'600);
  CHECK(epoch_of("2024-01-01t10:00:00Z") == 1'704'103'200);
  // JavaScript's toISOString(): the fraction is dropped, towards the earlier second.
  CHECK(epoch_of("2024-01-01T10:00:00.123Z") == 1'704'103'200);
  CHECK(epoch_of("2024-01-01T10:00:00.999999999Z") == 1'704'103'200);
  CHECK(epoch_of("2024-01-01T10:00:00.5+01:00") == 1'704'103'200 - 3'600);
  CHECK(epoch_of("1969-12-31T23:59:59.900Z") == -1);
  // Epoch seconds with a fraction are floored: the earlier second also before 1970.
  CHECK(epoch_of("1704103200.75") == 1'704'103'200);
  CHECK(epoch_of("1.5") == 1);
  CHECK(epoch_of("-1.5") == -2);
  CHECK(epoch_of("-1.0") == -1);
}

TEST_CASE("time: parse_time tells a time out of range from a bad text", "[time][parse]") {
  for (const char* out :
       {"9999-12-30T00:00:00Z", "9800-01-01T00:00:00Z", "9799-12-31T23:59:59-00:01",
        "10000-01-01T00:00:00Z", "123456-01-01T00:00:00Z", "1899-12-31T23:59:59Z",
        "1900-01-01T00:00:00+00:01", "0001-01-01T00:00:00Z", "247090953600", "-2208988801",
        "99999999999999999999", "253402300799.5"}) {
    INFO("input: \"" << out << "\"");
    nudge::time_error why = nudge::time_error::none;
    CHECK_FALSE(nudge::parse_time(out, &why).has_value());
    CHECK(why == nudge::time_error::out_of_range);
  }
  for (const char* bad :
       {"2024-01-01T10:00:00", "2024-01-01T10:00:00.Z", "999-01-01T00:00:00Z",
        "02024-01-01T00:00:00Z", "10000-13-01T00:00:00Z", "1.", ".5", "1.5.5", "--1"}) {
    INFO("input: \"" << bad << "\"");
    nudge::time_error why = nudge::time_error::none;
    CHECK_FALSE(nudge::parse_time(bad, &why).has_value());
    CHECK(why == nudge::time_error::syntax);
  }
  nudge::time_error why = nudge::time_error::syntax;
  CHECK(nudge::parse_time("2024-01-01T10:00:00Z", &why).has_value());
  CHECK(why == nudge::time_error::none);
}

TEST_CASE("time: parse_time reads decimal epoch seconds", "[time][parse]") {
  CHECK(epoch_of("1704103200") == 1'704'103'200);
  CHECK(epoch_of("0") == 0);
  CHECK(epoch_of("-1") == -1);
  CHECK(epoch_of("-2208988800") == -2'208'988'800);
  CHECK_FALSE(epoch_of("-2208988801").has_value());   // before 1900
  CHECK_FALSE(epoch_of("247090953600").has_value());  // after 9799 (max_input_time)
  CHECK_FALSE(epoch_of("99999999999999999999").has_value());
  CHECK_FALSE(epoch_of("--1").has_value());
  CHECK_FALSE(epoch_of("1-2").has_value());
}

TEST_CASE("time: parse_time never guesses a local time or a bad date", "[time][parse]") {
  for (const char* bad : {"",
                          "2024-01-01T10:00:00",
                          "2024-01-01T10:00",
                          "2024-01-01",
                          "2024-01-01T10:00:00+020",
                          "2024-01-01T10:00:00+2",
                          "2024-01-01T10:00:00+02:0",
                          "2024-01-01T10:00:00+24:00",
                          "2024-01-01T10:00:00+02:60",
                          "2024-01-01T10:00:00UTC",
                          "2024-01-01T10:00:00.Z",
                          "2024-01-01T10:00:00.5",
                          "2023-02-29T00:00:00Z",
                          "2024-02-30T00:00:00Z",
                          "2024-13-01T00:00:00Z",
                          "2024-00-10T00:00:00Z",
                          "2024-01-00T00:00:00Z",
                          "2024-01-01T24:00:00Z",
                          "2024-01-01T23:60:00Z",
                          "2024-01-01T23:59:60Z",
                          "2024/01/01T10:00:00Z",
                          "2024-01-01X10:00:00Z",
                          "1899-12-31T23:59:59Z",
                          "1900-01-01T00:00:00+00:01",
                          " 2024-01-01T10:00:00Z",
                          "2024-01-01T10:00:00Z ",
                          "1.5e3",
                          "abc"}) {
    INFO("input: \"" << bad << "\"");
    CHECK_FALSE(nudge::parse_time(bad).has_value());
  }
}

TEST_CASE("time: format_time writes ISO-8601 UTC", "[time][format]") {
  CHECK(nudge::format_time(nudge::from_epoch(0)) == "1970-01-01T00:00:00Z");
  CHECK(nudge::format_time(nudge::from_epoch(1'704'103'200)) == "2024-01-01T10:00:00Z");
  CHECK(nudge::format_time(nudge::from_epoch(1'709'208'000)) == "2024-02-29T12:00:00Z");
  CHECK(nudge::format_time(nudge::from_epoch(-1)) == "1969-12-31T23:59:59Z");
  CHECK(nudge::format_time(nudge::min_time) == "1900-01-01T00:00:00Z");
  CHECK(nudge::format_time(nudge::max_time) == "9999-12-31T23:59:59Z");
}

TEST_CASE("time: format_time refuses an instant outside the supported range", "[time][format]") {
  CHECK_THROWS_AS(nudge::format_time(nudge::max_time + nudge::seconds(1)), std::out_of_range);
  CHECK_THROWS_WITH(nudge::format_time(nudge::from_epoch(253'407'312'000)),
                    "nudge::format_time: 253407312000 is outside the supported range "
                    "(1900-01-01T00:00:00Z to 9999-12-31T23:59:59Z)");
  CHECK_THROWS_AS(nudge::format_time(nudge::min_time - nudge::seconds(1)), std::out_of_range);
}

TEST_CASE("time: instants round-trip through format_time and parse_time", "[time][format]") {
  for (std::int64_t s : {-2'208'988'800LL, -86'401LL, -86'400LL, -1LL, 0LL, 1LL, 951'782'400LL,
                         1'704'067'199LL, 1'704'103'200LL, 4'107'542'400LL, 247'090'953'599LL}) {
    const auto t = nudge::from_epoch(s);
    const auto text = nudge::format_time(t);
    INFO(s << " formats as " << text);
    REQUIRE(nudge::parse_time(text) == t);
    REQUIRE(nudge::parse_time(std::to_string(s)) == t);
  }
}

TEST_CASE("time: to_ptime and from_ptime convert exactly", "[time][ptime]") {
  namespace pt = boost::posix_time;
  namespace gr = boost::gregorian;
  const auto t = nudge::from_epoch(1'704'103'200);
  CHECK(nudge::to_ptime(t) == pt::ptime(gr::date(2024, 1, 1), pt::hours(10)));
  CHECK(nudge::from_ptime(pt::ptime(gr::date(2024, 1, 1), pt::hours(10))) == t);
  CHECK(nudge::to_ptime(nudge::from_epoch(-1)) ==
        pt::ptime(gr::date(1969, 12, 31), pt::hours(23) + pt::minutes(59) + pt::seconds(59)));
  for (std::int64_t s :
       {-2'208'988'800LL, -86'400LL, -1LL, 0LL, 1'704'103'200LL, 253'402'300'799LL}) {
    INFO("epoch " << s);
    const auto p = nudge::to_ptime(nudge::from_epoch(s));
    CHECK(pt::to_iso_extended_string(p) + "Z" == nudge::format_time(nudge::from_epoch(s)));
    CHECK(nudge::to_epoch(nudge::from_ptime(p)) == s);
  }
  // Sub-second parts are dropped towards the earlier second.
  CHECK(nudge::from_ptime(pt::ptime(gr::date(2024, 1, 1), pt::hours(10) + pt::milliseconds(999))) ==
        t);
}

TEST_CASE("time: from_ptime refuses special values", "[time][ptime]") {
  namespace pt = boost::posix_time;
  CHECK_THROWS_AS(nudge::from_ptime(pt::ptime(pt::not_a_date_time)), std::out_of_range);
  CHECK_THROWS_AS(nudge::from_ptime(pt::ptime(pt::pos_infin)), std::out_of_range);
  CHECK_THROWS_AS(nudge::from_ptime(pt::ptime(pt::neg_infin)), std::out_of_range);
  CHECK_THROWS_WITH(nudge::from_ptime(pt::ptime(pt::not_a_date_time)),
                    "nudge::from_ptime: not a date-time");
}
