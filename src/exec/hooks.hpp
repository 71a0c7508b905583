// What the executor needs from the process it runs in, handed to it by that process: a worker installs its
// hooks at start (crash marker, signal flags); a session executing a run (execute_run) has none. The executor
// never reaches into the worker.
#pragma once

#include "pg/pg.hpp"

namespace pw::exec {

struct StepHooks {
    // Around each call of a step function: before it (run, 1-based position, attempt, map task or -1), and after
    // it -- also when it failed.
    void (*step_begin)(int64 run_id, int position, int attempt, int task);
    void (*step_end)();
    // After a failed step: a message that replaces the step's error (e.g. the step tried to terminate its own
    // worker), consumed by the call; NULL if there is none.
    const char *(*take_failure_reason)();
};

// nullptr: no hooks (a session).
void set_hooks(const StepHooks *hooks);
const StepHooks *hooks();
inline bool in_worker() { return hooks() != nullptr; }

// True while a step function is being called in this process (read by signal handlers).
bool in_step();
// The run whose step function is being called in this process (0: none).
int64 step_run();
// cancel_run of that run, from its own step: the step's end rolls it back and the run is recorded cancelled, as for a
// cancel from outside (its request would go with the step's subtransaction). own_cancel(run) answers, and forgets it.
void cancel_own_run();
bool own_cancel(int64 run_id);

}  // namespace pw::exec
