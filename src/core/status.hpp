// Run and step statuses: one enum each, and the one mapping to and from the text stored in the tables.
#pragma once

#include <cstring>
#include <cstddef>

namespace pw::core {

// Waiting: sleeping or waiting for an event (0.2), holding no worker.
enum class RunStatus { Pending, Running, Succeeded, Failed, Cancelled, Waiting };
// Waiting: a sleep or event wait not over yet; Skipped: its "if" was not met (0.2).
enum class StepStatus { Running, Succeeded, Failed, Waiting, Skipped };

constexpr const char *to_text(RunStatus s) noexcept {
    switch (s) {
        case RunStatus::Pending: return "pending";
        case RunStatus::Running: return "running";
        case RunStatus::Succeeded: return "succeeded";
        case RunStatus::Failed: return "failed";
        case RunStatus::Cancelled: return "cancelled";
        case RunStatus::Waiting: return "waiting";
    }
    return "unknown";
}

constexpr const char *to_text(StepStatus s) noexcept {
    switch (s) {
        case StepStatus::Running: return "running";
        case StepStatus::Succeeded: return "succeeded";
        case StepStatus::Failed: return "failed";
        case StepStatus::Waiting: return "waiting";
        case StepStatus::Skipped: return "skipped";
    }
    return "unknown";
}

constexpr RunStatus kRunStatuses[] = {RunStatus::Pending,   RunStatus::Running,   RunStatus::Succeeded,
                                      RunStatus::Failed,    RunStatus::Cancelled, RunStatus::Waiting};
constexpr StepStatus kStepStatuses[] = {StepStatus::Running, StepStatus::Succeeded, StepStatus::Failed,
                                        StepStatus::Waiting, StepStatus::Skipped};

// Whether the n bytes at text (not NUL-terminated) are one of the statuses' words.
template <typename Status, size_t N>
inline bool is_status_text(const Status (&all)[N], const char *text, size_t n) noexcept {
    for (Status s : all)
        if (std::strlen(to_text(s)) == n && std::memcmp(text, to_text(s), n) == 0) return true;
    return false;
}
inline bool is_run_status(const char *text, size_t n) noexcept { return is_status_text(kRunStatuses, text, n); }
inline bool is_step_status(const char *text, size_t n) noexcept { return is_status_text(kStepStatuses, text, n); }

// false for a text that is no run status
inline bool run_status_from_text(const char *text, RunStatus *out) noexcept {
    for (RunStatus s : kRunStatuses)
        if (std::strcmp(text, to_text(s)) == 0) {
            *out = s;
            return true;
        }
    return false;
}

constexpr bool is_finished(RunStatus s) noexcept {
    return s == RunStatus::Succeeded || s == RunStatus::Failed || s == RunStatus::Cancelled;
}

}  // namespace pw::core
