#include "placement.hpp"

#include <algorithm>
#include <numeric>

namespace pw::core::placement {

namespace {

// Gives one worker at a time to the databases in `order` that pass `eligible`, round-robin, while any is left.
// once: a single round.
template <typename Eligible>
void deal(const std::vector<int> &order, std::vector<int> &t, int &left, Eligible eligible, bool once) {
    bool gave = true;
    while (left > 0 && gave) {
        gave = false;
        for (int i : order) {
            if (left == 0) break;
            if (!eligible(i)) continue;
            t[i]++;
            left--;
            gave = true;
        }
        if (once) break;
    }
}

}  // namespace

std::vector<int> targets(const std::vector<Database> &dbs, int total, int cap) {
    const int n = static_cast<int>(dbs.size());
    std::vector<int> t(n, 0);
    int left = total > 0 ? total : 0;
    auto below_cap = [&](int i) { return cap <= 0 || t[i] < cap; };

    // rank first, then more workers now (keep them where they are), then position (stable)
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        if (dbs[a].rank != dbs[b].rank) return dbs[a].rank < dbs[b].rank;
        return dbs[a].current > dbs[b].current;
    });

    auto busy = [&](int i) { return dbs[i].active && below_cap(i); };
    auto idle = [&](int i) { return !dbs[i].active && below_cap(i); };
    deal(order, t, left, busy, true);
    // Idle ones keep one, so that new work there starts at once (a worker moved from a busy database leaves only
    // after its batch: with long steps, seconds). When the workers left cannot give every idle one its own, new work
    // there waits for a move anyway: then idle ones keep at most half of them (at least one, a worker free to move at
    // once). Until 2026-12-07 idle ones came first in every case: with 4 workers and 7 databases, a backlog had one
    // worker while three waited idle.
    bool any_busy = std::any_of(order.begin(), order.end(), [&](int i) { return dbs[i].active; });
    int idle_ones = static_cast<int>(std::count_if(order.begin(), order.end(), [&](int i) { return idle(i); }));
    int spare = !any_busy || left >= idle_ones ? left : std::max(1, left / 2);
    spare = std::min(spare, left);
    int spare_before = spare;
    deal(order, t, spare, idle, true);
    left -= spare_before - spare;
    deal(order, t, left, busy, false);
    // (the busy ones at the cap: idle ones without a worker first)
    deal(order, t, left, [&](int i) { return t[i] == 0 && idle(i); }, true);
    deal(order, t, left, idle, false);
    return t;
}

}  // namespace pw::core::placement
