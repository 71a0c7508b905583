// The steps of a pipeline as a graph: "depends_on" resolved to indexes, refused when it names an unknown step,
// the step itself or closes a cycle, and a topological order to execute in. Pure C++ (unit-tested).
#pragma once

#include <string>
#include <vector>

namespace pw::core {

struct StepSpec;

struct StepGraph {
    std::vector<std::vector<int>> deps;  // per step, the indexes it depends on (in the order written)
    std::vector<int> order;              // each step after its dependencies; among ready steps, those that only
                                         // start something (HTTP, sleep, wait_for, child run) first, then array order
};

// Throws DefinitionError (SQLSTATE 22023 with a hint) naming the unknown step, the self-dependency or the cycle.
StepGraph resolve_graph(const std::vector<StepSpec> &steps);

// Indexes of the steps nothing depends on (the run's result comes from them), in array order.
std::vector<int> sink_steps(const StepGraph &g);

}  // namespace pw::core
