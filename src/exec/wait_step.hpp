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
StepResult run_wait_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt,
                         TimestampTz started, MemoryContext run_ctx);

// Child runs ("pipeline" steps, and map tasks over a pipeline). A child run is looked at when it finishes (its parent
// is woken then) and, as a safety net, at least every minute (kChildRecheckUs).
constexpr int64 kChildRecheckUs = 60 * USECS_PER_SEC;
// The note a waiting row keeps, {"child_run_id": N}, and back (0: none).
Jsonb *child_note(int64 child_id);
int64 note_child(Jsonb *note);
// Starts a child run of step pos with `input`, as the run's submitter, after checking the nesting depth (the run's,
// when known, else -1) and the submitter's right: its id, or 0 with *error set.
int64 start_child(RunState *r, int pos, Jsonb *input, const char **error, int depth = -1);
// false while the child is unfinished; else *res says how it ended (output, or a retryable error).
bool look_at_child(int64 child, const store::Step *step, MemoryContext run_ctx, StepResult *res);

}  // namespace pw::exec
