#include "exec/executor.hpp"

#include "core/backoff.hpp"
#include "exec/context.hpp"
#include "exec/function_step.hpp"
#include "exec/http_queue.hpp"
#include "exec/http_step.hpp"
#include "exec/map_step.hpp"
#include "exec/records.hpp"
#include "exec/wait_step.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/gucs.hpp"
#include "shmem/metrics.hpp"
#include "store/children.hpp"
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
    return new_run_state(claimed, p, run_ctx);
}

// Where the run continues: a parked run at its HTTP step (the outputs so far came with it); a run claimed
// before (crash, retry, a wait over) with the steps its history shows finished; a new run at its first step.
void resume_run(RunState *r, const store::ClaimedRun *claimed, const HttpCall *answer, MemoryContext run_ctx) {
    int nsteps = r->pipeline->nsteps;
    if (answer != nullptr) {
        for (int i = 0; i < answer->nsteps && i < nsteps; i++) {
            r->done[i] = answer->done[i];
            r->outputs[i] = answer->outputs[i];
        }
        if (answer->task < 0 && r->pipeline->linear) {
            r->last_attempt[answer->pos] = answer->attempt - 1;
            return;
        }
        // an answer to a map task (the step's other tasks are in the history, committed before the request left),
        // or to a step of a graph whose other branches went on meanwhile: the history says where the run is
    } else if (claimed->claims == 1) {
        return;  // only runs claimed before have history
    }
    store::StepRecord *rows;
    int n = store::read_step_history(r->id, &rows, run_ctx);
    r->history = rows;
    r->nhistory = n;
    MemoryContext old = MemoryContextSwitchTo(run_ctx);  // (json_null() below: not in SPI's context)
    for (int i = 0; i < n; i++) {
        int pos = rows[i].pos;
        if (pos < 0 || pos >= nsteps || rows[i].task >= 0) continue;  // (map tasks: see run_map_step)
        if (rows[i].attempt > r->last_attempt[pos]) {
            r->last_attempt[pos] = rows[i].attempt;
            // an HTTP request interrupted by a crash: re-issued as the same attempt (same idempotency key)
            r->interrupted[pos] = strcmp(rows[i].status, "running") == 0;
            // a sleep or event wait under way: looked at again as the same attempt, from when it began
            r->waiting_since[pos] = strcmp(rows[i].status, "waiting") == 0 ? rows[i].started : 0;
            r->waiting_note[pos] = r->waiting_since[pos] != 0 ? rows[i].output : nullptr;
        }
        bool skipped = strcmp(rows[i].status, "skipped") == 0;
        if (skipped || strcmp(rows[i].status, "succeeded") == 0) {
            r->done[pos] = true;
            r->outputs[pos] = rows[i].output != nullptr ? rows[i].output : skipped ? nullptr : json_null();
        }
    }
    MemoryContextSwitchTo(old);
    for (int i = 0; i < nsteps; i++)
        if (r->interrupted[i] || r->waiting_since[i] != 0) r->last_attempt[i]--;
}

// In a worker a step is the statement: statement_timestamp() inside it, and query_start in pg_stat_activity,
// are the step's start (now() stays the start of the transaction, shared by the runs of a batch: at most
// commit_interval_ms old).
void report_step(int64 run_id, int pos, const store::Step *step) {
    if (MyBackendType != B_BG_WORKER) return;
    SetCurrentStatementStartTimestamp();
    pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s)", (long long)run_id, pos + 1, step->name));
}

// "if": evaluated when the step becomes ready, against the context it would get.
bool condition_met(const RunState *r, int pos, int attempt) {
    Jsonb *cond = r->pipeline->steps[pos].if_cond;
    if (cond == nullptr) return true;
    Jsonb *ctx = build_context(r, pos, attempt);
    return DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(ctx), JsonbPGetDatum(cond)));
}

}  // namespace

const char *outcome_text(Outcome o) {
    switch (o) {
        case Outcome::Succeeded: return core::to_text(RunStatus::Succeeded);
        case Outcome::Failed: return core::to_text(RunStatus::Failed);
        case Outcome::Cancelled: return core::to_text(RunStatus::Cancelled);
        case Outcome::RetryScheduled: return core::to_text(RunStatus::Pending);
        case Outcome::Parked: return "http";
        case Outcome::Waiting: return core::to_text(RunStatus::Waiting);
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
    const store::Pipeline *p = r->pipeline;
    int nsteps = p->nsteps;
    // In a topological order. One step at a time, except that in a worker the HTTP requests of independent branches
    // are out together: a step whose request is out, or that depends on one not done, is passed over, and the run
    // stays parked while any is out (its answers resume it). Sleeps, event waits and child runs begin once none is.
    bool together = io != nullptr && io->park_parent != nullptr && !p->linear;
    // A graph's branches go on past a step that waits (sleep, event, child runs); the run waits at the end of the
    // walk, until the earliest of its steps' wake-ups or an event.
    bool graph = !p->linear;
    bool *waiting_now = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * nsteps));
    bool *out_now = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * nsteps));
    bool *deferred = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * nsteps));
    int nout = together ? httpq::steps_in_flight(r->id, out_now, nsteps) : 0;
    int deferred_pos = -1, deferred_attempt = 0;
    long deferred_retry_after = 0;
    // the answers this resume brought (several when branches' or map tasks' requests answered together)
    int nanswers = answer_count(io);
    auto answer_for = [&](int pos, int attempt) -> HttpCall * {
        for (int k = 0; k < nanswers; k++) {
            HttpCall *c = answer_at(io, k);
            if (!c->consumed && c->pos == pos && c->task < 0 && c->attempt == attempt) {
                c->consumed = true;
                return c;
            }
        }
        return nullptr;
    };
    auto has_answer_for = [&](int pos) {
        for (int k = 0; k < nanswers; k++)
            if (!answer_at(io, k)->consumed && answer_at(io, k)->pos == pos) return true;
        return false;
    };
    // The run stops here: the answers it brought and did not record are recorded as such.
    auto close_answers = [&](const char *why) {
        for (int k = 0; k < nanswers; k++)
            if (!answer_at(io, k)->consumed) record_cancelled_call(answer_at(io, k), why);
    };
    for (int k = 0; k < nsteps; k++) {
        int pos = p->order[k];
        if (r->done[pos]) continue;
        const store::Step *step = &p->steps[pos];
        if (graph) {
            if (out_now[pos] || deferred[pos] || waiting_now[pos]) continue;
            bool ready = true;
            for (int d = 0; d < step->ndeps && ready; d++) ready = r->done[step->deps[d]];
            if (!ready) continue;
        }
        int attempt = r->last_attempt[pos] + 1;
        bool step_answered = has_answer_for(pos);
        HttpCall *answered = step->map ? nullptr : answer_for(pos, attempt);
        TimestampTz started = answered != nullptr ? answered->started
                              : r->waiting_since[pos] != 0 ? r->waiting_since[pos]
                                                           : GetCurrentTimestamp();
        report_step(r->id, pos, step);
        if (shared::cancel_requested(r->id)) {
            Outcome o = record_cancelled(claimed, r, pos, attempt, started, answered != nullptr || r->interrupted[pos]);
            close_answers("cancelled");
            SPI_finish();
            return o;
        }
        bool under_way = step_answered || r->interrupted[pos] || r->waiting_since[pos] != 0;
        if (!under_way && !condition_met(r, pos, attempt)) {
            record_skipped(r, pos, attempt, started);
            continue;
        }
        bool waits = step->kind == core::StepKind::Sleep || step->kind == core::StepKind::WaitFor ||
                     step->kind == core::StepKind::Pipeline;
        // a wait begins once nothing of the run is out (one under way is looked at: its wake-up must be noted)
        if (together && work_out(r, io) > 0 && waits && r->waiting_since[pos] == 0) continue;
        if (step->map) {
            Outcome o;
            if (!run_map_step(claimed, r, pos, attempt, started, nullptr, io, run_ctx, run_owner, between_steps, arg,
                              &o)) {
                if (together && o == Outcome::Parked) {  // its tasks' requests are out: other branches go on
                    out_now[pos] = true;
                    nout++;
                    continue;
                }
                if (graph && o == Outcome::Waiting) {  // its children run: other branches go on
                    waiting_now[pos] = true;
                    continue;
                }
                if (o == Outcome::Waiting) store::buffer_wait(claimed, r->wait_until, r->wait_event);
                if (o == Outcome::Failed || o == Outcome::Cancelled)
                    close_answers(o == Outcome::Cancelled ? "cancelled" : "its run failed meanwhile");
                SPI_finish();
                return o;
            }
            continue;
        }
        StepResult res;
        switch (step->kind) {
            case core::StepKind::Http:
                res = run_http_step(claimed, r, pos, attempt, started, answered, io, run_ctx);
                break;
            case core::StepKind::Sleep:
            case core::StepKind::WaitFor:
            case core::StepKind::Pipeline:
                res = run_wait_step(claimed, r, pos, attempt, started, run_ctx);
                break;
            case core::StepKind::Function:
                res.output = run_function_step(r, pos, attempt, run_ctx, run_owner, &res.edata);
                break;
        }
        if (res.parked && together) {
            out_now[pos] = true;
            nout++;
            continue;
        }
        if (res.waiting && graph) {
            waiting_now[pos] = true;
            continue;
        }
        if (res.waiting) store::buffer_wait(claimed, r->wait_until, r->wait_event);
        if (res.parked || res.waiting) {
            SPI_finish();
            return res.parked ? Outcome::Parked : Outcome::Waiting;
        }
        if (!res.succeeded()) {
            bool others = work_out(r, io) > 0;
            Outcome o = record_failure(claimed, r, pos, attempt, started, res, together && others);
            if (o == Outcome::RetryScheduled && together && others) {  // tried again once an answer resumes the run
                deferred[pos] = true;
                deferred_pos = pos;
                deferred_attempt = attempt;
                deferred_retry_after = res.retry_after_ms;
                continue;
            }
            close_answers(o == Outcome::Cancelled ? "cancelled" : "its run failed meanwhile");
            SPI_finish();
            return o;
        }
        record_success(r, pos, attempt, started, res.output);
        // (no commit once a step waits: its event is looked for under the run's row lock, held until the run is
        // recorded waiting -- a send_event in between would find the run running and not wake it)
        if (between_steps != nullptr && k + 1 < nsteps && !r->waits) {
            SPI_finish();
            between_steps(arg);
            pg::spi_connect();
        }
    }
    for (int i = 0; i < nsteps; i++)
        if (!r->done[i]) {
            // requests are out (their answers resume the run), or a step waits for its retry: the run does
            if (work_out(r, io) == 0 && r->waits) {  // steps wait (and nothing is out): so does the run
                store::buffer_wait(claimed, r->wait_until, r->wait_event);
                SPI_finish();
                return Outcome::Waiting;
            }
            Outcome o = work_out(r, io) > 0 ? Outcome::Parked
                                 : schedule_retry(claimed, &p->steps[deferred_pos >= 0 ? deferred_pos : i],
                                                  deferred_attempt, deferred_retry_after);
            SPI_finish();
            return o;
        }
    store::buffer_run(claimed, RunStatus::Succeeded, run_result(r), nullptr);
    SPI_finish();
    return Outcome::Succeeded;
}

}  // namespace pw::exec
