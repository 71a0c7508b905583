#include "schedule_options.hpp"

#include "json.hpp"

namespace pw::core {

namespace {

const char *const kKeys = "timezone, catch_up, catch_up_max, overlap, priority, concurrency_key";

std::string text_option(const json::Value &v, const std::string &key) {
    if (!v.is_string() || v.as_string().empty())
        throw InputError("schedule option \"" + key + "\" must be a non-empty JSON string",
                         key == "timezone" ? "An IANA time zone name such as \"Europe/Paris\"."
                                           : "The concurrency key of the runs the schedule creates.");
    return v.as_string();
}

int int_option(const json::Value &v, const std::string &key, int64_t lo, int64_t hi) {
    int64_t n = 0;
    if (!v.as_int64(n) || n < lo || n > hi)
        throw InputError("schedule option \"" + key + "\" must be an integer between " + std::to_string(lo) + " and " +
                             std::to_string(hi),
                         key == "priority" ? "The priority of the runs the schedule creates (higher runs first)."
                                           : "How many missed slots \"catch_up\": \"all\" runs at most.");
    return static_cast<int>(n);
}

}  // namespace

ScheduleOptions parse_schedule_options(const std::string &json_text) {
    json::Value v = json::parse(json_text);
    if (!v.is_object()) throw InputError("schedule options must be a JSON object", std::string("Allowed keys: ") + kKeys + ".");
    ScheduleOptions o;
    for (const auto &[key, val] : v.as_object()) {
        if (key == "timezone") {
            o.timezone = text_option(val, key);
        } else if (key == "catch_up") {
            std::string s = val.is_string() ? val.as_string() : "";
            if (s == "none") o.catch_up = CatchUp::None;
            else if (s == "latest") o.catch_up = CatchUp::Latest;
            else if (s == "all") o.catch_up = CatchUp::All;
            else
                throw InputError("schedule option \"catch_up\" must be \"none\", \"latest\" or \"all\"",
                                 "\"none\" skips slots missed while the server was down, \"latest\" runs the latest "
                                 "of them once, \"all\" runs each (at most \"catch_up_max\").");
        } else if (key == "catch_up_max") {
            o.catch_up_max = int_option(val, key, 1, 100000);
        } else if (key == "overlap") {
            std::string s = val.is_string() ? val.as_string() : "";
            if (s == "allow") o.overlap = Overlap::Allow;
            else if (s == "skip") o.overlap = Overlap::Skip;
            else
                throw InputError("schedule option \"overlap\" must be \"allow\" or \"skip\"",
                                 "\"skip\" creates no run for a slot while the schedule's previous run is unfinished.");
        } else if (key == "priority") {
            o.priority = int_option(val, key, -32768, 32767);
        } else if (key == "concurrency_key") {
            o.concurrency_key = text_option(val, key);
        } else {
            throw InputError("unknown schedule option \"" + key + "\"", std::string("Allowed keys: ") + kKeys + ".");
        }
    }
    return o;
}

}  // namespace pw::core
