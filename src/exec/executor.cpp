#include "exec/executor.hpp"

#include "core/backoff.hpp"
#include "exec/context.hpp"
#include "exec/function_step.hpp"
#include "exec/http_queue.hpp"
#include "exec/http_step.hpp"
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
    r->done = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * p->nsteps));
    r->waiting_since = static_cast<TimestampTz *>(MemoryContextAllocZero(run_ctx, sizeof(TimestampTz) * p->nsteps));
    r->waiting_note = static_cast<Jsonb **>(MemoryContextAllocZero(run_ctx, sizeof(Jsonb *) * p->nsteps));
    r->task = -1;
    return r;
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
                       may_have_row(step) || r->task >= 0, r->task);
    if (!step->map || r->task >= 0) count_step(r, step, true);  // (a map step: its tasks are counted)
    if (r->task >= 0) return;
    r->outputs[pos] = output;
    r->last_attempt[pos] = attempt;
    r->done[pos] = true;
}

// "if": evaluated when the step becomes ready, against the context it would get.
bool condition_met(const RunState *r, int pos, int attempt) {
    Jsonb *cond = r->pipeline->steps[pos].if_cond;
    if (cond == nullptr) return true;
    Jsonb *ctx = build_context(r, pos, attempt);
    return DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(ctx), JsonbPGetDatum(cond)));
}

void record_skipped(RunState *r, int pos, int attempt, TimestampTz started) {
    store::buffer_step(r->id, pos, attempt, r->pipeline->steps[pos].name, StepStatus::Skipped, nullptr, nullptr,
                       started, false);
    r->outputs[pos] = nullptr;
    r->last_attempt[pos] = attempt;
    r->done[pos] = true;
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
// defer_retry: a map task with others in flight -- a failure with attempts left is recorded and returns
// RetryScheduled without touching the run (the task is issued again once an answer resumes the run).
Outcome record_failure(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                       const StepResult &res, bool defer_retry = false) {
    const store::Step *step = &r->pipeline->steps[pos];
    bool retryable = res.retryable;
    const char *msg = res.edata != nullptr ? function_step_error(step, res.edata, &retryable) : res.error;
    bool cancelled = shared::cancel_requested(r->id) || (res.error != nullptr && strcmp(res.error, "cancelled") == 0);
    if (cancelled) msg = "cancelled";
    store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Failed, nullptr, msg, started,
                       may_have_row(step) || r->task >= 0, r->task);
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
    if (r->task >= 0) {
        // a task with no attempts left fails its step (the step's own row says so too)
        msg = psprintf("task %d: %s", r->task, msg);
        store::buffer_step(r->id, pos, r->last_attempt[pos] + 1, step->name, StepStatus::Failed, nullptr, msg, started);
        r->last_attempt[pos]++;
    }
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

// What a map step got instead of an array (NULL: an array).
const char *not_an_array(Jsonb *prev) {
    if (prev == nullptr) return "null";
    if (JB_ROOT_IS_SCALAR(prev)) {
        JsonbValue v;
        if (JsonbExtractScalar(&prev->root, &v)) return JsonbTypeName(&v);
        return "a scalar";
    }
    return JB_ROOT_IS_OBJECT(prev) ? "object" : nullptr;
}

// A map step over a child pipeline: a child run per element (at most max_parallel unfinished at once), each task's
// row waiting with its child's id; the run waits while any is unfinished (a child's finish wakes it), each task's
// attempts are its children. false: the run stopped or waits (*out says how).
bool run_child_map(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started, Jsonb *prev,
                   int n, MemoryContext run_ctx, Outcome *out) {
    const store::Step *step = &r->pipeline->steps[pos];
    auto alloc = [&](size_t bytes) { return MemoryContextAllocZero(run_ctx, bytes > 0 ? bytes : 1); };
    Jsonb **outs = static_cast<Jsonb **>(alloc(sizeof(Jsonb *) * n));
    int *last = static_cast<int *>(alloc(sizeof(int) * n));
    bool *done = static_cast<bool *>(alloc(sizeof(bool) * n));
    int64 *child = static_cast<int64 *>(alloc(sizeof(int64) * n));  // the latest attempt's child, while it waits
    TimestampTz *since = static_cast<TimestampTz *>(alloc(sizeof(TimestampTz) * n));
    for (int h = 0; h < r->nhistory; h++) {
        const store::StepRecord &row = r->history[h];
        if (row.pos != pos || row.task < 0 || row.task >= n) continue;
        if (row.attempt > last[row.task]) {
            last[row.task] = row.attempt;
            bool waiting = strcmp(row.status, "waiting") == 0;
            child[row.task] = waiting ? note_child(row.output) : 0;
            since[row.task] = waiting ? row.started : 0;
        }
        if (strcmp(row.status, "succeeded") == 0) {
            done[row.task] = true;
            outs[row.task] = row.output != nullptr ? row.output : json_null();
        }
    }
    int limit = step->max_parallel > 0 ? step->max_parallel : INT_MAX;
    int unfinished = 0, depth = -1;
    store::lock_parent(r->id);  // (children read after it: none finishes unseen)
    for (int i = 0; i < n; i++) {
        if (done[i] || child[i] == 0) continue;
        StepResult res;
        if (!look_at_child(child[i], step, run_ctx, &res)) {
            unfinished++;
            continue;
        }
        r->task = i;
        if (res.succeeded()) {
            record_success(r, pos, last[i], since[i], res.output);
            outs[i] = res.output;
            done[i] = true;
        } else {
            Outcome o = record_failure(claimed, r, pos, last[i], since[i], res, true);
            if (o != Outcome::RetryScheduled) {  // no attempts left (or cancelled): the step fails
                r->task = -1;
                *out = o;
                return false;
            }
        }
        child[i] = 0;
        r->task = -1;
    }
    for (int i = 0; i < n && unfinished < limit; i++) {
        if (done[i] || child[i] != 0) continue;
        if (shared::cancel_requested(r->id)) {
            *out = record_cancelled(claimed, r, pos, last[i] + 1, GetCurrentTimestamp(), false);
            return false;
        }
        if (depth < 0) depth = store::run_depth(r->id);
        StepResult res;
        int64 c = start_child(r, pos, JsonbValueToJsonb(getIthJsonbValueFromContainer(&prev->root, i)), &res.error, depth);
        r->task = i;
        if (c == 0) {  // not allowed, or too deep: the step fails
            *out = record_failure(claimed, r, pos, last[i] + 1, GetCurrentTimestamp(), res);
            r->task = -1;
            return false;
        }
        store::buffer_step(r->id, pos, last[i] + 1, step->name, StepStatus::Waiting, child_note(c), nullptr,
                           GetCurrentTimestamp(), true, i);
        r->task = -1;
        unfinished++;
    }
    if (unfinished > 0) {
        note_wait(r, GetCurrentTimestamp() + kChildRecheckUs, nullptr);
        *out = Outcome::Waiting;
        return false;
    }
    MemoryContext old_ctx = MemoryContextSwitchTo(run_ctx);  // (r->outputs outlive SPI's procedure context)
    Jsonb *array = json_array(outs, n);
    MemoryContextSwitchTo(old_ctx);
    record_success(r, pos, attempt, started, array);
    return true;
}

// A map step: its tasks one after another in this worker, each with its own attempts (rows with task = index), then
// the step's own row with their outputs in element order. false: the run stopped there (*out says how).
bool run_map_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                  HttpCall *answer, HttpIO *io, MemoryContext run_ctx, ResourceOwner run_owner,
                  BetweenSteps between_steps, void *arg, Outcome *out) {
    const store::Step *step = &r->pipeline->steps[pos];
    Jsonb *prev = step_prev(r, pos);
    const char *got = not_an_array(prev);
    int n = got == nullptr ? static_cast<int>(JB_ROOT_COUNT(prev)) : 0;
    StepResult bad;
    if (got != nullptr)
        bad.error = psprintf("a map step needs a JSON array as prev, got %s", got);
    else if (n > guc::max_map_tasks)
        bad.error = psprintf("a map step takes at most %d elements (pipeline_worker.max_map_tasks), got %d",
                             guc::max_map_tasks, n);
    if (bad.error != nullptr) {
        *out = record_failure(claimed, r, pos, attempt, started, bad);  // (not retryable)
        return false;
    }
    if (step->kind == core::StepKind::Pipeline) return run_child_map(claimed, r, pos, attempt, started, prev, n, run_ctx, out);
    auto alloc = [&](size_t bytes) { return MemoryContextAllocZero(run_ctx, bytes > 0 ? bytes : 1); };
    Jsonb **outs = static_cast<Jsonb **>(alloc(sizeof(Jsonb *) * n));
    int *last = static_cast<int *>(alloc(sizeof(int) * n));
    bool *done = static_cast<bool *>(alloc(sizeof(bool) * n));
    bool *interrupted = static_cast<bool *>(alloc(sizeof(bool) * n));
    for (int h = 0; h < r->nhistory; h++) {
        const store::StepRecord &row = r->history[h];
        if (row.pos != pos || row.task < 0 || row.task >= n) continue;
        if (row.attempt > last[row.task]) {
            last[row.task] = row.attempt;
            interrupted[row.task] = strcmp(row.status, "running") == 0;
        }
        if (strcmp(row.status, "succeeded") == 0) {
            done[row.task] = true;
            outs[row.task] = row.output != nullptr ? row.output : json_null();
        }
    }
    // HTTP tasks in a worker: their requests are in flight together (at most max_parallel), each answer resumes the
    // run (several answers of one batch together), the tasks whose request is out are left alone.
    bool together = step->is_http && io != nullptr && io->park_parent != nullptr;
    bool *out_now = static_cast<bool *>(alloc(sizeof(bool) * n));
    int nflying = together ? httpq::tasks_in_flight(r->id, pos, out_now, n) : 0;
    int limit = step->max_parallel > 0 ? step->max_parallel : INT_MAX;
    int parked_now = 0;  // (not queued yet: httpq::pending() does not count them)
    int deferred_attempt = 0;  // a task failed with attempts left while others were out: its attempt
    long deferred_retry_after = 0;
    // the answers this resume brought for this step's tasks
    (void)answer;
    int nanswers = answer_count(io);
    auto answer_for = [&](int i, int a) -> HttpCall * {
        for (int k = 0; k < nanswers; k++) {
            HttpCall *c = answer_at(io, k);
            if (!c->consumed && c->pos == pos && c->task == i && c->attempt == a) {
                c->consumed = true;
                return c;
            }
        }
        return nullptr;
    };
    for (int i = 0; i < n; i++) {
        if (done[i]) continue;
        int a = last[i] + (interrupted[i] ? 0 : 1);
        HttpCall *answered = answer_for(i, a);
        if (answered == nullptr && together) {
            if (out_now[i]) continue;  // its request is out: its answer will resume the run
            // room for one more request (one at least, so that the run always has an answer to come)
            if (nflying > 0 && (nflying >= limit || httpq::capacity() - httpq::pending() - parked_now <= 0)) continue;
        }
        TimestampTz t_started = answered != nullptr ? answered->started : GetCurrentTimestamp();
        r->task = i;
        MemoryContext old = MemoryContextSwitchTo(run_ctx);
        r->item = JsonbValueToJsonb(getIthJsonbValueFromContainer(&prev->root, i));
        MemoryContextSwitchTo(old);
        StepResult res;
        if (shared::cancel_requested(r->id)) {
            *out = record_cancelled(claimed, r, pos, a, t_started, answered != nullptr || interrupted[i]);
            r->task = -1;
            return false;
        }
        if (step->is_http) res = run_http_step(claimed, r, pos, a, t_started, answered, io, run_ctx);
        else res.output = run_function_step(r, pos, a, run_ctx, run_owner, &res.edata);
        if (res.parked) {
            r->task = -1;
            if (!together) {
                *out = Outcome::Parked;
                return false;
            }
            nflying++;
            parked_now++;
            continue;
        }
        if (!res.succeeded()) {
            // (answers in hand for later tasks count as requests out: they are recorded below)
            bool others = nflying > 0 || work_out(r, io) > 0;
            Outcome o = record_failure(claimed, r, pos, a, t_started, res, together && others);
            r->task = -1;
            if (o == Outcome::RetryScheduled && together && others) {  // issued again later
                deferred_attempt = a;
                deferred_retry_after = res.retry_after_ms;
                continue;
            }
            *out = o;
            return false;
        }
        record_success(r, pos, a, t_started, res.output);
        r->task = -1;
        outs[i] = res.output;
        done[i] = true;
        if (between_steps != nullptr && !together) {
            SPI_finish();
            between_steps(arg);
            pg::spi_connect();
        }
    }
    for (int i = 0; i < n; i++)
        if (!done[i]) {
            // together: requests are out, their answers resume the run; or nothing is out any more but a task
            // waits for its retry: the run does, after the back-off
            *out = nflying > 0 || work_out(r, io) > 0 ? Outcome::Parked
                                                      : schedule_retry(claimed, step, deferred_attempt, deferred_retry_after);
            return false;
        }
    MemoryContext old_ctx = MemoryContextSwitchTo(run_ctx);  // (r->outputs outlive SPI's procedure context)
    Jsonb *array = json_array(outs, n);
    MemoryContextSwitchTo(old_ctx);
    record_success(r, pos, attempt, started, array);
    return true;
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
        if (together && work_out(r, io) > 0 && waits) continue;  // begins once nothing of the run is out
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
        if (between_steps != nullptr && k + 1 < nsteps) {
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
