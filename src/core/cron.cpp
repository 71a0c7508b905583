#include "cron.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <vector>

namespace pw::core::cron {

namespace {

constexpr int64_t kDay = 86400;
// Feb 29 can be 8 years away (2096 -> 2104); a little more so that no possible date is missed.
constexpr int64_t kSearchDays = 9 * 366;
// Keeps the arithmetic on instants (wall times, +-1 day samples) far from overflow.
constexpr int64_t kMaxInstant = int64_t{1} << 50;

const char *const kMonthNames[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                   "jul", "aug", "sep", "oct", "nov", "dec"};
const char *const kDayNames[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

struct Field {
    const char *name;
    int lo, hi;
    const char *const *names;  // three-letter names for lo, lo+1, ...; nullptr if none
    int name_count;
};

// Day-of-week allows 7 (Sunday again), folded into 0 after parsing.
const Field kFields[5] = {{"minute", 0, 59, nullptr, 0},
                          {"hour", 0, 23, nullptr, 0},
                          {"day-of-month", 1, 31, nullptr, 0},
                          {"month", 1, 12, kMonthNames, 12},
                          {"day-of-week", 0, 7, kDayNames, 7}};

std::string lower(std::string s) {
    for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

bool all_digits(const std::string &s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Saturates instead of overflowing: the caller only compares against small bounds.
int to_int(const std::string &digits) {
    int n = 0;
    for (char c : digits) n = std::min(n * 10 + (c - '0'), 1000000);
    return n;
}

std::string trim(const std::string &s) {
    size_t b = 0, e = s.size();
    while (b < e && is_space(s[b])) b++;
    while (e > b && is_space(s[e - 1])) e--;
    return s.substr(b, e - b);
}

std::vector<std::string> split_space(const std::string &s) {
    std::vector<std::string> out;
    size_t i = 0;
    while (i < s.size()) {
        while (i < s.size() && is_space(s[i])) i++;
        size_t start = i;
        while (i < s.size() && !is_space(s[i])) i++;
        if (i > start) out.push_back(s.substr(start, i - start));
    }
    return out;
}

std::string field_prefix(const Field &f) { return std::string("cron field \"") + f.name + "\" "; }

[[noreturn]] void invalid(const Field &f, const std::string &elem) {
    throw CronError(field_prefix(f) + "has an invalid value \"" + elem + "\"");
}

// A number or (where the field has them) a three-letter name, case-insensitive.
int parse_value(const Field &f, const std::string &s, const std::string &elem) {
    if (all_digits(s)) {
        int n = to_int(s);
        if (n < f.lo || n > f.hi)
            throw CronError(field_prefix(f) + "value \"" + s + "\" is out of range " + std::to_string(f.lo) + "-" +
                            std::to_string(f.hi));
        return n;
    }
    std::string l = lower(s);
    for (int i = 0; i < f.name_count; i++)
        if (l == f.names[i]) return f.lo + i;
    invalid(f, elem);
}

// One list element: '*', 'a', 'a-b', each optionally followed by '/step' ('a/n' = a through the maximum).
uint64_t parse_element(const Field &f, const std::string &elem) {
    if (elem.empty()) throw CronError(field_prefix(f) + "has an empty list element");
    size_t slash = elem.find('/');
    std::string range = elem.substr(0, slash);
    int step = 1;
    if (slash != std::string::npos) {
        std::string s = elem.substr(slash + 1);
        if (!all_digits(s)) invalid(f, elem);
        step = to_int(s);
        if (step < 1 || step > f.hi)
            throw CronError(field_prefix(f) + "step \"" + s + "\" is out of range 1-" + std::to_string(f.hi));
    }
    int lo = f.lo, hi = f.hi;
    if (range != "*") {
        size_t dash = range.find('-');
        lo = parse_value(f, range.substr(0, dash), elem);
        if (dash != std::string::npos) {
            hi = parse_value(f, range.substr(dash + 1), elem);
            if (lo > hi)
                throw CronError(field_prefix(f) + "range \"" + range + "\" is reversed (start after end)");
        } else if (slash == std::string::npos) {
            hi = lo;
        }
    }
    uint64_t bits = 0;
    for (int v = lo; v <= hi; v += step) bits |= uint64_t{1} << v;
    return bits;
}

uint64_t parse_field(const Field &f, const std::string &text) {
    uint64_t bits = 0;
    size_t start = 0;
    for (;;) {
        size_t comma = text.find(',', start);
        bits |= parse_element(f, text.substr(start, comma == std::string::npos ? comma : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return bits;
}

const char *const kShapeHint =
    "Use five fields (minute hour day-of-month month day-of-week) such as '0 3 * * *', a macro such as "
    "'@daily', or an interval such as '30 seconds'.";

Spec parse_fields(const std::string &text) {
    std::vector<std::string> parts = split_space(text);
    if (parts.size() != 5)
        throw CronError("invalid cron schedule \"" + text +
                            "\": expected 5 fields (minute hour day-of-month month day-of-week), got " +
                            std::to_string(parts.size()),
                        kShapeHint);
    uint64_t bits[5];
    for (int i = 0; i < 5; i++) bits[i] = parse_field(kFields[i], parts[i]);
    if (bits[4] & (uint64_t{1} << 7)) bits[4] = (bits[4] | 1) & ~(uint64_t{1} << 7);
    Spec s;
    s.minute = std::bitset<60>(bits[0]);
    s.hour = std::bitset<24>(bits[1]);
    s.dom = std::bitset<32>(bits[2]);
    s.month = std::bitset<13>(bits[3]);
    s.dow = std::bitset<7>(bits[4]);
    s.dom_restricted = parts[2][0] != '*';
    s.dow_restricted = parts[4][0] != '*';
    return s;
}

// 'N seconds' / 'N second' (space optional, as pg_cron's sscanf allows). Returns false if the text is not of
// that shape at all, so that it is reported as a cron schedule instead.
bool parse_interval(const std::string &text, Spec *out) {
    std::string t = lower(trim(text));
    size_t cut;
    if (t.size() >= 7 && t.compare(t.size() - 7, 7, "seconds") == 0)
        cut = t.size() - 7;
    else if (t.size() >= 6 && t.compare(t.size() - 6, 6, "second") == 0)
        cut = t.size() - 6;
    else
        return false;
    std::string n = trim(t.substr(0, cut));
    if (split_space(n).size() > 1) return false;
    int v = all_digits(n) ? to_int(n) : 0;
    if (v < 1 || v > 59)
        throw CronError("invalid interval schedule \"" + trim(text) + "\": seconds must be between 1 and 59");
    out->interval_seconds = v;
    return true;
}

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// Howard Hinnant's civil_from_days: proleptic Gregorian date of a day number (0 = 1970-01-01).
void civil_from_days(int64_t z, int64_t &y, unsigned &m, unsigned &d) {
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);             // [0, 146096]
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;  // [0, 399]
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);              // [0, 365], from March 1
    const unsigned mp = (5 * doy + 2) / 153;                                   // [0, 11], March = 0
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
}

bool day_matches(const Spec &spec, int64_t day) {
    int64_t y;
    unsigned m, d;
    civil_from_days(day, y, m, d);
    if (!spec.month[m]) return false;
    int wd = static_cast<int>(day - floor_div(day + 4, 7) * 7 + 4);  // 1970-01-01 was a Thursday (4)
    bool dom = spec.dom[d], dow = spec.dow[wd];
    // Vixie: with both day fields restricted either may match; otherwise the '*' one matches every day.
    return spec.dom_restricted && spec.dow_restricted ? dom || dow : dom && dow;
}

// The first matching wall minute (wall seconds, as if UTC) at or after wall minute `m`, walking whole days.
int64_t next_wall_minute(const Spec &spec, int64_t m, int64_t last_day) {
    int64_t day = floor_div(m, kDay);
    int from = static_cast<int>((m - day * kDay) / 60);
    for (; day <= last_day; day++, from = 0) {
        if (!day_matches(spec, day)) continue;
        for (int h = from / 60; h < 24; h++) {
            if (!spec.hour[h]) continue;
            for (int mi = h == from / 60 ? from % 60 : 0; mi < 60; mi++)
                if (spec.minute[mi]) return day * kDay + h * 3600 + mi * 60;
        }
    }
    return kNoSlot;
}

int offset(const OffsetFn &f, int64_t t) {
    if (!f) return 0;
    int o = f(t);
    // Beyond a day, the +-1 day samples in wall_to_utc would not bracket the instant.
    if (o <= -kDay || o >= kDay) throw std::out_of_range("UTC offset " + std::to_string(o) + " is out of range");
    return o;
}

// The instant of wall time `w`: the earlier one if it occurs twice, the transition if it does not occur. Assumes
// at most one offset change within a day of it (true of real zones).
int64_t wall_to_utc(int64_t w, const OffsetFn &f) {
    int before = offset(f, w - kDay), after = offset(f, w + kDay);
    int first = std::max(before, after), second = std::min(before, after);  // larger offset: earlier instant
    if (offset(f, w - first) == first) return w - first;
    if (second != first && offset(f, w - second) == second) return w - second;
    // A gap: the first instant whose wall time is at or past w. wall(lo) < w <= wall(hi) as |offset| < 1 day.
    int64_t lo = w - kDay, hi = w + kDay;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (mid + offset(f, mid) >= w)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

}  // namespace

Spec parse(const std::string &text) {
    Spec s;
    if (parse_interval(text, &s)) return s;
    std::string t = trim(text);
    if (!t.empty() && t[0] == '@' && split_space(t).size() == 1) {
        std::string m = lower(t);
        if (m == "@yearly" || m == "@annually") return parse_fields("0 0 1 1 *");
        if (m == "@monthly") return parse_fields("0 0 1 * *");
        if (m == "@weekly") return parse_fields("0 0 * * 0");
        if (m == "@daily" || m == "@midnight") return parse_fields("0 0 * * *");
        if (m == "@hourly") return parse_fields("0 * * * *");
        throw CronError("unknown cron macro \"" + t +
                            "\"; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly",
                        kShapeHint);
    }
    return parse_fields(text);
}

int64_t next_slot(const Spec &spec, int64_t after, const OffsetFn &offset_at) {
    if (after > kMaxInstant || after < -kMaxInstant) return kNoSlot;
    if (spec.interval_seconds > 0) {
        int64_t n = spec.interval_seconds;
        return floor_div(after, n) * n + n;
    }
    // Every wall minute up to after's own wall time maps to an instant <= after (the mapping is monotonic), so
    // the search starts at the next wall minute; those that still map to <= after are skipped below.
    int64_t wall = after + offset(offset_at, after);
    int64_t m = floor_div(wall, 60) * 60 + 60;
    const int64_t last_day = floor_div(m, kDay) + kSearchDays;
    for (;;) {
        m = next_wall_minute(spec, m, last_day);
        if (m == kNoSlot) return kNoSlot;
        int64_t t = wall_to_utc(m, offset_at);
        if (t > after) return t;  // else: a repeated hour's second pass, or gap minutes sharing one transition
        m += 60;
    }
}

}  // namespace pw::core::cron
