#include "exec/executor.hpp"

#include "core/backoff.hpp"
#include "exec/context.hpp"
#include "exec/function_step.hpp"
#include "exec/http_queue.hpp"
#include "exec/http_step.hpp"
#include "exec/map_step.hpp"
#include "exec/records.hpp"
#include "exec/retry_holds.hpp"
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
    int deferred_pos;
    long deferred_retry_after;
    Outcome out;
    int failed_here = -1;  // the unit that failed for good here (its row written, the run not failed yet)

    // Step p's attempt a is tried again after the back-off: the run's retry waits for the longest of those deferred.
    void defer(int p, int a, long retry_after) {
        deferred[p] = true;
        long delay = retry_delay(&r->pipeline->steps[p], a, retry_after);
        hold_retry(r->id, p, -1, a, delay);  // (should an answer of another branch resume the run first)
        if (deferred_pos >= 0 && delay <= deferred_retry_after) return;
        deferred_pos = p;
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
        Outcome o = record_failure(claimed, r, p, a, started, res, true, true);
        if (o == Outcome::RetryScheduled) {  // tried again after the back-off, once the walk is over
            defer(p, a, res.retry_after_ms);
            return TaskEnd::Deferred;
        }
        out = o;
        if (o != Outcome::Failed) return TaskEnd::Stop;  // (cancelled: recorded)
        // Failed for good: only its row is written. The steps other workers execute now finish and are recorded
        // (issue #14: "steps already executing finish and are recorded"); read_back then fails the run at this step.
        // (Until 2026-12-05 the run failed at once, and a helper's step under way rolled back by its guard.)
        if (failed_here < 0) failed_here = u;
        return TaskEnd::Failed;
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
                } else if (u == final_failure || u == failed_here ||
                           attempt[u] >= r->pipeline->steps[p].max_attempts) {
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

namespace {

// What one look at a step decided: go on with the walk's next step, stop the run here (with an outcome), or (for the
// parts before the step runs) run it.
enum class Flow { Next, Stop, Run };

// One execution of a run: the steps walked in a topological order. One step at a time, except that in a worker the
// HTTP requests of independent branches are out together: a step whose request is out, or that depends on one not
// done, is passed over, and the run stays parked while any is out (its answers resume it). Sleeps, event waits and
// child runs begin once none is. A graph's branches go on past a step that waits (sleep, event, child runs); the run
// waits at the end of the walk, until the earliest of its steps' wake-ups or an event. SPI connected throughout
// (between_steps and send_parked disconnect around themselves).
class Walk {
  public:
    Walk(const store::ClaimedRun *claimed, RunState *r, HttpIO *io, BetweenSteps between_steps, void *arg,
         MemoryContext run_ctx, ResourceOwner run_owner)
        : claimed_(claimed), r_(r), p_(r->pipeline), io_(io), between_steps_(between_steps), arg_(arg),
          run_ctx_(run_ctx), run_owner_(run_owner) {
        int n = p_->nsteps;
        together_ = io != nullptr && io->park_parent != nullptr && !p_->linear;
        graph_ = !p_->linear;
        waiting_now_ = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * n));
        out_now_ = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * n));
        deferred_ = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * n));
        if (together_) (void)httpq::steps_in_flight(r->id, out_now_, n);
        nanswers_ = answer_count(io);  // the answers this resume brought (several when requests answered together)
    }

    // The step at place k of the order: Next, or Stop with *o.
    Flow step(int k, Outcome *o) {
        int pos = p_->order[k];
        if (r_->done[pos] || (graph_ && !ready(pos))) return Flow::Next;
        const store::Step *step = &p_->steps[pos];
        int attempt = r_->last_attempt[pos] + 1;
        bool step_answered = has_answer_for(pos);
        HttpCall *answered = step->map ? nullptr : answer_for(pos, attempt);
        TimestampTz started = answered != nullptr ? answered->started
                              : r_->waiting_since[pos] != 0 ? r_->waiting_since[pos]
                                                            : GetCurrentTimestamp();
        report_step(r_->id, pos, step);
        if (shared::cancel_requested(r_->id)) {
            *o = record_cancelled(claimed_, r_, pos, attempt, started, answered != nullptr || r_->interrupted[pos]);
            close_answers("cancelled");
            return Flow::Stop;
        }
        bool under_way = step_answered || r_->interrupted[pos] || r_->waiting_since[pos] != 0;
        if (graph_ && !under_way && r_->last_attempt[pos] > 0) {  // a retry whose back-off is not over (an answer
            long left = held_retry_ms(r_->id, pos, -1, r_->last_attempt[pos]);  // of another branch resumed the run)
            if (left > 0) {
                defer(pos, left);
                return Flow::Next;
            }
        }
        if (!under_way && !condition_met(r_, pos, attempt)) {
            record_skipped(r_, pos, attempt, started);
            return Flow::Next;
        }
        bool waits = step->kind == core::StepKind::Sleep || step->kind == core::StepKind::WaitFor ||
                     step->kind == core::StepKind::Pipeline;
        // a wait begins once nothing of the run is out (one under way is looked at: its wake-up must be noted)
        if (together_ && work_out(r_, io_) > 0 && waits && r_->waiting_since[pos] == 0) return Flow::Next;
        if (step->map) return map_step(pos, attempt, started, o);
        Flow f = share_ready_functions(k, pos, attempt, o);
        if (f != Flow::Run) return f;
        send_parked_first(pos, step);
        StepResult res = run(step, pos, attempt, started, answered);
        return settle(k, pos, attempt, started, res, o);
    }

    // After the walk: the run succeeded, or waits, is parked, or is retried.
    Outcome end() {
        int nsteps = p_->nsteps;
        for (int i = 0; i < nsteps; i++) {
            if (r_->done[i]) continue;
            // steps wait (and nothing is out, and no step waits for its retry -- that one goes first): so does the run
            if (work_out(r_, io_) == 0 && r_->waits && deferred_pos_ < 0) {
                if (r_->committed_after_wait) {  // back to the queue at once: the next look waits, under the lock
                    store::buffer_run(claimed_, RunStatus::Pending, nullptr, nullptr);
                    return Outcome::RetryScheduled;
                }
                store::buffer_wait(claimed_, r_->wait_until, r_->wait_event);
                return Outcome::Waiting;
            }
            // requests are out (their answers resume the run), or a step waits for its retry
            if (work_out(r_, io_) > 0) return Outcome::Parked;
            if (deferred_pos_ >= 0) return retry_in(claimed_, deferred_retry_after_);  // (the longest back-off)
            return schedule_retry(claimed_, &p_->steps[i], 0, 0);
        }
        store::buffer_run(claimed_, RunStatus::Succeeded, run_result(r_), nullptr);
        return Outcome::Succeeded;
    }

  private:
    const store::ClaimedRun *claimed_;
    RunState *r_;
    const store::Pipeline *p_;
    HttpIO *io_;
    BetweenSteps between_steps_;
    void *arg_;
    MemoryContext run_ctx_;
    ResourceOwner run_owner_;
    bool together_ = false, graph_ = false;
    bool *waiting_now_ = nullptr, *out_now_ = nullptr, *deferred_ = nullptr;
    int nanswers_ = 0;
    int deferred_pos_ = -1;  // the step whose retry the run's waits for (the longest back-off)
    long deferred_retry_after_ = 0;

    // Step pos's next attempt waits delay_ms: the run's retry waits for the longest of those.
    void defer(int pos, long delay_ms) {
        deferred_[pos] = true;
        if (deferred_pos_ >= 0 && delay_ms <= deferred_retry_after_) return;
        deferred_pos_ = pos;
        deferred_retry_after_ = delay_ms;
    }

    // A graph's step may go now: not out, not waiting for its retry, not waiting, and every dependency done.
    bool ready(int pos) const {
        if (out_now_[pos] || deferred_[pos] || waiting_now_[pos]) return false;
        const store::Step *step = &p_->steps[pos];
        for (int d = 0; d < step->ndeps; d++)
            if (!r_->done[step->deps[d]]) return false;
        return true;
    }

    HttpCall *answer_for(int pos, int attempt) {
        for (int k = 0; k < nanswers_; k++) {
            HttpCall *c = answer_at(io_, k);
            if (!c->consumed && c->pos == pos && c->task < 0 && c->attempt == attempt) {
                c->consumed = true;
                return c;
            }
        }
        return nullptr;
    }

    bool has_answer_for(int pos) const {
        for (int k = 0; k < nanswers_; k++)
            if (!answer_at(io_, k)->consumed && answer_at(io_, k)->pos == pos) return true;
        return false;
    }

    // The run stops here: the answers it brought and did not record are recorded as such.
    void close_answers(const char *why) {
        for (int k = 0; k < nanswers_; k++) {
            if (answer_at(io_, k)->consumed) continue;
            if (strcmp(why, "cancelled") == 0) record_cancelled_call(answer_at(io_, k), why);
            else record_late_answer(answer_at(io_, k));  // (the run failed: what was executing is recorded as it ended)
        }
    }

    void stopped(Outcome o) { close_answers(o == Outcome::Cancelled ? "cancelled" : "its run failed meanwhile"); }

    Flow map_step(int pos, int attempt, TimestampTz started, Outcome *o) {
        if (run_map_step(claimed_, r_, pos, attempt, started, nullptr, io_, run_ctx_, run_owner_, between_steps_, arg_,
                         o))
            return Flow::Next;
        if (together_ && *o == Outcome::Parked) {  // its tasks' requests are out: other branches go on
            out_now_[pos] = true;
            // (or only other branches' are: tasks left for their back-off then wait for it, not for a new draw)
            if (r_->map_retry_ms >= 0) defer(pos, r_->map_retry_ms);
            return Flow::Next;
        }
        if (graph_ && *o == Outcome::RetryScheduled) {  // tasks wait for their back-off: other branches go on
            defer(pos, r_->map_retry_ms);  // (set: a task was left for later)
            return Flow::Next;
        }
        if (graph_ && *o == Outcome::Waiting) {  // its children run: other branches go on
            waiting_now_[pos] = true;
            return Flow::Next;
        }
        if (*o == Outcome::Waiting) store::buffer_wait(claimed_, r_->wait_until, r_->wait_event);
        if (*o == Outcome::Failed || *o == Outcome::Cancelled) stopped(*o);
        return Flow::Stop;
    }

    // Other function steps are ready too: with idle workers, they run at once on several (idle workers first: under
    // full load nothing more is looked at). Run: step pos runs here (as it would have). Also while other branches
    // have requests out or wait: the commit before sharing sends what they started (exec/shared_tasks.cpp).
    Flow share_ready_functions(int k, int pos, int attempt, Outcome *o) {
        if (!graph_ || p_->steps[pos].kind != core::StepKind::Function || io_ == nullptr || io_->pause == nullptr ||
            shared::free_workers() == 0)
            return Flow::Run;
        StepUnits su;
        su.n = 0;
        su.pos[su.n] = pos;
        su.attempt[su.n++] = attempt;
        for (int k2 = k + 1; k2 < p_->nsteps && su.n < board::kUnits; k2++) {
            int q = p_->order[k2];
            const store::Step *sq = &p_->steps[q];
            if (r_->done[q] || sq->kind != core::StepKind::Function || sq->map || !ready(q) || has_answer_for(q) ||
                (r_->last_attempt[q] > 0 && held_retry_ms(r_->id, q, -1, r_->last_attempt[q]) > 0) ||
                !condition_met(r_, q, r_->last_attempt[q] + 1))
                continue;
            su.pos[su.n] = q;
            su.attempt[su.n++] = r_->last_attempt[q] + 1;
        }
        if (su.n < 2 || !worth_sharing_steps(r_, su.pos, su.n, io_)) return Flow::Run;
        su.claimed = claimed_;
        su.r = r_;
        su.run_ctx = run_ctx_;
        su.run_owner = run_owner_;
        su.deferred = deferred_;
        su.deferred_pos = -1;
        su.out = Outcome::Failed;
        Shared sh = share_steps(r_, su.pos, su.attempt, su.n, claimed_->claims, io_, arg_,
                                [](void *x, int u) { return static_cast<StepUnits *>(x)->run(u); }, &su);
        if (!sh.shared) return Flow::Run;
        // (steps that became ready meanwhile, which helpers put up and executed: read back with the others)
        for (int u = su.n; u < sh.units && u < board::kUnits; u++) {
            su.pos[u] = sh.unit_pos[u];
            su.attempt[u] = sh.unit_attempt[u];
            su.n = u + 1;
        }
        if (!sh.stopped && shared::cancel_requested(r_->id)) {
            su.out = record_cancelled(claimed_, r_, pos, attempt, GetCurrentTimestamp(), false);
            sh.stopped = true;
        }
        if (sh.stopped || !su.read_back(sh.final_failure)) {
            stopped(su.out);
            *o = su.out;
            return Flow::Stop;
        }
        if (su.deferred_pos >= 0) defer(su.deferred_pos, su.deferred_retry_after);
        // (its helper died before committing it: it runs here)
        return r_->done[pos] || deferred_[pos] ? Flow::Next : Flow::Run;
    }

    // Requests of other branches parked in this execution leave -- and child runs started in it become claimable --
    // before a function step runs, not after it. Not before a step known to be fast: the commit (and, once a step
    // waits, the run's extra trip through the queue) would cost more than the step delays them.
    void send_parked_first(int pos, const store::Step *step) {
        if (!together_ || step->kind != core::StepKind::Function || io_->send_parked == nullptr ||
            (io_->parked == nullptr && !r_->started_children) || known_fast_step(r_, pos))
            return;
        if (r_->waits) r_->committed_after_wait = true;
        r_->started_children = false;
        SPI_finish();
        io_->send_parked(arg_, io_);
        pg::spi_connect();
    }

    StepResult run(const store::Step *step, int pos, int attempt, TimestampTz started, HttpCall *answered) {
        StepResult res;
        switch (step->kind) {
            case core::StepKind::Http:
                res = run_http_step(claimed_, r_, pos, attempt, started, answered, io_, run_ctx_);
                break;
            case core::StepKind::Sleep:
            case core::StepKind::WaitFor:
            case core::StepKind::Pipeline:
                res = run_wait_step(claimed_, r_, pos, attempt, started, run_ctx_);
                break;
            case core::StepKind::Function: {
                TimestampTz t0 = graph_ ? GetCurrentTimestamp() : 0;
                res.output = run_function_step(r_, pos, attempt, run_ctx_, run_owner_, &res.edata);
                if (graph_) note_step_time(p_->id, pos, GetCurrentTimestamp() - t0);
                break;
            }
        }
        return res;
    }

    // What the step came to: recorded, and whether the walk goes on.
    Flow settle(int k, int pos, int attempt, TimestampTz started, StepResult &res, Outcome *o) {
        if (res.parked && together_) {
            out_now_[pos] = true;
            return Flow::Next;
        }
        if (res.waiting && graph_) {
            waiting_now_[pos] = true;
            return Flow::Next;
        }
        if (res.waiting) store::buffer_wait(claimed_, r_->wait_until, r_->wait_event);
        if (res.parked || res.waiting) {
            *o = res.parked ? Outcome::Parked : Outcome::Waiting;
            return Flow::Stop;
        }
        if (!res.succeeded()) {
            // In a graph the other branches go on: the run's retry waits until the walk is over (until 2026-12-07 a
            // failure with attempts left stopped the walk, and a ready sibling waited for the back-off; acceptance
            // walk-through). While requests are out, the run stays parked and an answer may resume it first.
            bool defer_retry = graph_;
            *o = record_failure(claimed_, r_, pos, attempt, started, res, defer_retry);
            if (*o == Outcome::RetryScheduled && defer_retry) {  // tried again after its back-off: once an
                long delay = retry_delay(&p_->steps[pos], attempt, res.retry_after_ms);  // answer resumes the run
                hold_retry(r_->id, pos, -1, attempt, delay);                             // then, or from the queue
                defer(pos, delay);
                return Flow::Next;
            }
            stopped(*o);
            return Flow::Stop;
        }
        record_success(r_, pos, attempt, started, res.output);
        // (once a step waits, its event is looked for under the run's row lock, held until the run is recorded
        // waiting: after a commit in between, a send_event may have found the run running and not woken it -- the
        // run then goes back to the queue at the end of the walk, and its next look waits under the lock)
        if (between_steps_ != nullptr && k + 1 < p_->nsteps) {
            SPI_finish();
            if (between_steps_(arg_) && r_->waits) r_->committed_after_wait = true;
            pg::spi_connect();
        }
        return Flow::Next;
    }
};

}  // namespace

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
    Walk walk(claimed, r, io, between_steps, arg, run_ctx, run_owner);
    Outcome o = Outcome::Failed;
    bool stopped = false;
    for (int k = 0; k < r->pipeline->nsteps && !stopped; k++) stopped = walk.step(k, &o) == Flow::Stop;
    if (!stopped) o = walk.end();
    SPI_finish();
    return o;
}

}  // namespace pw::exec
