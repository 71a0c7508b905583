#include "exec/map_step.hpp"

#include "exec/function_step.hpp"
#include "exec/http_queue.hpp"
#include "exec/http_step.hpp"
#include "exec/records.hpp"
#include "exec/retry_holds.hpp"
#include "exec/shared_tasks.hpp"
#include "exec/wait_step.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/gucs.hpp"
#include "store/children.hpp"
#include "store/task_rows.hpp"
#include "store/writes.hpp"

namespace pw::exec {

using core::StepStatus;

namespace {

constexpr int64 kShareAfterUs = 5000;

// Every task done: the step's own row gets the array of their outputs (built in run_ctx: r->outputs outlive SPI's
// procedure context).
bool finish_map(RunState *r, int pos, int attempt, TimestampTz started, Jsonb **outs, int n, MemoryContext run_ctx) {
    MemoryContext old = MemoryContextSwitchTo(run_ctx);
    Jsonb *array = json_array(outs, n);
    MemoryContextSwitchTo(old);
    record_success(r, pos, attempt, started, array);
    return true;
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
    return finish_map(r, pos, attempt, started, outs, n, run_ctx);
}

// The tasks of a function or HTTP map step in this execution: what the history says of each, and one task's attempt.
struct TaskMap {
    const store::ClaimedRun *claimed;
    RunState *r;
    int pos, n;
    const store::Step *step;
    Jsonb *prev;
    Jsonb **outs;
    int *last;
    bool *done, *interrupted, *failed;  // failed: the latest attempt failed
    bool *later;                        // failed in this execution with attempts left: tried again after the back-off
    bool *out_now;
    bool together;  // HTTP tasks in a worker: requests in flight together
    bool sharing;   // tasks shared with other workers: a failure with attempts left is retried after the rest
    int nflying, limit, parked_now;
    HttpIO *io;
    MemoryContext run_ctx;
    ResourceOwner run_owner;
    BetweenSteps between_steps;
    void *arg;
    Outcome out;

    HttpCall *answer_for(int i, int a) {
        for (int k = 0; k < answer_count(io); k++) {
            HttpCall *c = answer_at(io, k);
            if (!c->consumed && c->pos == pos && c->task == i && c->attempt == a) {
                c->consumed = true;
                return c;
            }
        }
        return nullptr;
    }

    // Task i's attempt after `failed` waits delay_ms, also should an answer resume the run first
    // (exec/retry_holds.hpp): the run's retry waits for the longest.
    void defer_task(int i, int failed, long delay_ms) {
        hold_retry(r->id, pos, i, failed, delay_ms);
        note_deferred(delay_ms);
    }
    void note_deferred(long delay_ms) {
        if (delay_ms > r->map_retry_ms) r->map_retry_ms = delay_ms;
    }

    TaskEnd run(int i);
};

TaskEnd TaskMap::run(int i) {
    if (done[i]) return TaskEnd::Done;
    int a = last[i] + (interrupted[i] ? 0 : 1);
    HttpCall *answered = answer_for(i, a);
    if (answered == nullptr && together) {
        if (out_now[i]) return TaskEnd::Out;  // its request is out: its answer will resume the run
        // room for one more request (one at least, so that the run always has an answer to come)
        if (nflying > 0 && (nflying >= limit || httpq::capacity() - httpq::pending() - parked_now <= 0))
            return TaskEnd::Out;
    }
    if (answered == nullptr && !interrupted[i] && last[i] > 0) {  // failed before this resume: its back-off over?
        long left = held_retry_ms(r->id, pos, i, last[i]);
        if (left > 0) {
            note_deferred(left);
            return TaskEnd::Deferred;
        }
    }
    TimestampTz t_started = answered != nullptr ? answered->started : GetCurrentTimestamp();
    r->task = i;
    MemoryContext old = MemoryContextSwitchTo(run_ctx);
    r->item = JsonbValueToJsonb(getIthJsonbValueFromContainer(&prev->root, i));
    MemoryContextSwitchTo(old);
    StepResult res;
    if (shared::cancel_requested(r->id)) {
        out = record_cancelled(claimed, r, pos, a, t_started, answered != nullptr || interrupted[i]);
        r->task = -1;
        return TaskEnd::Stop;
    }
    if (step->is_http) res = run_http_step(claimed, r, pos, a, t_started, answered, io, run_ctx);
    else res.output = run_function_step(r, pos, a, run_ctx, run_owner, &res.edata);
    if (res.parked) {
        r->task = -1;
        if (!together) {
            out = Outcome::Parked;
            return TaskEnd::Stop;
        }
        nflying++;
        parked_now++;
        return TaskEnd::Out;
    }
    if (!res.succeeded()) {
        // (answers in hand for later tasks count as requests out: they are recorded below)
        // (with anything of the run out -- its tasks' requests, another branch's request sent early, tasks shared --
        // the run cannot go back to the queue now: the task is tried again once the rest is in)
        // (in a graph, as for its steps: the other tasks and branches go on, the retry waits at the end of the walk)
        bool others = sharing || nflying > 0 || work_out(r, io) > 0 || !r->pipeline->linear;
        Outcome o = record_failure(claimed, r, pos, a, t_started, res, others);
        r->task = -1;
        if (o == Outcome::RetryScheduled && others) {  // issued again later, after its back-off
            defer_task(i, a, retry_delay(step, a, res.retry_after_ms));
            last[i] = a;
            failed[i] = later[i] = true;
            return TaskEnd::Deferred;
        }
        out = o;
        return TaskEnd::Stop;
    }
    record_success(r, pos, a, t_started, res.output);
    r->task = -1;
    outs[i] = res.output;
    done[i] = true;
    if (between_steps != nullptr && !together) {
        SPI_finish();
        if (between_steps(arg) && r->waits) r->committed_after_wait = true;  // (as between steps: executor.cpp)
        pg::spi_connect();
    }
    return TaskEnd::Done;
}

// The rows of tasks [lo, n) after they were shared: what the helpers did. false: one failed with no attempts left
// (the step fails, *out says so).
bool read_back(TaskMap *m, int lo, int final_failure) {
    store::TaskRecord *rows;
    int nrows = store::read_task_rows(m->r->id, m->pos, lo, m->n, &rows, m->run_ctx);
    for (int k = 0; k < nrows; k++) {
        const store::TaskRecord &row = rows[k];
        int i = row.task;
        if (row.attempt < m->last[i] || (row.attempt == m->last[i] && (m->done[i] || m->failed[i]))) continue;
        m->last[i] = row.attempt;
        m->interrupted[i] = false;
        m->done[i] = strcmp(row.status, "succeeded") == 0;
        m->failed[i] = !m->done[i];
        if (m->done[i]) {
            MemoryContext old = MemoryContextSwitchTo(m->run_ctx);  // (not SPI's context)
            m->outs[i] = row.output != nullptr ? row.output : json_null();
            MemoryContextSwitchTo(old);
        }
        bool final = m->failed[i] && (i == final_failure || row.attempt >= m->step->max_attempts);
        if (final && !shared::cancel_requested(m->r->id)) {
            m->out = fail_map_step(m->claimed, m->r, m->pos, i, row.error, row.started);
            return false;
        }
        if (m->failed[i]) {  // (every row here is of this execution: the tasks were never tried before it)
            m->later[i] = true;
            m->defer_task(i, row.attempt, retry_delay(m->step, row.attempt, 0));
        }
    }
    return true;
}

}  // namespace

// A map step: its tasks one after another in this worker -- or, function tasks with idle workers around, shared
// with them (exec/shared_tasks.hpp) --, each with its own attempts (rows with task = index), then the step's own
// row with their outputs in element order. false: the run stopped there (*out says how).
bool run_map_step(const store::ClaimedRun *claimed, RunState *r, int pos, int attempt, TimestampTz started,
                  HttpCall *answer, HttpIO *io, MemoryContext run_ctx, ResourceOwner run_owner,
                  BetweenSteps between_steps, void *arg, Outcome *out) {
    r->map_retry_ms = -1;
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
    (void)answer;
    auto alloc = [&](size_t bytes) { return MemoryContextAllocZero(run_ctx, bytes > 0 ? bytes : 1); };
    TaskMap m;
    m.claimed = claimed;
    m.r = r;
    m.pos = pos;
    m.n = n;
    m.step = step;
    m.prev = prev;
    m.outs = static_cast<Jsonb **>(alloc(sizeof(Jsonb *) * n));
    m.last = static_cast<int *>(alloc(sizeof(int) * n));
    m.done = static_cast<bool *>(alloc(sizeof(bool) * n));
    m.interrupted = static_cast<bool *>(alloc(sizeof(bool) * n));
    m.failed = static_cast<bool *>(alloc(sizeof(bool) * n));
    m.later = static_cast<bool *>(alloc(sizeof(bool) * n));
    m.out_now = static_cast<bool *>(alloc(sizeof(bool) * n));
    m.io = io;
    m.run_ctx = run_ctx;
    m.run_owner = run_owner;
    m.between_steps = between_steps;
    m.arg = arg;
    m.sharing = false;
    m.parked_now = 0;  // (not queued yet: httpq::pending() does not count them)
    m.out = Outcome::Failed;
    int tried = -1;  // the highest task with a row: the tasks after it were never tried (they may be shared)
    for (int h = 0; h < r->nhistory; h++) {
        const store::StepRecord &row = r->history[h];
        if (row.pos != pos || row.task < 0 || row.task >= n) continue;
        tried = row.task > tried ? row.task : tried;
        if (row.attempt > m.last[row.task]) {
            m.last[row.task] = row.attempt;
            m.interrupted[row.task] = strcmp(row.status, "running") == 0;
            m.failed[row.task] = strcmp(row.status, "failed") == 0;
        }
        if (strcmp(row.status, "succeeded") == 0) {
            m.done[row.task] = true;
            m.failed[row.task] = false;
            m.outs[row.task] = row.output != nullptr ? row.output : json_null();
        }
    }
    // HTTP tasks in a worker: their requests are in flight together (at most max_parallel), each answer resumes the
    // run (several answers of one batch together), the tasks whose request is out are left alone.
    m.together = step->is_http && io != nullptr && io->park_parent != nullptr;
    m.nflying = m.together ? httpq::tasks_in_flight(r->id, pos, m.out_now, n) : 0;
    m.limit = step->max_parallel > 0 ? step->max_parallel : INT_MAX;
    // Sharing costs a commit, a wake-up and the helpers' transactions (about a millisecond): worth it only when the
    // tasks left would take longer than kShareAfterUs here, judged from the tasks this execution ran so far.
    bool may_share = !m.together;
    TimestampTz loop_start = GetCurrentTimestamp();
    int ran_here = 0;
    for (int i = 0; i < n; i++) {
        if (may_share && i > tried && ran_here > 0 &&
            (GetCurrentTimestamp() - loop_start) / ran_here * (n - i) >= kShareAfterUs &&
            worth_sharing(step, io, i, n)) {
            may_share = false;  // (once: what is left after it runs here)
            m.sharing = true;   // (a failure with attempts left while others may be out: retried after them)
            Shared sh = share_tasks(r, pos, i, n, claimed->claims, io, arg,
                                    [](void *map, int task) { return static_cast<TaskMap *>(map)->run(task); }, &m);
            if (sh.stopped) {
                *out = m.out;
                return false;
            }
            m.sharing = sh.shared;
            if (sh.shared) {
                if (shared::cancel_requested(r->id)) {
                    *out = record_cancelled(claimed, r, pos, m.last[i] + 1, GetCurrentTimestamp(), false);
                    return false;
                }
                if (!read_back(&m, i, sh.final_failure)) {
                    *out = m.out;
                    return false;
                }
            }
        }
        if (m.later[i]) continue;  // failed in this execution: tried again after the back-off
        ran_here += !m.done[i];
        TaskEnd e = m.run(i);
        if (e == TaskEnd::Stop) {
            *out = m.out;
            return false;
        }
    }
    for (int i = 0; i < n; i++)
        if (!m.done[i]) {
            // together: requests are out, their answers resume the run; or nothing is out any more but a task
            // waits for its retry: the run does, after the back-off
            // (in a graph the walk defers the step -- exec/executor.cpp -- and goes on with the other branches)
            if (m.nflying > 0 || work_out(r, io) > 0) *out = Outcome::Parked;
            else if (!r->pipeline->linear) *out = Outcome::RetryScheduled;
            else *out = retry_in(claimed, r->map_retry_ms > 0 ? r->map_retry_ms : 0);  // (the longest back-off)
            return false;
        }
    return finish_map(r, pos, attempt, started, m.outs, n, run_ctx);
}

}  // namespace pw::exec
