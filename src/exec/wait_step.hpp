// Steps that wait without holding anything: "sleep" (a durable sleep), "wait_for" (an event sent with
// send_event()) and "pipeline" (a child run). While one waits, its row says waiting and the run is waiting, with no worker and no transaction;
// the timer (not_before) or send_event() makes the run pending again, and the step is looked at anew.
#pragma once

#include "exec/context.hpp"
#include "store/claims.hpp"

namespace pw::exec {

// One look at the step: succeeded (output: prev for a sleep, the event's payload, the child's result), failed (an
// event wait timed out, the child failed: error, retryable), or waiting (the step's row and the run's waiting state are buffered). The output lives
// in run_ctx.
StepResult run_wait_step(const store::ClaimedRun *claimed, const RunState *r, int pos, int attempt,
                         TimestampTz started, MemoryContext run_ctx);

}  // namespace pw::exec
