#include <gtest/gtest.h>

#include "core/json.hpp"

using pw::json::parse;
using pw::json::ParseError;
using pw::json::serialize;
using pw::json::Value;

TEST(Json, ParsesScalars) {
    EXPECT_TRUE(parse("null").is_null());
    EXPECT_TRUE(parse(" true ").as_bool());
    EXPECT_FALSE(parse("false").as_bool());
    EXPECT_EQ(parse("\"a\\u00e9\\n\"").as_string(), "a\xc3\xa9\n");
    EXPECT_EQ(parse("-12.5e3").as_string(), "-12.5e3");
}

TEST(Json, ParsesNested) {
    Value v = parse(R"({"a": [1, 2, {"b": null}], "c": "x"})");
    ASSERT_TRUE(v.is_object());
    ASSERT_NE(v.find("a"), nullptr);
    EXPECT_EQ(v.find("a")->as_array().size(), 3u);
    EXPECT_EQ(v.find("c")->as_string(), "x");
    EXPECT_EQ(v.find("missing"), nullptr);
}

TEST(Json, Int64) {
    int64_t n = 0;
    EXPECT_TRUE(parse("42").as_int64(n));
    EXPECT_EQ(n, 42);
    EXPECT_FALSE(parse("4.2").as_int64(n));
    EXPECT_FALSE(parse("1e3").as_int64(n));
    EXPECT_FALSE(parse("99999999999999999999").as_int64(n));
    EXPECT_FALSE(parse("\"42\"").as_int64(n));
}

TEST(Json, SurrogatePairs) {
    EXPECT_EQ(parse("\"\\ud83d\\ude00\"").as_string(), "\xf0\x9f\x98\x80");
    EXPECT_THROW(parse("\"\\ud83d\""), ParseError);
    EXPECT_THROW(parse("\"\\ude00\""), ParseError);
}

TEST(Json, RejectsMalformed) {
    for (const char *bad : {"", "{", "[1,]", "{\"a\":}", "{'a':1}", "01", "1.", "-", "tru", "[1] x", "\"\x01\"",
                            "{\"a\" 1}", "\"\\u0000\"", "nul"}) {
        EXPECT_THROW(parse(bad), ParseError) << bad;
    }
}

TEST(Json, ValidateChecksWhatParseChecks) {
    for (const char *bad : {"", "{", "[1,]", "{\"a\":}", "{'a':1}", "01", "1.", "-", "tru", "[1] x", "\"\x01\"",
                            "{\"a\" 1}", "\"\\u0000\"", "nul"}) {
        EXPECT_THROW(pw::json::validate(bad), ParseError) << bad;
    }
    for (const char *good : {"1", "[1, 2.5e3, \"x\\n\"]", "{\"a\": {\"b\": [true, false, null]}}", " \"\\ud83d\\ude00\" "})
        EXPECT_NO_THROW(pw::json::validate(good)) << good;
    std::string deep(300, '[');
    deep += std::string(300, ']');
    EXPECT_THROW(pw::json::validate(deep), ParseError);
    try {
        pw::json::validate(deep);
    } catch (const ParseError &e) {
        EXPECT_TRUE(e.beyond_limits);
    }
}

TEST(Json, DepthLimit) {
    std::string deep(300, '[');
    deep += std::string(300, ']');
    EXPECT_THROW(parse(deep), ParseError);
    EXPECT_NO_THROW(parse(deep, 400));
}

TEST(Json, RoundTrip) {
    const char *doc = R"({"a": [1, true, null, "q\"\\"], "b": {}})";
    EXPECT_EQ(serialize(parse(doc)), doc);
    EXPECT_EQ(pw::json::quote(std::string("\x01", 1)), "\"\\u0001\"");
}

TEST(Json, Set) {
    Value v = parse(R"({"a": 1})");
    v.set("a", Value::string("x"));
    v.set("b", Value::number(int64_t{2}));
    EXPECT_EQ(serialize(v), R"({"a": "x", "b": 2})");
}

TEST(Json, TellsLimitsFromGrammar) {
    auto limits = [](const std::string &text) {
        try {
            pw::json::parse(text);
        } catch (const pw::json::ParseError &e) {
            return e.beyond_limits ? 1 : 0;
        }
        return -1;
    };
    EXPECT_EQ(limits(std::string(300, '[') + std::string(300, ']')), 1);
    EXPECT_EQ(limits(R"({"a": "\u0000"})"), 1);
    EXPECT_EQ(limits(R"(["\udc00"])"), 1);
    EXPECT_EQ(limits(R"({"a": )"), 0);
    EXPECT_EQ(limits("hello"), 0);
    EXPECT_EQ(limits(R"({"a": 1})"), -1);
}
