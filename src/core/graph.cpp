#include "graph.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "definition.hpp"

namespace pw::core {

namespace {

const char *const kDependsHint =
    "\"depends_on\" lists names of other steps of the pipeline; [] makes a step a root; without it a step depends on "
    "the one before it.";

// A cycle among the steps left unordered: follow dependencies (all of them unordered too, some of them on a cycle)
// until a step repeats.
std::string describe_cycle(const std::vector<StepSpec> &steps, const std::vector<std::vector<int>> &deps,
                           const std::vector<bool> &ordered) {
    int start = 0;
    while (ordered[start]) start++;
    std::vector<int> path;
    std::map<int, size_t> at;
    int cur = start;
    while (at.find(cur) == at.end()) {
        at[cur] = path.size();
        path.push_back(cur);
        int next = -1;
        for (int d : deps[cur])
            if (!ordered[d]) {
                next = d;
                break;
            }
        cur = next;  // (an unordered step always has an unordered dependency)
    }
    std::string s;
    // path[at[cur]] ... back to cur: each depends on the next; written as "a -> b -> a" in dependency order
    std::vector<int> cyc(path.begin() + static_cast<long>(at[cur]), path.end());
    std::reverse(cyc.begin(), cyc.end());
    for (int i : cyc) s += json::quote(steps[i].name) + " -> ";
    s += json::quote(steps[cyc.front()].name);
    // (a step on it without "depends_on" depends on the step before it: said, or the cycle cannot be read off the
    // definition; acceptance walk-through, 2026-12-07)
    for (int i : cyc)
        if (!steps[i].has_depends_on)
            s += "; " + json::quote(steps[i].name) + " has no \"depends_on\" and so depends on the step before it, " +
                 json::quote(steps[i - 1].name);
    return s;
}

}  // namespace

StepGraph resolve_graph(const std::vector<StepSpec> &steps) {
    StepGraph g;
    size_t n = steps.size();
    std::map<std::string, int> index;
    for (size_t i = 0; i < n; i++) index[steps[i].name] = static_cast<int>(i);
    g.deps.resize(n);
    for (size_t i = 0; i < n; i++) {
        const StepSpec &s = steps[i];
        if (!s.has_depends_on) {
            if (i > 0) g.deps[i].push_back(static_cast<int>(i - 1));
            continue;
        }
        std::set<int> seen;
        std::string unknown;  // every unknown name, not only the first
        int nunknown = 0;
        for (const std::string &d : s.depends_on)
            if (index.find(d) == index.end()) {
                unknown += (nunknown++ > 0 ? ", " : "") + json::quote(d);
            }
        if (nunknown > 0)
            throw DefinitionError("step " + json::quote(s.name) + " depends on unknown step" + (nunknown > 1 ? "s " : " ") +
                                      unknown,
                                  kDependsHint);
        for (const std::string &d : s.depends_on) {
            auto it = index.find(d);
            if (it->second == static_cast<int>(i))
                throw DefinitionError("step " + json::quote(s.name) + " depends on itself", kDependsHint);
            if (!seen.insert(it->second).second)
                throw DefinitionError("step " + json::quote(s.name) + " lists " + json::quote(d) +
                                          " twice in \"depends_on\"",
                                      kDependsHint);
            g.deps[i].push_back(it->second);
        }
    }
    // Kahn's algorithm, the lowest ready index first: a linear pipeline keeps its array order. Among ready steps, those
    // that only start something -- an HTTP request, a sleep, an event wait, a child run -- go before function steps,
    // which hold the worker until they end: written after a function step, they began only once it ended (until
    // 2026-12-07; acceptance walk-through).
    auto key = [&steps](int i) { return std::make_pair(steps[i].kind == StepKind::Function ? 1 : 0, i); };
    auto first = [&key](int a, int b) { return key(a) < key(b); };
    std::vector<int> missing(n);
    std::vector<std::vector<int>> dependents(n);
    for (size_t i = 0; i < n; i++) {
        missing[i] = static_cast<int>(g.deps[i].size());
        for (int d : g.deps[i]) dependents[d].push_back(static_cast<int>(i));
    }
    std::set<int, decltype(first)> ready(first);
    for (size_t i = 0; i < n; i++)
        if (missing[i] == 0) ready.insert(static_cast<int>(i));
    std::vector<bool> ordered(n, false);
    while (!ready.empty()) {
        int i = *ready.begin();
        ready.erase(ready.begin());
        g.order.push_back(i);
        ordered[i] = true;
        for (int d : dependents[i])
            if (--missing[d] == 0) ready.insert(d);
    }
    if (g.order.size() < n)
        throw DefinitionError("the steps' dependencies form a cycle: " + describe_cycle(steps, g.deps, ordered),
                              "A step can depend only on steps that do not depend on it, directly or indirectly.");
    return g;
}

std::vector<int> sink_steps(const StepGraph &g) {
    std::vector<bool> needed(g.deps.size(), false);
    for (const auto &ds : g.deps)
        for (int d : ds) needed[d] = true;
    std::vector<int> sinks;
    for (size_t i = 0; i < needed.size(); i++)
        if (!needed[i]) sinks.push_back(static_cast<int>(i));
    return sinks;
}

}  // namespace pw::core
