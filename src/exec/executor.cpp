#include "exec/executor.hpp"

#include "core/backoff.hpp"
#include "exec/context.hpp"
#include "exec/function_step.hpp"
#include "exec/http_queue.hpp"
#include "exec/http_step.hpp"
#include "exec/map_step.hpp"
#include "exec/records.hpp"
#include "exec/shared_tasks.hpp"
#include "exec/wait_step.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/gucs.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"
#include "store/children.hpp"
#include "store/pipelines.hpp"
#include "store/run_rows.hpp"
#include "store/task_rows.hpp"
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
    // "run R step N (name)", without psprintf's format parsing (~0.8 % of a W1 drain, once per step)
    char buf[160];
    size_t name_len = strlen(step->name);
    if (name_len > sizeof(buf) - 48) {
        pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s)", (long long)run_id, pos + 1, step->name));
        return;
    }
    char *p = buf;
    memcpy(p, "run ", 4);
    p += 4;
    p += pg_lltoa(run_id, p);
    memcpy(p, " step ", 6);
    p += 6;
    p += pg_ltoa(pos + 1, p);
    memcpy(p, " (", 2);
    p += 2;
    memcpy(p, step->name, name_len);
    p += name_len;
    memcpy(p, ")", 2);  // with the terminating NUL
    pgstat_report_activity(STATE_RUNNING, buf);
}

// "if": evaluated when the step becomes ready, against the context it would get.
bool condition_met(const RunState *r, int pos, int attempt) {
    Jsonb *cond = r->pipeline->steps[pos].if_cond;
    if (cond == nullptr) return true;
    Jsonb *ctx = build_context(r, pos, attempt);
    return DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(ctx), JsonbPGetDatum(cond)));
}

// Ready independent function steps of a graph, shared with idle workers (exec/shared_tasks.hpp): unit u is step
// pos[u]'s attempt[u]. The owner's units run here like any function step.
struct StepUnits {
    const store::ClaimedRun *claimed;
    RunState *r;
    int n;
    int pos[board::kUnits], attempt[board::kUnits];
    MemoryContext run_ctx;
    ResourceOwner run_owner;
    bool *deferred;
    int deferred_pos, deferred_attempt;
    long deferred_retry_after;
    Outcome out;

    // Step p's attempt a is tried again after the back-off: the run's retry waits for the longest of those deferred.
    void defer(int p, int a, long retry_after) {
        deferred[p] = true;
        long delay = core::retry_delay_ms(r->pipeline->steps[p].retry_delay_ms, a,
                                          static_cast<uint64>(pg_prng_uint64(&pg_global_prng_state)));
        if (retry_after > delay) delay = retry_after;
        if (deferred_pos >= 0 && delay <= deferred_retry_after) return;
        deferred_pos = p;
        deferred_attempt = a;
        deferred_retry_after = delay;
    }

    TaskEnd run(int u) {
        int p = pos[u], a = attempt[u];
        const store::Step *step = &r->pipeline->steps[p];
        if (shared::cancel_requested(r->id)) {
            out = record_cancelled(claimed, r, p, a, GetCurrentTimestamp(), false);
            return TaskEnd::Stop;
        }
        report_step(r->id, p, step);
        TimestampTz started = GetCurrentTimestamp();
        StepResult res;
        res.output = run_function_step(r, p, a, run_ctx, run_owner, &res.edata);
        note_step_time(r->pipeline->id, p, GetCurrentTimestamp() - started);
        if (res.succeeded()) {
            record_success(r, p, a, started, res.output);
            return TaskEnd::Done;
        }
        Outcome o = record_failure(claimed, r, p, a, started, res, true);
        if (o == Outcome::RetryScheduled) {  // tried again after the back-off, once the walk is over
            defer(p, a, res.retry_after_ms);
            return TaskEnd::Deferred;
        }
        out = o;
        return TaskEnd::Stop;
    }

    // What the helpers did: their rows read back. false: a step failed for good (the run fails, out says so).
    bool read_back(int final_failure) {
        store::TaskRecord *rows;
        int nrows = store::read_step_attempts(r->id, pos, n, &rows, run_ctx);
        for (int u = 0; u < n; u++) {
            int p = pos[u];
            if (r->done[p] || deferred[p]) continue;  // (ran here)
            for (int k = 0; k < nrows; k++) {
                if (rows[k].task != p || rows[k].attempt != attempt[u]) continue;
                if (strcmp(rows[k].status, "succeeded") == 0) {
                    MemoryContext old = MemoryContextSwitchTo(run_ctx);  // (not SPI's context)
                    r->outputs[p] = rows[k].output != nullptr ? rows[k].output : json_null();
                    MemoryContextSwitchTo(old);
                    r->last_attempt[p] = attempt[u];
                    r->done[p] = true;
                } else if (u == final_failure || attempt[u] >= r->pipeline->steps[p].max_attempts) {
                    out = fail_at_step(claimed, r, p, attempt[u], rows[k].error);
                    return false;
                } else {
                    r->last_attempt[p] = attempt[u];
                    defer(p, attempt[u], 0);
                }
            }
            // (no row: its helper died with it uncommitted; the walk runs it here)
        }
        return true;
    }
};

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
        for (int k = 0; k < nanswers; k++) {
            if (answer_at(io, k)->consumed) continue;
            if (strcmp(why, "cancelled") == 0) record_cancelled_call(answer_at(io, k), why);
            else record_late_answer(answer_at(io, k));  // (the run failed: what was executing is recorded as it ended)
        }
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
        // Other function steps are ready too: with idle workers, they run at once on several
        // (idle workers first: under full load nothing more is looked at)
        if (graph && step->kind == core::StepKind::Function && !r->waits && io != nullptr && io->pause != nullptr &&
            shared::idle_workers() > 0 && work_out(r, io) == 0) {
            StepUnits su;
            su.n = 0;
            su.pos[su.n] = pos;
            su.attempt[su.n++] = attempt;
            for (int k2 = k + 1; k2 < nsteps && su.n < board::kUnits; k2++) {
                int q = p->order[k2];
                const store::Step *sq = &p->steps[q];
                if (r->done[q] || out_now[q] || deferred[q] || waiting_now[q] || sq->kind != core::StepKind::Function ||
                    sq->map)
                    continue;
                bool ready = true;
                for (int d = 0; d < sq->ndeps && ready; d++) ready = r->done[sq->deps[d]];
                if (!ready || has_answer_for(q) || !condition_met(r, q, r->last_attempt[q] + 1)) continue;
                su.pos[su.n] = q;
                su.attempt[su.n++] = r->last_attempt[q] + 1;
            }
            if (su.n >= 2 && worth_sharing_steps(r, su.pos, su.n, io)) {
                su.claimed = claimed;
                su.r = r;
                su.run_ctx = run_ctx;
                su.run_owner = run_owner;
                su.deferred = deferred;
                su.deferred_pos = -1;
                su.out = Outcome::Failed;
                Shared sh = share_steps(r, su.pos, su.attempt, su.n, claimed->claims, io, arg,
                                        [](void *x, int u) { return static_cast<StepUnits *>(x)->run(u); }, &su);
                if (sh.shared) {
                    if (!sh.stopped && shared::cancel_requested(r->id)) {
                        su.out = record_cancelled(claimed, r, pos, attempt, GetCurrentTimestamp(), false);
                        sh.stopped = true;
                    }
                    if (sh.stopped || !su.read_back(sh.final_failure)) {
                        close_answers(su.out == Outcome::Cancelled ? "cancelled" : "its run failed meanwhile");
                        SPI_finish();
                        return su.out;
                    }
                    if (su.deferred_pos >= 0 && (deferred_pos < 0 || su.deferred_retry_after > deferred_retry_after)) {
                        deferred_pos = su.deferred_pos;
                        deferred_attempt = su.deferred_attempt;
                        deferred_retry_after = su.deferred_retry_after;
                    }
                    if (r->done[pos] || deferred[pos]) continue;
                    // (its helper died before committing it: it runs here)
                }
            }
        }
        // Requests of other branches parked in this execution leave -- and child runs started in it become claimable --
        // before a function step runs, not after it.
        if (together && step->kind == core::StepKind::Function && io->send_parked != nullptr &&
            (io->parked != nullptr || r->started_children)) {
            if (r->waits) r->committed_after_wait = true;
            r->started_children = false;
            SPI_finish();
            io->send_parked(arg, io);
            pg::spi_connect();
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
            case core::StepKind::Function: {
                TimestampTz t0 = graph ? GetCurrentTimestamp() : 0;
                res.output = run_function_step(r, pos, attempt, run_ctx, run_owner, &res.edata);
                if (graph) note_step_time(p->id, pos, GetCurrentTimestamp() - t0);
                break;
            }
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
            // steps wait (and nothing is out, and no step waits for its retry -- that one goes first): so does the run
            if (work_out(r, io) == 0 && r->waits && deferred_pos < 0) {
                if (r->committed_after_wait) {  // back to the queue at once: the next look waits, under the lock
                    store::buffer_run(claimed, RunStatus::Pending, nullptr, nullptr);
                    SPI_finish();
                    return Outcome::RetryScheduled;
                }
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
