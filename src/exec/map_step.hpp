// Map steps: a task per element of prev -- function tasks one after another, HTTP tasks in flight together, child
// runs (a map over a "pipeline" step) in parallel across workers -- and the step's output, the array of theirs.
#pragma once

#include "exec/context.hpp"
#include "exec/executor.hpp"
#include "exec/http_call.hpp"

namespace pw::exec {

// false: the run stopped at the step (parked, waiting, failed, cancelled, a retry): *out says how.
bool run_map_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                  HttpCall *answer, HttpIO *io, MemoryContext run_ctx, ResourceOwner run_owner,
                  BetweenSteps between_steps, void *arg, Outcome *out);

}  // namespace pw::exec
