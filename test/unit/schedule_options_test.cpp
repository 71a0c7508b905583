#include <gtest/gtest.h>

#include "core/schedule_options.hpp"

using namespace pw::core;

namespace {

std::string error_of(const std::string &json) {
    try {
        parse_schedule_options(json);
        return "no error";
    } catch (const InputError &e) {
        return std::string(e.what()) + " | " + e.hint;
    }
}

}  // namespace

TEST(ScheduleOptions, Defaults) {
    ScheduleOptions o = parse_schedule_options("{}");
    EXPECT_EQ(o.timezone, "UTC");
    EXPECT_EQ(o.catch_up, CatchUp::None);
    EXPECT_EQ(o.catch_up_max, 100);
    EXPECT_EQ(o.overlap, Overlap::Allow);
    EXPECT_EQ(o.priority, 0);
    EXPECT_EQ(o.concurrency_key, "");
}

TEST(ScheduleOptions, AllKeys) {
    ScheduleOptions o = parse_schedule_options(R"({"timezone": "Europe/Paris", "catch_up": "all", "catch_up_max": 7,
        "overlap": "skip", "priority": -4, "concurrency_key": "tenant-9"})");
    EXPECT_EQ(o.timezone, "Europe/Paris");
    EXPECT_EQ(o.catch_up, CatchUp::All);
    EXPECT_EQ(o.catch_up_max, 7);
    EXPECT_EQ(o.overlap, Overlap::Skip);
    EXPECT_EQ(o.priority, -4);
    EXPECT_EQ(o.concurrency_key, "tenant-9");
    EXPECT_EQ(parse_schedule_options(R"({"catch_up": "latest"})").catch_up, CatchUp::Latest);
}

TEST(ScheduleOptions, RejectsBadInput) {
    EXPECT_NE(error_of("[]").find("must be a JSON object"), std::string::npos);
    EXPECT_NE(error_of(R"({"catch_up": "some"})").find("\"none\", \"latest\" or \"all\""), std::string::npos);
    EXPECT_NE(error_of(R"({"catch_up": 1})").find("catch_up"), std::string::npos);
    EXPECT_NE(error_of(R"({"overlap": "queue"})").find("\"allow\" or \"skip\""), std::string::npos);
    EXPECT_NE(error_of(R"({"catch_up_max": 0})").find("between 1 and"), std::string::npos);
    EXPECT_NE(error_of(R"({"priority": 40000})").find("between -32768 and 32767"), std::string::npos);
    EXPECT_NE(error_of(R"({"timezone": ""})").find("non-empty JSON string"), std::string::npos);
    EXPECT_NE(error_of(R"({"concurrency_key": 5})").find("non-empty JSON string"), std::string::npos);
    EXPECT_NE(error_of(R"({"every": 1})").find("Allowed keys"), std::string::npos);
}
