#include "exec/records.hpp"

#include "core/backoff.hpp"
#include "exec/function_step.hpp"
#include "exec/hooks.hpp"
#include "exec/http_queue.hpp"
#include "shmem/cancels.hpp"
#include "shmem/metrics.hpp"
#include "store/writes.hpp"

namespace pw::exec {

using core::RunStatus;
using core::StepStatus;

// Whether an attempt's row may exist before it ends: an HTTP request's (running), a wait's (waiting).
bool may_have_row(const store::Step *step) { return step->kind != core::StepKind::Function; }

// A finished attempt, counted in metrics() by its step's kind.
void count_step(const RunState *r, const store::Step *step, bool ok) {
    metrics::StepKind kind = metrics::kFunction;
    switch (step->kind) {
        case core::StepKind::Function: kind = metrics::kFunction; break;
        case core::StepKind::Http: kind = metrics::kHttp; break;
        case core::StepKind::Pipeline: kind = metrics::kPipeline; break;
        case core::StepKind::Sleep: kind = metrics::kSleep; break;
        case core::StepKind::WaitFor: kind = metrics::kWaitFor; break;
    }
    metrics::step_done(r->pipeline->name, kind, ok);
}

// A step's (or, r->task set, a map task's) attempt succeeded.
void record_success(RunState *r, int pos, int attempt, TimestampTz started, Jsonb *output) {
    const store::Step *step = &r->pipeline->steps[pos];
    store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Succeeded, output, nullptr, started,
                       may_have_row(step), r->task);
    if (!step->map || r->task >= 0) count_step(r, step, true);  // (a map step: its tasks are counted)
    if (r->task >= 0) return;
    r->outputs[pos] = output;
    r->last_attempt[pos] = attempt;
    r->done[pos] = true;
}

void record_skipped(RunState *r, int pos, int attempt, TimestampTz started) {
    store::buffer_step(r->id, pos, attempt, r->pipeline->steps[pos].name, StepStatus::Skipped, nullptr, nullptr,
                       started, false);
    r->outputs[pos] = nullptr;
    r->last_attempt[pos] = attempt;
    r->done[pos] = true;
}

// A failed attempt is retried after a back-off (at least the endpoint's Retry-After).
long retry_delay(const store::Step *step, int attempt, long retry_after_ms) {
    long delay = core::retry_delay_ms(step->retry_delay_ms, attempt,
                                      static_cast<uint64>(pg_prng_uint64(&pg_global_prng_state)));
    return retry_after_ms > delay ? retry_after_ms : delay;
}

Outcome schedule_retry(const store::ClaimedRun *claimed, const store::Step *step, int attempt, long retry_after_ms) {
    store::buffer_run(claimed, RunStatus::Pending, nullptr, nullptr,
                      static_cast<int>(retry_delay(step, attempt, retry_after_ms)));
    return Outcome::RetryScheduled;
}

Outcome retry_in(const store::ClaimedRun *claimed, long delay_ms) {
    store::buffer_run(claimed, RunStatus::Pending, nullptr, nullptr, static_cast<int>(delay_ms));
    return Outcome::RetryScheduled;
}

// A failed attempt: its message, whether it is a cancellation, and what follows (retry, failure).
// defer_retry: a map task with others in flight -- a failure with attempts left is recorded and returns
// RetryScheduled without touching the run (the task is issued again once an answer resumes the run).
Outcome record_failure(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                       const StepResult &res, bool defer_retry, bool defer_failure) {
    const store::Step *step = &r->pipeline->steps[pos];
    bool retryable = res.retryable;
    const char *msg = res.edata != nullptr ? function_step_error(step, res.edata, &retryable) : res.error;
    bool cancelled = shared::cancel_requested(r->id) || own_cancel(r->id) ||
                     (res.error != nullptr && strcmp(res.error, "cancelled") == 0);
    if (cancelled) msg = "cancelled";
    store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Failed, nullptr, msg, started,
                       may_have_row(step), r->task);
    count_step(r, step, false);
    if (r->task < 0) r->last_attempt[pos] = attempt;
    if (cancelled) {
        store::buffer_run(claimed, RunStatus::Cancelled, nullptr, "cancelled");
        return Outcome::Cancelled;
    }
    if (attempt < step->max_attempts && retryable) {
        if (defer_retry) return Outcome::RetryScheduled;
        return schedule_retry(claimed, step, attempt, res.retry_after_ms);
    }
    if (r->task >= 0) return fail_map_step(claimed, r, pos, r->task, msg, started);
    if (defer_failure) return Outcome::Failed;
    store::buffer_run(claimed, RunStatus::Failed, nullptr, psprintf("step \"%s\" failed: %s", step->name, msg));
    return Outcome::Failed;
}

Outcome fail_at_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, const char *msg) {
    const store::Step *step = &r->pipeline->steps[pos];
    r->last_attempt[pos] = attempt;
    store::buffer_run(claimed, RunStatus::Failed, nullptr,
                      psprintf("step \"%s\" failed: %s", step->name, msg != nullptr ? msg : "failed"));
    return Outcome::Failed;
}

Outcome fail_map_step(const store::ClaimedRun *claimed, RunState *r, int pos, int task, const char *msg,
                      TimestampTz started) {
    const store::Step *step = &r->pipeline->steps[pos];
    msg = psprintf("task %d: %s", task, msg != nullptr ? msg : "failed");
    store::buffer_step(r->id, pos, r->last_attempt[pos] + 1, step->name, StepStatus::Failed, nullptr, msg, started);
    r->last_attempt[pos]++;
    store::buffer_run(claimed, RunStatus::Failed, nullptr, psprintf("step \"%s\" failed: %s", step->name, msg));
    return Outcome::Failed;
}

// The run was cancelled before its next attempt (an HTTP attempt whose row says running is closed as failed).
Outcome record_cancelled(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                         bool open_attempt) {
    if (open_attempt) {
        store::buffer_step(r->id, pos, attempt, r->pipeline->steps[pos].name, StepStatus::Failed, nullptr,
                           "cancelled", started, true, r->task);
        metrics::step_done(r->pipeline->name, metrics::kHttp, false);
    }
    store::buffer_run(claimed, RunStatus::Cancelled, nullptr, "cancelled");
    return Outcome::Cancelled;
}

// How much of the run is out besides what the caller is deciding about: requests this process holds for it, calls
// parked in this execution (not queued yet), answers this resume brought and nobody recorded yet. While any is, the
// run stays parked (an answer will resume it): it must not wait, nor go back to the queue for a retry.
int work_out(const RunState *r, const HttpIO *io) {
    int n = httpq::calls_of_run(r->id);
    if (io == nullptr) return n;
    n += (io->parked != nullptr ? 1 : 0) + list_length(io->parked_more);
    for (int k = 0; k < answer_count(io); k++) n += !answer_at(io, k)->consumed;
    return n;
}

}  // namespace pw::exec
