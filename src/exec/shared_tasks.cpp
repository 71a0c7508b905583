#include "exec/shared_tasks.hpp"

#include "exec/function_step.hpp"
#include "exec/records.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/shared.hpp"
#include "store/task_rows.hpp"
#include "store/writes.hpp"

namespace pw::exec {

using core::StepStatus;

namespace {

struct Waiting {
    int slot;
    uint64 generation;
    bool steps;  // independent steps, not a map's tasks
    // (set by helpers_gone once every helper has left: the entry's units, those helpers added included)
    int units;
    int *unit_pos, *unit_attempt;
};

// Every helper has left, and the entry is sealed: nobody joins any more. (Sealed here, before the pause begins the
// owner's next transaction: under REPEATABLE READ its snapshot must see the rows of every unit the seal returns.)
bool helpers_gone(void *arg) {
    Waiting *w = static_cast<Waiting *>(arg);
    if (!board::helpers_done(w->slot, w->generation)) return false;
    w->units = board::seal(w->slot, w->generation, w->unit_pos, w->unit_attempt);
    return w->units >= 0;  // (-1: a worker joined meanwhile)
}

bool at_once(void *) { return true; }

}  // namespace

bool worth_sharing(const store::Step *step, const HttpIO *io, int lo, int hi) {
    return step->kind == core::StepKind::Function && step->map && step->max_parallel != 1 && io != nullptr &&
           io->pause != nullptr && hi - lo >= 2 && shared::idle_workers() > 0;
}

namespace {

void extend_as_owner(const Waiting &w, HttpIO *io, void *arg);

// Runs chunks of the entry with run_task until none is left (or one of them failed for good: then none is handed out
// any more), then waits (no transaction open) for the helpers. An error on the way retires the entry (its helpers'
// chunks roll back by their guard) and goes on up.
Shared run_shared(RunState *r, const Waiting &w, int helpers, int claims, HttpIO *io, void *arg, RunTask run_task,
                  void *map) {
    Shared s;
    s.shared = true;
    shared::wake_workers(helpers);
    volatile bool stopped = false;
    PG_TRY();
    {
        int from, to;
        bool failed = false;
        while (!stopped && !failed && board::take(w.slot, w.generation, &from, &to)) {
            for (int i = from; i < to && !stopped && !failed; i++) {
                TaskEnd e = run_task(map, i);
                stopped = e == TaskEnd::Stop;
                failed = e == TaskEnd::Failed;
                // (closes the entry: the helpers take nothing more; what they execute now finishes and commits)
                if (failed) board::note_final_failure(w.slot, w.generation, i);
            }
        }
        if (!stopped) {
            // Every task is taken: what the helpers took is done (committed) or rolled back once they have left.
            board::close(w.slot, w.generation);
            // What this worker ran commits with the pause: only while the run is still its claim (locked until that
            // commit) -- a cancel_run + retry_run meanwhile, and another worker's claim, must not see it twice. A
            // cancel alone lets it commit (steps already executing finish and are recorded; the caller records it).
            if (!store::lock_if_claimed(r->id, MyProcPid, MyStartTimestamp, claims, true) &&
                !shared::cancel_requested(r->id))
                store::require_claimed(r->id, claims);
            SPI_finish();
            // Steps: while helpers still execute theirs, a step that what this worker ran made ready starts now --
            // here, rather than once the longest of them has ended (with what ran here committed first: helpers and
            // a joining worker read the run as committed). Helpers do the same for the steps theirs made ready.
            if (w.steps && !shared::cancel_requested(r->id) && !board::helpers_done(w.slot, w.generation)) {
                io->pause(arg, at_once, nullptr);
                extend_as_owner(w, io, arg);
            }
            pgstat_report_activity(STATE_RUNNING, psprintf("run %lld: waiting for the workers executing its steps",
                                                           static_cast<long long>(r->id)));
            Waiting copy = w;
            copy.unit_pos = s.unit_pos;
            copy.unit_attempt = s.unit_attempt;
            io->pause(arg, helpers_gone, &copy);
            s.units = copy.units;
            pg::spi_connect();
            s.final_failure = board::final_failure(w.slot, w.generation);
        }
    }
    PG_CATCH();
    {
        board::retire(w.slot, w.generation);
        PG_RE_THROW();
    }
    PG_END_TRY();
    board::retire(w.slot, w.generation);  // (when stopped: a helper's chunk still under way rolls back by its guard)
    s.stopped = stopped;
    // The run may have been cancelled (the caller records it), recovered or retried meanwhile: nothing more is done
    // for a claim that is over.
    if (!stopped && !shared::cancel_requested(r->id)) store::require_claimed(r->id, claims);
    return s;
}

// Helpers read the run as committed: its claim, and the outputs the shared steps' context is built from. What other
// branches of this execution started leaves with it: requests parked go on the wire, child runs become claimable.
// Once a step waits (noted in this execution), a wake-up may come while the run is still running and be dropped (its
// event or child is looked for under the run's row lock, which this commit releases): the run then goes back to the
// queue at the end of the walk instead of waiting, and its next look waits under the lock (committed_after_wait).
void commit_first(RunState *r, HttpIO *io, void *arg) {
    if (r->waits) r->committed_after_wait = true;
    SPI_finish();
    if (io->send_parked != nullptr && (io->parked != nullptr || r->started_children)) {
        r->started_children = false;
        io->send_parked(arg, io);
    } else {
        io->pause(arg, at_once, nullptr);
    }
    pg::spi_connect();
}

// Durations of function steps seen by this process (pipeline id, position -> moving average), to tell whether
// sharing independent steps pays.
struct StepTime {
    int64 pipeline_id;
    int pos;
    int64 us;  // -1: a free place
};
constexpr int kStepTimes = 256;
StepTime step_times[kStepTimes];
bool step_times_ready = false;

StepTime *step_time(int64 pipeline_id, int pos, bool add) {
    if (!step_times_ready) {
        for (StepTime &t : step_times) t.us = -1;
        step_times_ready = true;
    }
    uint64 k = (static_cast<uint64>(pipeline_id) << 16) ^ static_cast<uint64>(pos);
    k *= UINT64CONST(0x9E3779B97F4A7C15);
    uint32 h = static_cast<uint32>(k >> 40) % kStepTimes;
    for (int probe = 0; probe < 8; probe++) {
        StepTime &t = step_times[(h + probe) % kStepTimes];
        if (t.us >= 0 && t.pipeline_id == pipeline_id && t.pos == pos) return &t;
        if (t.us < 0) {
            if (!add) return nullptr;
            t.pipeline_id = pipeline_id;
            t.pos = pos;
            return &t;
        }
    }
    if (!add) return nullptr;
    StepTime &t = step_times[h];  // (full around here: the newest wins)
    t.pipeline_id = pipeline_id;
    t.pos = pos;
    t.us = -1;
    return &t;
}

}  // namespace

Shared share_tasks(RunState *r, int pos, int lo, int hi, int claims, HttpIO *io, void *arg, RunTask run_task,
                   void *map) {
    const store::Step *step = &r->pipeline->steps[pos];
    int helpers = shared::idle_workers();
    if (step->max_parallel > 0 && helpers > step->max_parallel - 1) helpers = step->max_parallel - 1;
    if (helpers > hi - lo - 1) helpers = hi - lo - 1;
    if (helpers < 1) return Shared();
    commit_first(r, io, arg);
    Waiting w;
    w.steps = false;
    w.slot = board::publish(r->id, pos, lo, hi, claims, helpers, &w.generation);
    if (w.slot < 0) return Shared();  // the board is full: this map runs alone
    return run_shared(r, w, helpers, claims, io, arg, run_task, map);
}

void note_step_time(int64 pipeline_id, int pos, int64 us) {
    StepTime *t = step_time(pipeline_id, pos, true);
    t->us = t->us < 0 ? us : (t->us * 3 + us) / 4;
}

bool worth_sharing_steps(const RunState *r, const int *positions, int k, const HttpIO *io) {
    // (free, not only idle: workers a commit has just woken are not idle yet -- two runs submitted together on four
    // workers often found none idle, and ran their branches one after the other)
    if (k < 2 || io == nullptr || io->pause == nullptr || shared::free_workers() == 0) return false;
    // worth it unless they are known to be fast: all but the longest would take this worker over kShareStepsUs
    int64 total = 0, longest = 0;
    for (int u = 0; u < k; u++) {
        StepTime *t = step_time(r->pipeline->id, positions[u], false);
        if (t == nullptr || t->us < 0) return true;  // never seen here: share (it learns how long they take)
        total += t->us;
        longest = t->us > longest ? t->us : longest;
    }
    return total - longest >= kShareStepsUs;
}

bool known_fast_step(const RunState *r, int pos) {
    StepTime *t = step_time(r->pipeline->id, pos, false);
    return t != nullptr && t->us >= 0 && t->us < kShareStepsUs;
}

Shared share_steps(RunState *r, const int *positions, const int *attempts, int k, int claims, HttpIO *io, void *arg,
                   RunTask run_unit, void *units) {
    int helpers = shared::free_workers();
    if (helpers > k - 1) helpers = k - 1;
    if (helpers < 1) return Shared();
    commit_first(r, io, arg);
    Waiting w;
    w.steps = true;
    w.slot = board::publish_steps(r->id, positions, attempts, k, claims, helpers, &w.generation);
    if (w.slot < 0) return Shared();
    return run_shared(r, w, helpers, claims, io, arg, run_unit, units);
}

struct Helping {
    RunState *r;
    Jsonb *prev;
    int n;
};

namespace {

// The run's steps as committed: those succeeded or skipped are done, with their outputs (in ctx). tried (optional,
// one per step): whether the step has any row.
void read_history(RunState *r, bool *tried, MemoryContext ctx) {
    const store::Pipeline *p = r->pipeline;
    store::StepRecord *rows;
    int nrows = store::read_step_history(r->id, &rows, ctx, true);
    // (in ctx, explicitly: after an SPI statement the current context is SPI's, freed at SPI_finish)
    MemoryContext old = MemoryContextSwitchTo(ctx);
    for (int i = 0; i < nrows; i++) {
        int pos = rows[i].pos;
        if (pos < 0 || pos >= p->nsteps) continue;
        if (tried != nullptr) tried[pos] = true;
        bool skipped = strcmp(rows[i].status, "skipped") == 0;
        if (skipped || strcmp(rows[i].status, "succeeded") == 0) {
            r->done[pos] = true;
            r->outputs[pos] = rows[i].output != nullptr ? rows[i].output : skipped ? nullptr : json_null();
        }
    }
    MemoryContextSwitchTo(old);
}

}  // namespace

Helping *start_helping(const board::Ticket &t, MemoryContext ctx) {
    store::RunRecord rec;
    if (!store::read_run(t.run_id, &rec, ctx)) return nullptr;
    if (strcmp(rec.status, "running") != 0 || rec.worker_pid != t.owner_pid ||
        rec.worker_started_at != t.owner_started || rec.run.claims != t.claims)
        return nullptr;
    store::Pipeline *p = store::load_pipeline(rec.run.pipeline);
    if (p == nullptr || p->id != rec.run.pipeline_id || t.pos < -1 || t.pos >= p->nsteps) return nullptr;
    if (t.pos >= 0) {
        const store::Step *step = &p->steps[t.pos];
        if (step->kind != core::StepKind::Function || !step->map) return nullptr;
    }
    for (int u = 0; u < t.units; u++) {
        int pos = t.unit_pos[u];
        if (pos < 0 || pos >= p->nsteps || p->steps[pos].kind != core::StepKind::Function || p->steps[pos].map)
            return nullptr;
    }
    RunState *r = new_run_state(&rec.run, p, ctx);
    read_history(r, nullptr, ctx);
    MemoryContext old = MemoryContextSwitchTo(ctx);
    Helping *h = static_cast<Helping *>(palloc0(sizeof(Helping)));
    h->r = r;
    h->prev = t.pos >= 0 ? step_prev(r, t.pos) : nullptr;
    MemoryContextSwitchTo(old);
    if (t.pos < 0) return h;  // (independent steps: no elements)
    bool array = h->prev != nullptr && JB_ROOT_IS_ARRAY(h->prev) && !JB_ROOT_IS_SCALAR(h->prev);
    h->n = array ? static_cast<int>(JB_ROOT_COUNT(h->prev)) : 0;
    return array ? h : nullptr;
}

namespace {

// Units [from, to) of shared independent steps: each step's attempt, as the owner would run it.
int help_with_steps(Helping *h, const board::Ticket &t, int from, int to, MemoryContext ctx) {
    RunState *r = h->r;
    int ran = 0;
    if (!store::lock_if_claimed(t.run_id, t.owner_pid, t.owner_started, t.claims, false)) return -1;
    for (int u = from; u < to && u < t.units; u++) {
        if (shared::cancel_requested(r->id)) {
            board::close(t.slot, t.generation);
            break;
        }
        int pos = t.unit_pos[u], attempt = t.unit_attempt[u];
        const store::Step *step = &r->pipeline->steps[pos];
        SetCurrentStatementStartTimestamp();
        pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s), helping", static_cast<long long>(r->id),
                                                       pos + 1, step->name));
        TimestampTz started = GetCurrentTimestamp();
        ErrorData *edata = nullptr;
        Jsonb *out = run_function_step(r, pos, attempt, ctx, CurrentResourceOwner, &edata);
        note_step_time(r->pipeline->id, pos, GetCurrentTimestamp() - started);
        ran++;
        if (edata == nullptr) {
            // (its row only: this helper's RunState stays as read -- the output lives in this chunk's context, and
            // a chunk that rolls back must not leave a step looking done)
            store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Succeeded, out, nullptr, started, false, -1);
            count_step(r, step, true);
            continue;
        }
        bool retryable;
        const char *msg = function_step_error(step, edata, &retryable);
        bool cancelled = shared::cancel_requested(r->id);
        store::buffer_step(r->id, pos, attempt, step->name, StepStatus::Failed, nullptr, cancelled ? "cancelled" : msg,
                           started, false, -1);
        count_step(r, step, false);
        if (cancelled) {
            board::close(t.slot, t.generation);
            break;
        }
        if (!retryable || attempt >= step->max_attempts) {  // the run fails: no more steps are handed out
            board::note_final_failure(t.slot, t.generation, u);
            break;
        }
    }
    return store::lock_if_claimed(t.run_id, t.owner_pid, t.owner_started, t.claims) ? ran : -1;
}

}  // namespace

int extend_help(Helping *h, board::Ticket *t, MemoryContext ctx) {
    if (t->pos >= 0 || shared::cancel_requested(t->run_id)) return -1;
    RunState *r = h->r;
    const store::Pipeline *p = r->pipeline;
    bool *tried = static_cast<bool *>(MemoryContextAllocZero(ctx, sizeof(bool) * p->nsteps));
    read_history(r, tried, ctx);
    int mine = -1;
    for (int k = 0; k < p->nsteps; k++) {
        int q = p->order[k];
        const store::Step *step = &p->steps[q];
        // (a condition, a retry's back-off, a map, any other kind: the owner's walk, once the helpers have left)
        if (tried[q] || r->done[q] || step->kind != core::StepKind::Function || step->map || step->if_cond != nullptr)
            continue;
        bool ready = true;
        for (int d = 0; d < step->ndeps && ready; d++) ready = r->done[step->deps[d]];
        if (!ready) continue;
        if (mine >= 0) {
            // another one is ready too (not a unit under way elsewhere): an idle worker may join for it
            if (board::has_unit(t->slot, t->generation, q)) continue;
            if (shared::idle_workers() > 0 && board::open_for_extension(t->slot, t->generation))
                shared::wake_workers(1);
            break;
        }
        int u = board::add_unit(*t, q, 1);
        if (u < 0) continue;  // (a unit already: under way elsewhere)
        t->unit_pos[u] = q;
        t->unit_attempt[u] = 1;
        if (t->units <= u) t->units = u + 1;
        mine = u;
    }
    return mine;
}

namespace {

// The owner, done with its own units (committed) while helpers still run theirs: it takes up the steps those units
// made ready, as a helper would (extend_help, help_with), one at a time, each committed by a pause -- until none is
// ready, or the helpers are all gone (its walk goes on from there). Transaction open (the pause's), SPI not connected.
void extend_as_owner(const Waiting &w, HttpIO *io, void *arg) {
    board::Ticket t;
    if (!board::owner_ticket(w.slot, w.generation, &t)) return;
    // (under TopMemoryContext: each pause commits, and a context of the transaction would go with it)
    MemoryContext ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker taking up steps",
                                              ALLOCSET_DEFAULT_SIZES);
    PG_TRY();
    {
        MemoryContext chunk = AllocSetContextCreate(ctx, "pipeline_worker step taken up", ALLOCSET_DEFAULT_SIZES);
        Helping *h = nullptr;
        for (int round = 0; round < board::kUnits && !board::helpers_done(w.slot, w.generation); round++) {
            pg::spi_connect();
            if (h == nullptr) h = start_helping(t, ctx);
            int u = h != nullptr ? extend_help(h, &t, ctx) : -1;
            MemoryContextReset(chunk);
            int k = u >= 0 ? help_with(h, t, u, u + 1, chunk) : -1;
            // The claim is over after the step ran (a cancel_run + retry_run, say): its effects and row must not
            // commit -- not left to the pause's claim check, which a queued DDL on the run table skips. (A cancel
            // alone lets them commit: steps executing finish and are recorded.)
            if (u >= 0 && k < 0 && !shared::cancel_requested(t.run_id)) store::require_claimed(t.run_id, t.claims);
            SPI_finish();
            if (k < 0) break;  // (none ready)
            io->pause(arg, at_once, nullptr);  // (its row commits; the claim is checked first)
        }
    }
    PG_FINALLY();
    {
        MemoryContextDelete(ctx);
    }
    PG_END_TRY();
}

}  // namespace

int help_with(Helping *h, const board::Ticket &t, int from, int to, MemoryContext ctx) {
    if (t.pos < 0) return help_with_steps(h, t, from, to, ctx);
    // (the claim that shared them still holds: a leaked or outdated entry runs nothing)
    if (!store::lock_if_claimed(t.run_id, t.owner_pid, t.owner_started, t.claims, false)) return -1;
    RunState *r = h->r;
    const store::Step *step = &r->pipeline->steps[t.pos];
    int ran = 0;
    for (int i = from; i < to && i < h->n; i++) {
        if (shared::cancel_requested(r->id)) {  // the owner records the cancel
            board::close(t.slot, t.generation);
            break;
        }
        r->task = i;
        MemoryContext old = MemoryContextSwitchTo(ctx);
        r->item = JsonbValueToJsonb(getIthJsonbValueFromContainer(&h->prev->root, i));
        MemoryContextSwitchTo(old);
        SetCurrentStatementStartTimestamp();
        pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s) task %d", static_cast<long long>(r->id),
                                                       t.pos + 1, step->name, i));
        TimestampTz started = GetCurrentTimestamp();
        ErrorData *edata = nullptr;
        Jsonb *out = run_function_step(r, t.pos, 1, ctx, CurrentResourceOwner, &edata);
        ran++;
        if (edata == nullptr) {
            record_success(r, t.pos, 1, started, out);
            continue;
        }
        bool retryable;
        const char *msg = function_step_error(step, edata, &retryable);
        bool cancelled = shared::cancel_requested(r->id);
        store::buffer_step(r->id, t.pos, 1, step->name, StepStatus::Failed, nullptr, cancelled ? "cancelled" : msg,
                           started, false, i);
        count_step(r, step, false);
        if (cancelled) {
            board::close(t.slot, t.generation);
            break;
        }
        if (!retryable || step->max_attempts <= 1) {  // the step fails: no more tasks are handed out
            board::note_final_failure(t.slot, t.generation, i);
            break;
        }
    }
    r->task = -1;
    return store::lock_if_claimed(t.run_id, t.owner_pid, t.owner_started, t.claims) ? ran : -1;
}

}  // namespace pw::exec
