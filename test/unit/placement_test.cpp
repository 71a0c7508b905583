#include "core/placement.hpp"

#include <gtest/gtest.h>

using pw::core::placement::Database;
using pw::core::placement::targets;

namespace {

Database active(int current = 0, int rank = 0) { return Database{true, current, rank}; }
Database idle(int current = 0, int rank = 0) { return Database{false, current, rank}; }

}  // namespace

TEST(Placement, OneDatabaseGetsEveryWorkerUpToTheCap) {
    EXPECT_EQ(targets({idle()}, 4, 0), std::vector<int>({4}));
    EXPECT_EQ(targets({active()}, 4, 0), std::vector<int>({4}));
    EXPECT_EQ(targets({active()}, 4, 3), std::vector<int>({3}));
    EXPECT_EQ(targets({active()}, 0, 0), std::vector<int>({0}));
}

TEST(Placement, EqualBacklogsShareEqually) {
    EXPECT_EQ(targets({active(), active(), active()}, 6, 0), std::vector<int>({2, 2, 2}));
    EXPECT_EQ(targets({active(6), active(), active()}, 6, 0), std::vector<int>({2, 2, 2}));
    // 7 over 3: the one with most workers now keeps the odd one
    EXPECT_EQ(targets({active(1), active(5), active(1)}, 7, 0), std::vector<int>({2, 3, 2}));
}

TEST(Placement, IdleDatabasesKeepOneSoThatNewWorkStartsAtOnce) {
    EXPECT_EQ(targets({active(), idle(), idle()}, 6, 0), std::vector<int>({4, 1, 1}));
    // with the busy one at its cap, the rest goes to the idle ones
    EXPECT_EQ(targets({active(), idle(), idle()}, 6, 2), std::vector<int>({2, 2, 2}));
    EXPECT_EQ(targets({active(), idle(), idle()}, 7, 2), std::vector<int>({2, 2, 2}));
}

TEST(Placement, IdleDatabasesKeepAtMostHalfWhenTheyCannotAllHaveOne) {
    // 4 workers, 7 databases, a backlog in one: it gets 3 (until 2026-12-07: 1, three idle ones holding the others)
    EXPECT_EQ(targets({idle(1), idle(1), idle(1), active(1), idle(), idle(), idle()}, 4, 0),
              std::vector<int>({1, 0, 0, 3, 0, 0, 0}));
    EXPECT_EQ(targets({active(), active(), idle(), idle(), idle(), idle(), idle(), idle(), idle(), idle()}, 8, 0),
              std::vector<int>({3, 2, 1, 1, 1, 0, 0, 0, 0, 0}));
    // at least one stays free to move at once
    EXPECT_EQ(targets({idle(1), idle(1), active()}, 2, 0), std::vector<int>({1, 0, 1}));
    // enough for every idle one: each keeps its own, the busy ones get the rest
    EXPECT_EQ(targets({active(), idle(), idle(), idle(), idle()}, 10, 0), std::vector<int>({6, 1, 1, 1, 1}));
    EXPECT_EQ(targets({active(), active(), idle(), idle(), idle(), idle(), idle(), idle(), idle(), idle()}, 10, 0),
              std::vector<int>({1, 1, 1, 1, 1, 1, 1, 1, 1, 1}));
    // with nothing busy, every database gets one before any gets two
    EXPECT_EQ(targets({idle(2), idle(2), idle(), idle()}, 4, 0), std::vector<int>({1, 1, 1, 1}));
    // the busy one at its cap: idle ones without a worker get one before any gets two
    EXPECT_EQ(targets({active(), idle(), idle(), idle(), idle()}, 6, 2), std::vector<int>({2, 1, 1, 1, 1}));
    EXPECT_EQ(targets({active(), idle(), idle(), idle(), idle(), idle()}, 7, 2), std::vector<int>({2, 1, 1, 1, 1, 1}));
}

TEST(Placement, AnActiveDatabaseGetsAWorkerBeforeAnIdleOne) {
    EXPECT_EQ(targets({idle(1), idle(1), active()}, 3, 0), std::vector<int>({1, 1, 1}));
    EXPECT_EQ(targets({idle(2), active()}, 2, 0), std::vector<int>({1, 1}));
    EXPECT_EQ(targets({idle(2), active()}, 3, 0), std::vector<int>({1, 2}));
    EXPECT_EQ(targets({idle(2), idle(), active()}, 1, 0), std::vector<int>({0, 0, 1}));
}

TEST(Placement, RankDecidesWhenThereAreMoreBusyDatabasesThanWorkers) {
    EXPECT_EQ(targets({active(1, 2), active(1, 0), active(0, 1)}, 2, 0), std::vector<int>({0, 1, 1}));
    EXPECT_EQ(targets({active(1, 0), active(1, 2), active(0, 1)}, 2, 0), std::vector<int>({1, 0, 1}));
}

TEST(Placement, NeverMoreThanTotalNorTheCap) {
    for (int total = 0; total <= 12; total++)
        for (int cap = 0; cap <= 5; cap++) {
            std::vector<Database> dbs = {active(3), idle(), active(), idle(2), active(1)};
            std::vector<int> t = targets(dbs, total, cap);
            int sum = 0;
            for (int x : t) {
                sum += x;
                if (cap > 0) {
                    EXPECT_LE(x, cap);
                }
            }
            int room = cap > 0 ? cap * 5 : total;
            EXPECT_EQ(sum, total < room ? total : room) << "total " << total << " cap " << cap;
        }
}
