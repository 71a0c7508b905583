// Where the workers go when one installation serves several databases: a pure function of what each database
// is doing now. Pure C++ (no Postgres headers); the launcher (src/worker/launcher.cpp) applies the result.
#pragma once

#include <vector>

namespace pw::core::placement {

struct Database {
    bool active = false;  // has work now (claimed recently, work committed, a timer due, never looked at yet)
    int current = 0;      // workers there now (leaving ones not counted)
    int rank = 0;         // who gets a worker first when there are fewer workers than databases (lower first)
};

// How many workers each database should have, in the order given. total: workers to place; cap: at most this many
// in one database (<= 0: no cap).
// - Every active database gets one before any gets two (by rank when there are not enough); then idle ones get one
//   each, so that new work there starts at once -- when the workers left cannot give every idle one its own, at most
//   half of them (at least one); then the rest is shared out one by one among the active databases (a backlog in one
//   cannot starve another), and only when they are all at the cap among idle ones (those without a worker first).
// - Among equals, a database that has more workers now keeps them (fewer moves).
std::vector<int> targets(const std::vector<Database> &dbs, int total, int cap);

}  // namespace pw::core::placement
