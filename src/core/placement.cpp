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

    deal(order, t, left, [&](int i) { return dbs[i].active && below_cap(i); }, true);
    deal(order, t, left, [&](int i) { return !dbs[i].active && below_cap(i); }, true);
    deal(order, t, left, [&](int i) { return dbs[i].active && below_cap(i); }, false);
    deal(order, t, left, [&](int i) { return !dbs[i].active && below_cap(i); }, false);
    return t;
}

}  // namespace pw::core::placement
