// Cron schedules: parsing, and next slots in UTC, fixed zones and New York across DST changes.
#include <gtest/gtest.h>

#include <vector>

#include "core/cron.hpp"

using pw::core::cron::CronError;
using pw::core::cron::kNoSlot;
using pw::core::cron::next_slot;
using pw::core::cron::OffsetFn;
using pw::core::cron::parse;
using pw::core::cron::Spec;

namespace {

// Written independently of cron.cpp (which only converts the other way), to check it.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

int64_t utc(int64_t y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

int weekday(int64_t days) { return static_cast<int>(((days + 4) % 7 + 7) % 7); }  // 0 = Sunday

const OffsetFn kUtc = [](int64_t) { return 0; };
const OffsetFn kKolkata = [](int64_t) { return 5 * 3600 + 30 * 60; };

// America/New_York since 2007: EDT from the second Sunday of March, 02:00 EST (07:00 UTC), to the first Sunday
// of November, 02:00 EDT (06:00 UTC).
int ny_offset(int64_t t) {
    int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
    int64_t y = 1970 + days / 366;  // then step up to the year holding `days`
    while (days_from_civil(y + 1, 1, 1) <= days) y++;
    int64_t mar1 = days_from_civil(y, 3, 1), nov1 = days_from_civil(y, 11, 1);
    int64_t second_sunday_mar = mar1 + (7 - weekday(mar1)) % 7 + 7;
    int64_t first_sunday_nov = nov1 + (7 - weekday(nov1)) % 7;
    int64_t start = second_sunday_mar * 86400 + 7 * 3600, end = first_sunday_nov * 86400 + 6 * 3600;
    return t >= start && t < end ? -4 * 3600 : -5 * 3600;
}
const OffsetFn kNewYork = ny_offset;

std::string error_of(const std::string &text) {
    try {
        parse(text);
    } catch (const CronError &e) {
        return e.what();
    } catch (const std::exception &e) {
        return std::string("other: ") + e.what();
    }
    return "no error";
}

bool same(const Spec &a, const Spec &b) {
    return a.interval_seconds == b.interval_seconds && a.minute == b.minute && a.hour == b.hour && a.dom == b.dom &&
           a.month == b.month && a.dow == b.dow && a.dom_restricted == b.dom_restricted &&
           a.dow_restricted == b.dow_restricted;
}

// All slots in (from, to].
std::vector<int64_t> slots(const std::string &text, int64_t from, int64_t to, const OffsetFn &zone) {
    Spec s = parse(text);
    std::vector<int64_t> out;
    for (int64_t t = next_slot(s, from, zone); t <= to; t = next_slot(s, t, zone)) out.push_back(t);
    return out;
}

}  // namespace

TEST(Cron, FieldSyntax) {
    Spec s = parse("*/15 1,5,10 10-15 */5 1-5/2");
    EXPECT_EQ(s.interval_seconds, 0);
    EXPECT_EQ(s.minute.to_ullong(), (1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45));
    EXPECT_EQ(s.hour.to_ulong(), (1UL << 1) | (1UL << 5) | (1UL << 10));
    EXPECT_EQ(s.dom.to_ulong(), 0xFC00UL);                                // 10..15
    EXPECT_EQ(s.month.to_ulong(), (1UL << 1) | (1UL << 6) | (1UL << 11));  // 1, 6, 11
    EXPECT_EQ(s.dow.to_ulong(), (1UL << 1) | (1UL << 3) | (1UL << 5));
    EXPECT_TRUE(s.dom_restricted);
    EXPECT_TRUE(s.dow_restricted);

    s = parse(" \t* * * * *\n");
    EXPECT_TRUE(s.minute.all());
    EXPECT_TRUE(s.hour.all());
    EXPECT_EQ(s.dom.count(), 31u);
    EXPECT_FALSE(s.dom[0]);
    EXPECT_EQ(s.month.count(), 12u);
    EXPECT_TRUE(s.dow.all());
    EXPECT_FALSE(s.dom_restricted);
    EXPECT_FALSE(s.dow_restricted);

    s = parse("5/20 10-20/5 */10 1-12 0");
    EXPECT_EQ(s.minute.count(), 3u);  // a/n: a through the maximum
    EXPECT_TRUE(s.minute[5] && s.minute[25] && s.minute[45]);
    EXPECT_EQ(s.hour.to_ulong(), (1UL << 10) | (1UL << 15) | (1UL << 20));
    EXPECT_EQ(s.dom.to_ulong(), (1UL << 1) | (1UL << 11) | (1UL << 21) | (1UL << 31));
    EXPECT_FALSE(s.dom_restricted);  // Vixie: starts with '*'
    EXPECT_EQ(s.month.count(), 12u);
    EXPECT_TRUE(s.dow_restricted);
    EXPECT_EQ(s.dow.to_ulong(), 1UL);

    s = parse("0,30 1-3,20,*/12 1 1 *");  // ranges, steps and single values mixed in one list
    EXPECT_EQ(s.minute.count(), 2u);
    EXPECT_EQ(s.hour.to_ulong(), 0xEUL | (1UL << 20) | 1UL | (1UL << 12));
    EXPECT_EQ(parse("05 007 * * *").hour.to_ulong(), 1UL << 7);  // leading zeros
}

TEST(Cron, Names) {
    Spec s = parse("0 0 * JAN-mar,Dec mon-FRI");
    EXPECT_EQ(s.month.to_ulong(), 0xEUL | (1UL << 12));
    EXPECT_EQ(s.dow.to_ulong(), 0x3EUL);
    EXPECT_EQ(parse("0 0 * * sat,SUN").dow.to_ulong(), 0x41UL);
    EXPECT_EQ(parse("0 0 * * 7").dow.to_ulong(), 1UL);  // 7 is Sunday
    EXPECT_EQ(parse("0 0 * * 5-7").dow.to_ulong(), 0x61UL);
    EXPECT_EQ(parse("0 0 * * 0-7").dow.count(), 7u);
    EXPECT_EQ(parse("0 0 * * 1/3").dow.to_ulong(), (1UL << 1) | (1UL << 4) | 1UL);  // 1, 4, 7 (Sunday)
    EXPECT_EQ(parse("0 0 * jun/2 *").month.to_ulong(), (1UL << 6) | (1UL << 8) | (1UL << 10) | (1UL << 12));
    EXPECT_TRUE(same(parse("0 0 * 1 0"), parse("0 0 * jan sun")));
}

TEST(Cron, Macros) {
    EXPECT_TRUE(same(parse("@yearly"), parse("0 0 1 1 *")));
    EXPECT_TRUE(same(parse("@annually"), parse("0 0 1 1 *")));
    EXPECT_TRUE(same(parse("@monthly"), parse("0 0 1 * *")));
    EXPECT_TRUE(same(parse("@weekly"), parse("0 0 * * 0")));
    EXPECT_TRUE(same(parse("@daily"), parse("0 0 * * *")));
    EXPECT_TRUE(same(parse("@midnight"), parse("0 0 * * *")));
    EXPECT_TRUE(same(parse("  @HOURLY "), parse("0 * * * *")));
    EXPECT_EQ(next_slot(parse("@weekly"), utc(2026, 1, 1), kUtc), utc(2026, 1, 4));  // a Sunday
    EXPECT_EQ(next_slot(parse("@yearly"), utc(2026, 1, 1), kUtc), utc(2027, 1, 1));
}

TEST(Cron, Seconds) {
    EXPECT_EQ(parse("15 seconds").interval_seconds, 15);
    EXPECT_EQ(parse("1 second").interval_seconds, 1);
    EXPECT_EQ(parse("  59 SECONDS\t").interval_seconds, 59);
    EXPECT_EQ(parse("30 Second").interval_seconds, 30);
    EXPECT_EQ(parse("5seconds").interval_seconds, 5);

    Spec s = parse("15 seconds");
    EXPECT_EQ(next_slot(s, 10, kUtc), 15);
    EXPECT_EQ(next_slot(s, 15, kUtc), 30);  // strictly after
    EXPECT_EQ(next_slot(s, 0, kUtc), 15);
    EXPECT_EQ(next_slot(s, -1, kUtc), 0);
    EXPECT_EQ(next_slot(s, 1000000007, kKolkata), 1000000020);  // the zone plays no part
    EXPECT_EQ(next_slot(s, 1000000007, kNewYork), 1000000020);
    EXPECT_EQ(next_slot(parse("7 seconds"), 20, nullptr), 21);
}

TEST(Cron, Errors) {
    EXPECT_NE(error_of("").find("expected 5 fields"), std::string::npos);
    EXPECT_NE(error_of("   ").find("expected 5 fields"), std::string::npos);
    EXPECT_NE(error_of("* * * *").find("expected 5 fields"), std::string::npos);
    EXPECT_NE(error_of("* * * * * *").find("got 6"), std::string::npos);
    EXPECT_NE(error_of("@reboot").find("unknown cron macro"), std::string::npos);
    EXPECT_NE(error_of("@daily x").find("expected 5 fields"), std::string::npos);

    EXPECT_EQ(error_of("61 * * * *"), "cron field \"minute\" value \"61\" is out of range 0-59");
    EXPECT_NE(error_of("* 24 * * *").find("\"hour\" value \"24\" is out of range 0-23"), std::string::npos);
    EXPECT_NE(error_of("* * 0 * *").find("\"day-of-month\" value \"0\" is out of range 1-31"), std::string::npos);
    EXPECT_NE(error_of("* * 32 * *").find("\"day-of-month\""), std::string::npos);
    EXPECT_NE(error_of("* * * 13 *").find("\"month\" value \"13\" is out of range 1-12"), std::string::npos);
    EXPECT_NE(error_of("* * * 0 *").find("\"month\""), std::string::npos);
    EXPECT_NE(error_of("* * * * 8").find("\"day-of-week\" value \"8\" is out of range 0-7"), std::string::npos);
    EXPECT_NE(error_of("99999999999 * * * *").find("\"minute\" value \"99999999999\" is out of range"),
              std::string::npos);

    EXPECT_NE(error_of("*/0 * * * *").find("\"minute\" step \"0\""), std::string::npos);
    EXPECT_NE(error_of("* 1-5/0 * * *").find("\"hour\" step"), std::string::npos);
    EXPECT_NE(error_of("* * * * */9").find("\"day-of-week\" step"), std::string::npos);
    EXPECT_NE(error_of("* * */x * *").find("\"day-of-month\" has an invalid value \"*/x\""), std::string::npos);
    EXPECT_NE(error_of("* * * */ *").find("\"month\" has an invalid value"), std::string::npos);

    EXPECT_NE(error_of("30-10 * * * *").find("\"minute\" range \"30-10\" is reversed"), std::string::npos);
    EXPECT_NE(error_of("* * * * FRI-MON").find("\"day-of-week\" range"), std::string::npos);
    EXPECT_NE(error_of("* * * DEC-JAN *").find("\"month\" range"), std::string::npos);

    EXPECT_NE(error_of("a * * * *").find("\"minute\" has an invalid value \"a\""), std::string::npos);
    EXPECT_NE(error_of("* -1 * * *").find("\"hour\" has an invalid value \"-1\""), std::string::npos);
    EXPECT_NE(error_of("* 1-2-3 * * *").find("\"hour\" has an invalid value"), std::string::npos);
    EXPECT_NE(error_of("* * MON * *").find("\"day-of-month\" has an invalid value"), std::string::npos);
    EXPECT_NE(error_of("* * * MON *").find("\"month\" has an invalid value"), std::string::npos);
    EXPECT_NE(error_of("* * * * MONDAY").find("\"day-of-week\" has an invalid value"), std::string::npos);
    EXPECT_NE(error_of("* * * * JAN").find("\"day-of-week\""), std::string::npos);
    EXPECT_NE(error_of("1,,2 * * * *").find("\"minute\" has an empty list element"), std::string::npos);
    EXPECT_NE(error_of("* 1, * * *").find("\"hour\" has an empty list element"), std::string::npos);
    EXPECT_NE(error_of("* * * * 1.5").find("\"day-of-week\""), std::string::npos);

    for (const char *bad : {"0 seconds", "60 seconds", "-5 seconds", "1.5 seconds", "seconds", "x second",
                            "100000000000000000000 seconds"})
        EXPECT_NE(error_of(bad).find("seconds must be between 1 and 59"), std::string::npos) << bad;
    EXPECT_NE(error_of("every 5 seconds").find("expected 5 fields"), std::string::npos);
}

TEST(Cron, PlainUtc) {
    Spec s = parse("30 4 * * *");
    EXPECT_EQ(next_slot(s, utc(2026, 5, 10, 12), kUtc), utc(2026, 5, 11, 4, 30));
    EXPECT_EQ(next_slot(s, utc(2026, 5, 10, 4, 29, 59), kUtc), utc(2026, 5, 10, 4, 30));
    EXPECT_EQ(next_slot(s, utc(2026, 5, 10, 4, 30), kUtc), utc(2026, 5, 11, 4, 30));  // strictly after
    EXPECT_EQ(next_slot(s, utc(2026, 12, 31, 5), kUtc), utc(2027, 1, 1, 4, 30));
    EXPECT_EQ(next_slot(s, utc(1969, 12, 31, 5), kUtc), utc(1970, 1, 1, 4, 30));  // negative times
    EXPECT_EQ(next_slot(parse("* * * * *"), utc(2026, 5, 10, 12, 0, 30), kUtc), utc(2026, 5, 10, 12, 1));
    EXPECT_EQ(next_slot(parse("*/20 9-17 * * MON-FRI"), utc(2026, 5, 8, 17, 40), kUtc), utc(2026, 5, 11, 9));
    EXPECT_EQ(next_slot(parse("0 12 31 * *"), utc(2026, 4, 1), kUtc), utc(2026, 5, 31, 12));
    EXPECT_EQ(next_slot(parse("0 12 * * 7"), utc(2026, 5, 6), kUtc), utc(2026, 5, 10, 12));  // Sunday
}

TEST(Cron, FixedZone) {
    // 09:00 in UTC+05:30 is 03:30 UTC.
    EXPECT_EQ(next_slot(parse("0 9 * * *"), utc(2026, 1, 1), kKolkata), utc(2026, 1, 1, 3, 30));
    EXPECT_EQ(next_slot(parse("0 9 * * *"), utc(2026, 1, 1, 3, 30), kKolkata), utc(2026, 1, 2, 3, 30));
    // Local midnight on the 1st is the previous day in UTC; the local date decides.
    EXPECT_EQ(next_slot(parse("0 0 1 * *"), utc(2026, 1, 15), kKolkata), utc(2026, 1, 31, 18, 30));
    EXPECT_EQ(next_slot(parse("0 0 * * MON"), utc(2026, 1, 1), kKolkata), utc(2026, 1, 4, 18, 30));
}

TEST(Cron, DayOfMonthOrDayOfWeek) {
    int64_t from = utc(2026, 1, 1), to = utc(2026, 12, 31, 23, 59);
    std::vector<int64_t> either, dom_only, dow_only, friday13;
    for (int64_t day = from / 86400; day * 86400 <= to; day++) {
        if (day * 86400 <= from) continue;
        bool thirteenth = false;
        for (unsigned m = 1; m <= 12; m++) thirteenth = thirteenth || day == days_from_civil(2026, m, 13);
        bool friday = weekday(day) == 5;
        if (thirteenth || friday) either.push_back(day * 86400);
        if (thirteenth) dom_only.push_back(day * 86400);
        if (friday) dow_only.push_back(day * 86400);
        if (friday && thirteenth) friday13.push_back(day * 86400);
    }
    EXPECT_EQ(slots("0 0 13 * FRI", from, to, kUtc), either);
    EXPECT_EQ(slots("0 0 13 * *", from, to, kUtc), dom_only);
    EXPECT_EQ(slots("0 0 * * FRI", from, to, kUtc), dow_only);
    EXPECT_EQ(dom_only.size(), 12u);
    EXPECT_EQ(friday13, (std::vector<int64_t>{utc(2026, 2, 13), utc(2026, 3, 13), utc(2026, 11, 13)}));
    // A day field starting with '*' is unrestricted (Vixie), so the other one must match as well.
    EXPECT_EQ(slots("0 0 */1 * FRI", from, to, kUtc), dow_only);
    EXPECT_EQ(slots("0 0 13 * */1", from, to, kUtc), dom_only);
}

TEST(Cron, LeapDayAndImpossibleDates) {
    Spec feb29 = parse("0 0 29 2 *");
    EXPECT_EQ(next_slot(feb29, utc(2026, 1, 1), kUtc), utc(2028, 2, 29));
    EXPECT_EQ(next_slot(feb29, utc(2028, 2, 29), kUtc), utc(2032, 2, 29));
    EXPECT_EQ(next_slot(feb29, utc(2096, 3, 1), kUtc), utc(2104, 2, 29));  // 2100 is not a leap year
    EXPECT_EQ(next_slot(feb29, utc(2026, 1, 1), kNewYork), utc(2028, 2, 29, 5));

    EXPECT_EQ(next_slot(parse("0 0 30 2 *"), utc(2026, 1, 1), kUtc), kNoSlot);
    EXPECT_EQ(next_slot(parse("* * 31 2,4,6,9,11 *"), utc(2026, 1, 1), kNewYork), kNoSlot);
    EXPECT_EQ(next_slot(parse("0 0 30 2 *"), kNoSlot, kUtc), kNoSlot);
    EXPECT_EQ(next_slot(parse("* * * * *"), kNoSlot - 1, kUtc), kNoSlot);  // beyond the supported range
}

TEST(Cron, NewYorkOffsetFunction) {
    EXPECT_EQ(ny_offset(utc(2026, 3, 8, 6, 59, 59)), -5 * 3600);
    EXPECT_EQ(ny_offset(utc(2026, 3, 8, 7)), -4 * 3600);
    EXPECT_EQ(ny_offset(utc(2026, 11, 1, 5, 59, 59)), -4 * 3600);
    EXPECT_EQ(ny_offset(utc(2026, 11, 1, 6)), -5 * 3600);
    EXPECT_EQ(weekday(days_from_civil(2026, 3, 8)), 0);
    EXPECT_EQ(weekday(days_from_civil(2026, 11, 1)), 0);
}

TEST(Cron, SpringForwardGap) {
    // 02:30 does not exist on 2026-03-08: the slot is the transition, 03:00 EDT = 07:00 UTC, once.
    EXPECT_EQ(slots("30 2 * * *", utc(2026, 3, 6, 12), utc(2026, 3, 10, 12), kNewYork),
              (std::vector<int64_t>{utc(2026, 3, 7, 7, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30),
                                    utc(2026, 3, 10, 6, 30)}));
    EXPECT_EQ(slots("0 3 * * *", utc(2026, 3, 8, 6), utc(2026, 3, 8, 12), kNewYork),
              (std::vector<int64_t>{utc(2026, 3, 8, 7)}));

    // Every minute: one slot per real minute, 07:00 once, none with a 02:xx wall time.
    std::vector<int64_t> s = slots("* * * * *", utc(2026, 3, 8, 6, 50), utc(2026, 3, 8, 7, 10), kNewYork);
    std::vector<int64_t> want;
    for (int64_t t = utc(2026, 3, 8, 6, 51); t <= utc(2026, 3, 8, 7, 10); t += 60) want.push_back(t);
    EXPECT_EQ(s, want);
    for (int64_t t : s) {
        int64_t wall = t + ny_offset(t);
        EXPECT_NE(wall % 86400 / 3600, 2) << t;
    }
    // From inside the gap's hour, as seen from a mid-minute instant just before it.
    EXPECT_EQ(next_slot(parse("15 2 * * *"), utc(2026, 3, 8, 6, 59, 30), kNewYork), utc(2026, 3, 8, 7));
    EXPECT_EQ(next_slot(parse("15 2 * * *"), utc(2026, 3, 8, 7), kNewYork), utc(2026, 3, 9, 6, 15));
}

TEST(Cron, FallBackRepeatedHour) {
    // 01:30 occurs twice on 2026-11-01: only the first (EDT, 05:30 UTC) fires; the next day is normal (EST).
    EXPECT_EQ(slots("30 1 * * *", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12), kNewYork),
              (std::vector<int64_t>{utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)}));
    // Asked during the second 01:xx: today's slot has passed.
    EXPECT_EQ(next_slot(parse("30 1 * * *"), utc(2026, 11, 1, 6, 10), kNewYork), utc(2026, 11, 2, 6, 30));
    EXPECT_EQ(next_slot(parse("30 1 * * *"), utc(2026, 11, 1, 6, 40), kNewYork), utc(2026, 11, 2, 6, 30));

    // Hourly: 00:00 EDT, 01:00 EDT (once), then 02:00 EST.
    EXPECT_EQ(slots("0 * * * *", utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 8, 30), kNewYork),
              (std::vector<int64_t>{utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 7),
                                    utc(2026, 11, 1, 8)}));

    // Every minute: the first 01:xx pass, then 02:00 EST; no instant twice.
    std::vector<int64_t> s = slots("* * * * *", utc(2026, 11, 1, 5, 50), utc(2026, 11, 1, 7, 2), kNewYork);
    std::vector<int64_t> want;
    for (int64_t t = utc(2026, 11, 1, 5, 51); t <= utc(2026, 11, 1, 5, 59); t += 60) want.push_back(t);
    for (int64_t t = utc(2026, 11, 1, 7); t <= utc(2026, 11, 1, 7, 2); t += 60) want.push_back(t);
    EXPECT_EQ(s, want);
}

TEST(Cron, OffsetOutOfRange) {
    EXPECT_THROW(next_slot(parse("* * * * *"), 0, [](int64_t) { return 86400; }), std::out_of_range);
}
