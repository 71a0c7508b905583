// One attempt of an HTTP step, Postgres side: the request built from the step and the run (headers, idempotency
// key, body), parked for the worker or performed now in a session, and the answer turned into an output or an
// error.
#pragma once

#include "exec/context.hpp"
#include "exec/http_call.hpp"

namespace pw::exec {

// Attempt `attempt` of HTTP step pos. `answer`: the call that answered this attempt (a parked run resumed), or
// NULL to start it: with io->park_parent set the call is parked (io->parked, result.parked; its "running" row
// buffered), otherwise performed now, inside the caller's transaction. SPI connected (disconnected meanwhile).
StepResult run_http_step(const store::ClaimedRun *claimed, const RunState *r, int pos, int attempt,
                         TimestampTz started, HttpCall *answer, HttpIO *io, MemoryContext run_ctx);

// A call whose run was cancelled while its request was in flight: record the attempt as failed.
void record_cancelled_call(HttpCall *call, const char *why = "cancelled");
// The answer of a request whose run failed meanwhile (another branch failed): the attempt is recorded as it ended --
// steps already executing finish and are recorded -- and the run is left as it is.
void record_late_answer(HttpCall *call);

}  // namespace pw::exec
