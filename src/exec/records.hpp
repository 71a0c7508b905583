// What an attempt came to, recorded for the commit: its step row (a map task's with its index), the run's outcome
// (succeeded, a retry, failed, cancelled), the metrics; and how much of a run is still out.
#pragma once

#include "exec/context.hpp"
#include "exec/executor.hpp"
#include "exec/http_call.hpp"

namespace pw::exec {

// Whether an attempt's row may exist before it ends: an HTTP request's (running), a wait's (waiting).
bool may_have_row(const store::Step *step);
// A finished attempt, counted in metrics() by its step's kind.
void count_step(const RunState *r, const store::Step *step, bool ok);
// A step's (or, r->task set, a map task's) attempt succeeded.
void record_success(RunState *r, int pos, int attempt, TimestampTz started, Jsonb *output);
// The step's "if" was not met.
void record_skipped(RunState *r, int pos, int attempt, TimestampTz started);
// The back-off before the attempt after `attempt` (with its jitter; at least Retry-After).
long retry_delay(const store::Step *step, int attempt, long retry_after_ms);
// The run goes back to the queue for the step's next attempt, after its back-off (at least Retry-After).
Outcome schedule_retry(const store::ClaimedRun *claimed, const store::Step *step, int attempt, long retry_after_ms);
// The run goes back to the queue, due in delay_ms (a back-off computed before: exec/retry_holds.hpp).
Outcome retry_in(const store::ClaimedRun *claimed, long delay_ms);
// A failed attempt: its message, whether it is a cancellation, and what follows (retry, failure). defer_retry: a
// failure with attempts left is recorded and returns RetryScheduled without touching the run (other work of the run
// is out: the step is tried again once an answer resumes it). defer_failure: a failure with no attempt left is
// recorded as the step's row only and returns Failed without touching the run (the caller fails it later with
// fail_at_step, once the steps other workers execute have finished).
Outcome record_failure(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                       const StepResult &res, bool defer_retry = false, bool defer_failure = false);
// A step's attempt failed with no attempts left and its row is written (another worker ran it): the run fails.
Outcome fail_at_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, const char *msg);
// A map task failed with no attempts left (its row is written): the step's own row and the run fail, naming it.
Outcome fail_map_step(const store::ClaimedRun *claimed, RunState *r, int pos, int task, const char *msg,
                      TimestampTz started);
// The run was cancelled before its next attempt (an HTTP attempt whose row says running is closed as failed).
Outcome record_cancelled(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                         bool open_attempt);
// How much of the run is out: requests this process holds for it, calls parked in this execution, answers this
// resume brought and nobody recorded yet. While any is, the run stays parked: it must not wait, nor be retried.
int work_out(const RunState *r, const HttpIO *io);

}  // namespace pw::exec
