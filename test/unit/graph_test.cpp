#include <gtest/gtest.h>

#include "core/definition.hpp"
#include "core/graph.hpp"

using pw::core::Definition;
using pw::core::DefinitionError;
using pw::core::parse_definition;
using pw::core::StepKind;

namespace {
std::string error_of(const std::string &steps) {
    try {
        parse_definition(steps, "{}");
    } catch (const DefinitionError &e) {
        return e.what();
    }
    return "no error";
}
}  // namespace

TEST(Graph, LinearByDefault) {
    Definition d = parse_definition(R"([{"name": "a", "function": "f"}, {"name": "b", "function": "f"},
                                        {"name": "c", "function": "f"}])", "{}");
    EXPECT_TRUE(d.deps[0].empty());
    EXPECT_EQ(d.deps[1], std::vector<int>({0}));
    EXPECT_EQ(d.deps[2], std::vector<int>({1}));
    EXPECT_EQ(d.order, std::vector<int>({0, 1, 2}));
    EXPECT_EQ(pw::core::sink_steps({d.deps, d.order}), std::vector<int>({2}));
}

TEST(Graph, DiamondAndOrder) {
    Definition d = parse_definition(R"([{"name": "d", "function": "f", "depends_on": ["b", "c"]},
                                        {"name": "c", "function": "f", "depends_on": ["a"]},
                                        {"name": "b", "function": "f", "depends_on": ["a"]},
                                        {"name": "a", "function": "f", "depends_on": []}])", "{}");
    EXPECT_EQ(d.order, std::vector<int>({3, 1, 2, 0}));  // a, then c and b in array order, then d
    EXPECT_EQ(pw::core::sink_steps({d.deps, d.order}), std::vector<int>({0}));
}

// Among ready steps, those that only start something (a sleep, a child run, an HTTP request) go before function
// steps, whatever the array order: the function step holds its worker until it ends.
TEST(Graph, StartersBeforeFunctions) {
    Definition d = parse_definition(R"([{"name": "a", "function": "f", "depends_on": []},
                                        {"name": "c", "sleep": "1 second", "depends_on": []},
                                        {"name": "d", "function": "f", "depends_on": ["c"]},
                                        {"name": "k", "pipeline": "other", "depends_on": []},
                                        {"name": "h", "http": {"url": "http://x"}, "depends_on": ["a"]}])", "{}");
    EXPECT_EQ(d.order, std::vector<int>({1, 3, 0, 4, 2}));  // c, k, then a; h (after a) before d
}

TEST(Graph, SeveralRootsAndSinks) {
    Definition d = parse_definition(R"([{"name": "x", "function": "f", "depends_on": []},
                                        {"name": "y", "function": "f", "depends_on": []}])", "{}");
    EXPECT_EQ(d.order, std::vector<int>({0, 1}));
    EXPECT_EQ(pw::core::sink_steps({d.deps, d.order}), std::vector<int>({0, 1}));
}

TEST(Graph, Refusals) {
    EXPECT_NE(error_of(R"([{"name": "a", "function": "f", "depends_on": ["zz"]}])").find("unknown step \"zz\""),
              std::string::npos);
    EXPECT_NE(error_of(R"([{"name": "a", "function": "f", "depends_on": ["a"]}])").find("depends on itself"),
              std::string::npos);
    std::string cyc = error_of(R"([{"name": "a", "function": "f", "depends_on": ["c"]},
                                   {"name": "b", "function": "f", "depends_on": ["a"]},
                                   {"name": "c", "function": "f", "depends_on": ["b"]},
                                   {"name": "d", "function": "f", "depends_on": ["c"]}])");
    EXPECT_NE(cyc.find("cycle"), std::string::npos) << cyc;
    for (const char *n : {"\"a\"", "\"b\"", "\"c\""}) EXPECT_NE(cyc.find(n), std::string::npos) << cyc;
    EXPECT_EQ(cyc.find("\"d\""), std::string::npos) << cyc;  // d depends on the cycle, is not on it
    EXPECT_EQ(cyc.find("has no \"depends_on\""), std::string::npos) << cyc;  // every dependency on it is written
    // a dependency by default (no "depends_on": the step before) is said where it closes the cycle
    std::string implicit = error_of(R"([{"name": "a", "function": "f", "depends_on": ["b"]},
                                        {"name": "b", "function": "f"}])");
    EXPECT_NE(implicit.find("\"b\" has no \"depends_on\" and so depends on the step before it, \"a\""),
              std::string::npos)
        << implicit;
}

TEST(Graph, WaitingKinds) {
    Definition d = parse_definition(R"([{"name": "s", "sleep": "5 minutes"},
                                        {"name": "w", "wait_for": "paid", "timeout_ms": 1000},
                                        {"name": "f", "function": "f", "if": {"prev": {"ok": true}}}])",
                                    R"({"timeout_ms": 50})");
    EXPECT_EQ(d.steps[0].kind, StepKind::Sleep);
    EXPECT_EQ(d.steps[0].sleep, "5 minutes");
    EXPECT_EQ(d.steps[1].kind, StepKind::WaitFor);
    EXPECT_EQ(d.steps[1].wait_for, "paid");
    EXPECT_EQ(d.timeout_ms(1), 1000);
    EXPECT_EQ(d.timeout_ms(2), 50);
    EXPECT_EQ(d.steps[2].if_json, R"({"prev": {"ok": true}})");
    EXPECT_NE(error_of(R"([{"name": "w", "wait_for": "e", "function": "f"}])").find("more than one"),
              std::string::npos);
    Definition c = parse_definition(R"([{"name": "p", "pipeline": "other"}])", "{}");
    EXPECT_EQ(c.steps[0].kind, StepKind::Pipeline);
    EXPECT_EQ(c.steps[0].child, "other");
    EXPECT_TRUE(parse_definition(R"([{"name": "p", "pipeline": "other", "map": true}])", "{}").steps[0].map);
    EXPECT_NE(error_of(R"([{"name": "p", "pipeline": ""}])").find("must name a pipeline"), std::string::npos);
    Definition m = parse_definition(R"([{"name": "m", "function": "f", "map": true, "max_parallel": 4}])", "{}");
    EXPECT_TRUE(m.steps[0].map);
    EXPECT_EQ(m.steps[0].max_parallel, 4);
    EXPECT_NE(error_of(R"([{"name": "m", "sleep": "1 second", "map": true}])").find("applies to"), std::string::npos);
    EXPECT_NE(error_of(R"([{"name": "m", "function": "f", "max_parallel": 2}])").find("map steps only"),
              std::string::npos);
}
