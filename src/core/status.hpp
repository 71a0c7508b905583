// Run and step statuses: one enum each, and the one mapping to and from the text stored in the tables.
#pragma once

#include <cstring>
#include <initializer_list>

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

// false for a text that is no run status
inline bool run_status_from_text(const char *text, RunStatus *out) noexcept {
    for (RunStatus s : {RunStatus::Pending, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed,
                        RunStatus::Cancelled, RunStatus::Waiting})
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
