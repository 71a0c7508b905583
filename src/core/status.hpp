// Run and step statuses: one enum each, and the one mapping to and from the text stored in the tables.
#pragma once

#include <cstring>
#include <initializer_list>

namespace pw::core {

enum class RunStatus { Pending, Running, Succeeded, Failed, Cancelled };
enum class StepStatus { Running, Succeeded, Failed };

constexpr const char *to_text(RunStatus s) noexcept {
    switch (s) {
        case RunStatus::Pending: return "pending";
        case RunStatus::Running: return "running";
        case RunStatus::Succeeded: return "succeeded";
        case RunStatus::Failed: return "failed";
        case RunStatus::Cancelled: return "cancelled";
    }
    return "unknown";
}

constexpr const char *to_text(StepStatus s) noexcept {
    switch (s) {
        case StepStatus::Running: return "running";
        case StepStatus::Succeeded: return "succeeded";
        case StepStatus::Failed: return "failed";
    }
    return "unknown";
}

// false for a text that is no run status
inline bool run_status_from_text(const char *text, RunStatus *out) noexcept {
    for (RunStatus s : {RunStatus::Pending, RunStatus::Running, RunStatus::Succeeded, RunStatus::Failed,
                        RunStatus::Cancelled})
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
