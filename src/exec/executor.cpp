#include "exec/executor.hpp"

#include "core/backoff.hpp"
#include "exec/context.hpp"
#include "exec/function_step.hpp"
#include "exec/http_step.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/metrics.hpp"
#include "store/pipelines.hpp"
#include "store/run_rows.hpp"
#include "store/writes.hpp"

namespace pw::exec {

namespace {

using core::RunStatus;
using core::StepStatus;

// The run's state before its first step: its pipeline loaded, or a reason why it cannot run (the outcome is
// buffered then, and NULL returned).
RunState *begin_run(const store::ClaimedRun *claimed, MemoryContext run_ctx) {
    // Never run anything under an identity that no longer exists.
    if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(claimed->submitter))) {
        store::buffer_run(claimed, RunStatus::Failed, nullptr,
                          psprintf("the role that submitted this run (OID %u) no longer exists", claimed->submitter));
        return nullptr;
    }
    store::Pipeline *p = store::load_pipeline(claimed->pipeline);
    if (p == nullptr || p->id != claimed->pipeline_id) {
        // dropped, or dropped and re-created by someone else: never run another pipeline's steps for it
        store::buffer_run(claimed, RunStatus::Failed, nullptr,
                          psprintf("pipeline \"%s\" was dropped after this run was submitted", claimed->pipeline));
        return nullptr;
    }
    RunState *r = static_cast<RunState *>(MemoryContextAllocZero(run_ctx, sizeof(RunState)));
    r->id = claimed->id;
    r->pipeline_name = claimed->pipeline;
    r->submitter = claimed->submitter;
    r->input = claimed->input;
    r->metadata = claimed->metadata;
    r->pipeline = p;
    r->outputs = static_cast<Jsonb **>(MemoryContextAllocZero(run_ctx, sizeof(Jsonb *) * p->nsteps));
    r->last_attempt = static_cast<int *>(MemoryContextAllocZero(run_ctx, sizeof(int) * p->nsteps));
    r->interrupted = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * p->nsteps));
    r->next = 0;
    return r;
}

// Where the run continues: a parked run at its HTTP step (its earlier outputs came with it); a run claimed
// before (crash, retry) after its last committed step; a new run at its first.
void resume_run(RunState *r, const store::ClaimedRun *claimed, const HttpCall *answer, MemoryContext run_ctx) {
    int nsteps = r->pipeline->nsteps;
    if (answer != nullptr) {
        for (int i = 0; i < answer->pos && i < nsteps; i++) r->outputs[i] = answer->outputs[i];
        r->next = answer->pos;
        r->last_attempt[answer->pos] = answer->attempt - 1;
        return;
    }
    if (claimed->claims == 1) return;  // only runs claimed before have history
    store::StepRecord *rows;
    int n = store::read_step_history(r->id, &rows, run_ctx);
    for (int i = 0; i < n; i++) {
        int pos = rows[i].pos;
        if (pos < 0 || pos >= nsteps) continue;
        if (rows[i].attempt > r->last_attempt[pos]) {
            r->last_attempt[pos] = rows[i].attempt;
            // an HTTP request interrupted by a crash: re-issued as the same attempt (same idempotency key)
            r->interrupted[pos] = strcmp(rows[i].status, "running") == 0;
        }
        if (strcmp(rows[i].status, "succeeded") == 0) {
            r->outputs[pos] = rows[i].output != nullptr ? rows[i].output : json_null();
            if (pos + 1 > r->next) r->next = pos + 1;
        }
    }
    for (int i = 0; i < nsteps; i++)
        if (r->interrupted[i]) r->last_attempt[i]--;
}

// In a worker a step is the statement: statement_timestamp() inside it, and query_start in pg_stat_activity,
// are the step's start (now() stays the start of the transaction, shared by the runs of a batch: at most
// commit_interval_ms old).
void report_step(int64 run_id, int pos, const store::Step *step) {
    if (MyBackendType != B_BG_WORKER) return;
    SetCurrentStatementStartTimestamp();
    pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s)", (long long)run_id, pos + 1, step->name));
}

void record_success(RunState *r, int pos, int attempt, TimestampTz started, Jsonb *output) {
    const store::Step *step = &r->pipeline->steps[pos];
    store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Succeeded, output, nullptr, started, step->is_http);
    metrics::step_done(r->pipeline->name, step->is_http ? metrics::kHttp : metrics::kFunction, true);
    r->outputs[pos] = output;
    r->last_attempt[pos] = attempt;
    r->next = pos + 1;
}

// A failed attempt is retried after a back-off (at least the endpoint's Retry-After).
Outcome schedule_retry(const store::ClaimedRun *claimed, const store::Step *step, int attempt, long retry_after_ms) {
    int delay = core::retry_delay_ms(step->retry_delay_ms, attempt,
                                     static_cast<uint64>(pg_prng_uint64(&pg_global_prng_state)));
    if (retry_after_ms > delay) delay = static_cast<int>(retry_after_ms);
    store::buffer_run(claimed, RunStatus::Pending, nullptr, nullptr, delay);
    return Outcome::RetryScheduled;
}

// A failed attempt: its message, whether it is a cancellation, and what follows (retry, failure).
Outcome record_failure(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                       const StepResult &res) {
    const store::Step *step = &r->pipeline->steps[pos];
    bool retryable = res.retryable;
    const char *msg = res.edata != nullptr ? function_step_error(step, res.edata, &retryable) : res.error;
    bool cancelled = shared::cancel_requested(r->id) || (res.error != nullptr && strcmp(res.error, "cancelled") == 0);
    if (cancelled) msg = "cancelled";
    store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Failed, nullptr, msg, started, step->is_http);
    metrics::step_done(r->pipeline->name, step->is_http ? metrics::kHttp : metrics::kFunction, false);
    r->last_attempt[pos] = attempt;
    if (cancelled) {
        store::buffer_run(claimed, RunStatus::Cancelled, nullptr, "cancelled");
        return Outcome::Cancelled;
    }
    if (attempt < step->max_attempts && retryable) return schedule_retry(claimed, step, attempt, res.retry_after_ms);
    store::buffer_run(claimed, RunStatus::Failed, nullptr, psprintf("step \"%s\" failed: %s", step->name, msg));
    return Outcome::Failed;
}

// The run was cancelled before its next attempt (an HTTP attempt whose row says running is closed as failed).
Outcome record_cancelled(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                         bool open_attempt) {
    if (open_attempt) {
        store::buffer_step(r->id, pos, attempt, r->pipeline->steps[pos].name, StepStatus::Failed, nullptr,
                           "cancelled", started, true);
        metrics::step_done(r->pipeline->name, metrics::kHttp, false);
    }
    store::buffer_run(claimed, RunStatus::Cancelled, nullptr, "cancelled");
    return Outcome::Cancelled;
}

}  // namespace

const char *outcome_text(Outcome o) {
    switch (o) {
        case Outcome::Succeeded: return core::to_text(RunStatus::Succeeded);
        case Outcome::Failed: return core::to_text(RunStatus::Failed);
        case Outcome::Cancelled: return core::to_text(RunStatus::Cancelled);
        case Outcome::RetryScheduled: return core::to_text(RunStatus::Pending);
        case Outcome::Parked: return "http";
    }
    return "unknown";
}

Outcome execute_claimed(const store::ClaimedRun *claimed_arg, BetweenSteps between_steps, void *arg, HttpIO *io) {
    MemoryContext run_ctx = CurrentMemoryContext;
    ResourceOwner run_owner = CurrentResourceOwner;
    HttpCall *answer = io != nullptr ? io->resume : nullptr;
    const store::ClaimedRun *claimed = answer != nullptr ? &answer->run : claimed_arg;
    pg::spi_connect();
    RunState *r = begin_run(claimed, run_ctx);
    if (r == nullptr) {
        SPI_finish();
        return Outcome::Failed;
    }
    resume_run(r, claimed, answer, run_ctx);
    int nsteps = r->pipeline->nsteps;
    while (r->next < nsteps) {
        int pos = r->next;
        const store::Step *step = &r->pipeline->steps[pos];
        int attempt = r->last_attempt[pos] + 1;
        HttpCall *answered = answer != nullptr && pos == answer->pos && attempt == answer->attempt ? answer : nullptr;
        answer = nullptr;  // answers one attempt only
        TimestampTz started = answered != nullptr ? answered->started : GetCurrentTimestamp();
        report_step(r->id, pos, step);
        if (shared::cancel_requested(r->id)) {
            SPI_finish();
            return record_cancelled(claimed, r, pos, attempt, started, answered != nullptr || r->interrupted[pos]);
        }
        StepResult res;
        if (step->is_http) {
            res = run_http_step(claimed, r, pos, attempt, started, answered, io, run_ctx);
        } else {
            res.output = run_function_step(r, pos, attempt, run_ctx, run_owner, &res.edata);
        }
        if (res.parked) {
            SPI_finish();
            return Outcome::Parked;
        }
        if (!res.succeeded()) {
            Outcome o = record_failure(claimed, r, pos, attempt, started, res);
            SPI_finish();
            return o;
        }
        record_success(r, pos, attempt, started, res.output);
        if (between_steps != nullptr && r->next < nsteps) {
            SPI_finish();
            between_steps(arg);
            pg::spi_connect();
        }
    }
    store::buffer_run(claimed, RunStatus::Succeeded, r->outputs[nsteps - 1], nullptr);
    SPI_finish();
    return Outcome::Succeeded;
}

}  // namespace pw::exec
