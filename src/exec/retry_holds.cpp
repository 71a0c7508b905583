#include "exec/retry_holds.hpp"

namespace pw::exec {

namespace {

struct Hold {
    int64 run_id;  // 0: a free place
    int pos, task, attempt;
    TimestampTz not_before;
};
// A process holds few at once (runs with a failed branch while others' requests are out); when full, the hold due
// soonest gives way (at worst that retry goes early, as before).
constexpr int kHolds = 256;
Hold holds[kHolds];

}  // namespace

void hold_retry(int64 run_id, int pos, int task, int attempt, long delay_ms) {
    if (delay_ms <= 0) return;
    TimestampTz at = GetCurrentTimestamp() + static_cast<TimestampTz>(delay_ms) * 1000;
    Hold *same = nullptr, *free_place = nullptr, *soonest = nullptr;
    for (Hold &h : holds) {
        if (h.run_id == run_id && h.pos == pos && h.task == task) {
            same = &h;  // (a newer attempt of the same step replaces the older one's)
            break;
        }
        if (h.run_id == 0) {
            if (free_place == nullptr) free_place = &h;
        } else if (soonest == nullptr || h.not_before < soonest->not_before) {
            soonest = &h;  // (a finished run's hold is never asked for again: it is over first)
        }
    }
    Hold *place = same != nullptr ? same : free_place != nullptr ? free_place : soonest;
    *place = {run_id, pos, task, attempt, at};
}

long held_retry_ms(int64 run_id, int pos, int task, int attempt) {
    for (Hold &h : holds) {
        if (h.run_id != run_id || h.pos != pos || h.task != task) continue;
        TimestampTz now = GetCurrentTimestamp();
        if (h.attempt != attempt || h.not_before <= now) {
            h.run_id = 0;
            return 0;
        }
        return static_cast<long>((h.not_before - now + 999) / 1000);
    }
    return 0;
}

}  // namespace pw::exec
