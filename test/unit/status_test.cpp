#include <gtest/gtest.h>

#include <cstring>

#include "core/status.hpp"

using namespace pw::core;

namespace {
bool run_word(const char *s) { return is_run_status(s, std::strlen(s)); }
bool step_word(const char *s) { return is_step_status(s, std::strlen(s)); }
}  // namespace

// The words the run tables' CHECK constraints accept (row_checks.cpp): exactly the statuses' texts.
TEST(Status, RunWords) {
    for (const char *w : {"pending", "running", "waiting", "succeeded", "failed", "cancelled"})
        EXPECT_TRUE(run_word(w)) << w;
    for (const char *w : {"", "skipped", "Pending", "pendin", "pending ", "pendingx", "unknown"})
        EXPECT_FALSE(run_word(w)) << w;
    EXPECT_TRUE(is_run_status("pendingXYZ", 7));  // only the n bytes count: not NUL-terminated
    EXPECT_FALSE(is_run_status("pending", 6));
}

TEST(Status, StepWords) {
    for (const char *w : {"running", "waiting", "succeeded", "failed", "skipped"}) EXPECT_TRUE(step_word(w)) << w;
    for (const char *w : {"", "pending", "cancelled", "unknown", "Skipped"}) EXPECT_FALSE(step_word(w)) << w;
}

TEST(Status, FromTextRoundTrips) {
    for (RunStatus s : kRunStatuses) {
        RunStatus got;
        ASSERT_TRUE(run_status_from_text(to_text(s), &got));
        EXPECT_EQ(got, s);
    }
    RunStatus got;
    EXPECT_FALSE(run_status_from_text("skipped", &got));
}
