// The options of a cron schedule (pipeline_worker.schedule(..., options)): validation into a struct.
// Pure C++; the time zone name is checked by the caller (Postgres' time zone database).
#pragma once

#include <string>

#include "error.hpp"

namespace pw::core {

enum class CatchUp { None, Latest, All };
enum class Overlap { Allow, Skip };

struct ScheduleOptions {
    std::string timezone = "UTC";
    CatchUp catch_up = CatchUp::None;
    int catch_up_max = 100;
    Overlap overlap = Overlap::Allow;
    int priority = 0;
    std::string concurrency_key;  // empty: none
};

// Throws InputError (with a hint) for unknown keys, wrong types and out-of-range values.
ScheduleOptions parse_schedule_options(const std::string &json_text);

}  // namespace pw::core
