// Cron schedules: parsing (Vixie syntax, macros, 'N seconds') and the next slot in a zone's wall time.
// Pure C++ (no Postgres headers); the zone is given as a function so that the caller can use Postgres' tz code.
#pragma once

#include <bitset>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>

#include "error.hpp"

namespace pw::core::cron {

// Invalid schedule text; the message names the wrong field ("minute", "hour", "day-of-month", "month",
// "day-of-week") or the expected shape.
struct CronError : InputError {
    using InputError::InputError;
};

struct Spec {
    int interval_seconds = 0;  // 1..59: an 'N seconds' schedule (the fields below are unused); 0: five fields
    std::bitset<60> minute;    // 0-59
    std::bitset<24> hour;      // 0-23
    std::bitset<32> dom;       // 1-31 (bit 0 unused)
    std::bitset<13> month;     // 1-12 (bit 0 unused)
    std::bitset<7> dow;        // 0-6, Sunday = 0 (7 in the text is folded into 0)
    // As in Vixie cron, a field is unrestricted when its text starts with '*' (so "*/2" is unrestricted too).
    bool dom_restricted = false;
    bool dow_restricted = false;
};

// Five fields (minute hour day-of-month month day-of-week), a macro (@yearly, @annually, @monthly, @weekly,
// @daily, @midnight, @hourly), or 'N seconds' with N in 1..59. Throws CronError.
Spec parse(const std::string &text);

// The zone's offset from UTC in seconds east of UTC at a UTC instant (-18000 for New York in winter). Must stay
// within +-24 hours (else std::out_of_range). An empty function means UTC.
using OffsetFn = std::function<int(int64_t utc_seconds)>;

// next_slot's answer when there is none within about 9 years (e.g. "0 0 30 2 *"), or `after` is beyond +-2^50.
constexpr int64_t kNoSlot = std::numeric_limits<int64_t>::max();

// The first slot instant (unix seconds) strictly after `after`. Interval schedules: the next multiple of N of
// unix time. Five fields: matched in local wall time; a wall time in a spring-forward gap fires at the
// transition, a repeated wall time (fall back) at its first occurrence, and each slot instant fires once.
int64_t next_slot(const Spec &spec, int64_t after, const OffsetFn &offset_at);

}  // namespace pw::core::cron
