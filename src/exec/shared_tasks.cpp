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
};

bool helpers_gone(void *arg) {
    Waiting *w = static_cast<Waiting *>(arg);
    return board::helpers_done(w->slot, w->generation);
}

bool at_once(void *) { return true; }

}  // namespace

bool worth_sharing(const store::Step *step, const HttpIO *io, int lo, int hi) {
    return step->kind == core::StepKind::Function && step->map && step->max_parallel != 1 && io != nullptr &&
           io->pause != nullptr && hi - lo >= 2 && shared::idle_workers() > 0;
}

Shared share_tasks(RunState *r, int pos, int lo, int hi, int claims, HttpIO *io, void *arg, RunTask run_task,
                   void *map) {
    Shared s;
    const store::Step *step = &r->pipeline->steps[pos];
    int helpers = shared::idle_workers();
    if (step->max_parallel > 0 && helpers > step->max_parallel - 1) helpers = step->max_parallel - 1;
    if (helpers > hi - lo - 1) helpers = hi - lo - 1;
    if (helpers < 1) return s;
    // Helpers read the run as committed: its claim, and the outputs the map step's context is built from.
    SPI_finish();
    io->pause(arg, at_once, nullptr);
    pg::spi_connect();
    Waiting w;
    w.slot = board::publish(r->id, pos, lo, hi, claims, helpers, &w.generation);
    if (w.slot < 0) return s;  // the board is full: this map runs alone
    s.shared = true;
    shared::wake_workers(helpers);
    int from, to;
    while (board::take(w.slot, w.generation, &from, &to)) {
        for (int i = from; i < to; i++) {
            if (run_task(map, i) != TaskEnd::Stop) continue;
            board::retire(w.slot, w.generation);  // (a helper's chunk still under way rolls back by its guard)
            s.stopped = true;
            return s;
        }
    }
    // Every task is taken: what the helpers took is done (committed) or rolled back once they have left.
    board::close(w.slot, w.generation);
    SPI_finish();
    pgstat_report_activity(STATE_RUNNING, psprintf("run %lld: waiting for the workers executing its map tasks",
                                                   static_cast<long long>(r->id)));
    io->pause(arg, helpers_gone, &w);
    pg::spi_connect();
    s.final_failure = board::final_failure(w.slot, w.generation);
    board::retire(w.slot, w.generation);
    return s;
}

struct Helping {
    RunState *r;
    Jsonb *prev;
    int n;
};

Helping *start_helping(const board::Ticket &t, MemoryContext ctx) {
    store::RunRecord rec;
    if (!store::read_run(t.run_id, &rec, ctx)) return nullptr;
    if (strcmp(rec.status, "running") != 0 || rec.worker_pid != t.owner_pid ||
        rec.worker_started_at != t.owner_started || rec.run.claims != t.claims)
        return nullptr;
    store::Pipeline *p = store::load_pipeline(rec.run.pipeline);
    if (p == nullptr || p->id != rec.run.pipeline_id || t.pos < 0 || t.pos >= p->nsteps) return nullptr;
    const store::Step *step = &p->steps[t.pos];
    if (step->kind != core::StepKind::Function || !step->map) return nullptr;
    RunState *r = new_run_state(&rec.run, p, ctx);
    store::StepRecord *rows;
    int nrows = store::read_step_rows(t.run_id, &rows, ctx);
    // (in ctx, explicitly: after an SPI statement the current context is SPI's, freed at SPI_finish)
    MemoryContext old = MemoryContextSwitchTo(ctx);
    for (int i = 0; i < nrows; i++) {
        int pos = rows[i].pos;
        if (pos < 0 || pos >= p->nsteps) continue;
        bool skipped = strcmp(rows[i].status, "skipped") == 0;
        if (skipped || strcmp(rows[i].status, "succeeded") == 0) {
            r->done[pos] = true;
            r->outputs[pos] = rows[i].output != nullptr ? rows[i].output : skipped ? nullptr : json_null();
        }
    }
    Helping *h = static_cast<Helping *>(palloc0(sizeof(Helping)));
    h->r = r;
    h->prev = step_prev(r, t.pos);
    MemoryContextSwitchTo(old);
    bool array = h->prev != nullptr && JB_ROOT_IS_ARRAY(h->prev) && !JB_ROOT_IS_SCALAR(h->prev);
    h->n = array ? static_cast<int>(JB_ROOT_COUNT(h->prev)) : 0;
    return array ? h : nullptr;
}

int help_with(Helping *h, const board::Ticket &t, int from, int to, MemoryContext ctx) {
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
                           started, true, i);
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
