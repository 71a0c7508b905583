#include "store/held_outcomes.hpp"

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/lanes.hpp"
#include "store/outcome_rows.hpp"

namespace pw::store {

namespace {

constexpr int64 kRetryUs = 50 * 1000;  // how often a worker looks whether the rows are free

// A set-aside outcome. provisional: set aside by the current transaction (dropped if it aborts); settled: buffered
// again, or found no longer this backend's, by the current transaction (forgotten if it commits).
struct Held {
    RunRow *row;
    bool provisional;
    bool settled;
};

MemoryContext held_ctx = nullptr;
List *held = NIL;  // of Held, in held_ctx
TimestampTz next_try = 0;
bool touched = false;  // the current transaction set aside or took back some
SPIPlanPtr plan_lock, plan_exists, plan_take;

// The outcomes set aside: succeeded (its steps' rows, committed, say so to a recovery too) and cancelled. Not failed:
// its failed attempt, committed without the run's outcome, would be tried again by a recovery (resumed after a
// worker's exit) beyond the step's max_attempts. Nor a retry's back-off or a wait: those still wait for the row.
bool ended(const RunRow *r) {
    return r->status == core::RunStatus::Succeeded || r->status == core::RunStatus::Cancelled;
}

RunRow *copy_row(const RunRow *r, MemoryContext ctx) {
    MemoryContext old = MemoryContextSwitchTo(ctx);
    RunRow *c = static_cast<RunRow *>(palloc(sizeof(RunRow)));
    *c = *r;
    c->pipeline = r->pipeline != nullptr ? pstrdup(r->pipeline) : nullptr;
    c->result = r->result != nullptr ? DatumGetJsonbPCopy(JsonbPGetDatum(r->result)) : nullptr;
    c->error = r->error != nullptr ? pstrdup(r->error) : nullptr;
    c->waiting_for = r->waiting_for != nullptr ? pstrdup(r->waiting_for) : nullptr;
    MemoryContextSwitchTo(old);
    return c;
}

bool returned(int64 id) {
    for (uint64 k = 0; k < SPI_processed; k++) {
        bool isnull;
        if (DatumGetInt64(pg::col(k, 1, &isnull)) == id) return true;
    }
    return false;
}

// Which of ids[0..n) exist (SPI's tuple table: their ids).
void read_existing(const int64 *ids, int n) {
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {pg::int8_array(ids, n)};
    SPIPlanPtr p = pg::prepare(&plan_exists, "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs"
                                             " WHERE id = ANY ($1)", 1, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
}

void remove_row(List **list, const RunRow *row) {
    ListCell *lc;
    foreach (lc, *list)
        if (lfirst(lc) == row) {
            *list = foreach_delete_current(*list, lc);
            return;
        }
}

}  // namespace

void set_aside_held_outcomes() {
    List **runs = pending_run_rows();
    int n = 0;
    ListCell *lc;
    foreach (lc, *runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        if (r->lock_released && ended(r)) n++;
    }
    if (n == 0) return;  // (the common case: no statement)
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int k = 0;
    foreach (lc, *runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        if (r->lock_released && ended(r)) ids[k++] = r->id;
    }
    // Locked now (the outcome's UPDATE then waits for nobody), or held by another transaction -- or gone.
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {pg::int8_array(ids, n)};
    SPIPlanPtr p = pg::prepare(&plan_lock, "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs"
                                           " WHERE id = ANY ($1) FOR NO KEY UPDATE SKIP LOCKED", 1, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!returned(ids[i])) ids[m++] = ids[i];
    if (m == 0) return;
    read_existing(ids, m);  // (a run deleted meanwhile: its UPDATE finds nothing, as before)
    foreach (lc, *runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        if (!r->lock_released || !ended(r) || !returned(r->id)) continue;
        if (held_ctx == nullptr)
            held_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker held outcomes", ALLOCSET_SMALL_SIZES);
        MemoryContext old = MemoryContextSwitchTo(held_ctx);
        Held *h = static_cast<Held *>(palloc(sizeof(Held)));
        h->row = copy_row(r, held_ctx);
        h->provisional = true;
        h->settled = false;
        held = lappend(held, h);
        MemoryContextSwitchTo(old);
        remove_row(pending_close_rows(), r);
        *runs = foreach_delete_current(*runs, lc);
        lanes::keep_at_commit(h->row->id);  // still running here: it keeps its slots
        touched = true;
        ereport(DEBUG1, (errmsg("pipeline_worker: run %lld ended while another transaction holds its row; its outcome "
                                "is recorded once the row is free", (long long)h->row->id)));
    }
    next_try = GetCurrentTimestamp() + kRetryUs;
}

TimestampTz held_outcomes_due() { return held == NIL ? 0 : next_try; }

bool outcome_held(int64 run_id) {
    ListCell *lc;
    foreach (lc, held)
        if (static_cast<Held *>(lfirst(lc))->row->id == run_id) return true;
    return false;
}

int take_back_held_outcomes() {
    if (held == NIL) return 0;
    next_try = GetCurrentTimestamp() + kRetryUs;
    int n = list_length(held), k = 0;
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    ListCell *lc;
    foreach (lc, held) ids[k++] = static_cast<Held *>(lfirst(lc))->row->id;
    pg::spi_connect();
    Oid types[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[3] = {pg::int8_array(ids, n), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
    SPIPlanPtr p = pg::prepare(&plan_take,
                               "/* pw_indexes: runs_pkey */ SELECT id, CASE status WHEN 'running' THEN worker_pid = $2"
                               " AND worker_started_at = $3 ELSE false END, claims FROM pipeline_worker.runs"
                               " WHERE id = ANY ($1) FOR NO KEY UPDATE SKIP LOCKED",
                               3, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    int buffered = 0;
    for (uint64 r = 0; r < SPI_processed; r++) {
        bool isnull;
        int64 id = DatumGetInt64(pg::col(r, 1, &isnull));
        bool ours = DatumGetBool(pg::col(r, 2, &isnull)) && !isnull;
        int claims = DatumGetInt32(pg::col(r, 3, &isnull));
        foreach (lc, held) {
            Held *h = static_cast<Held *>(lfirst(lc));
            if (h->row->id != id || h->settled) continue;
            // (the same attempt: cancelled, retried and claimed again by this backend meanwhile, it is another one)
            ours = ours && claims == h->row->claims;
            h->settled = true;  // recorded by this transaction -- or, no longer ours, not to be recorded by us
            touched = true;
            if (ours) {
                MemoryContext old = MemoryContextSwitchTo(writes_context());
                RunRow *c = copy_row(h->row, writes_context());
                c->lock_released = false;  // (locked now)
                *pending_run_rows() = lappend(*pending_run_rows(), c);
                if (c->status != core::RunStatus::Succeeded) *pending_close_rows() = lappend(*pending_close_rows(), c);
                MemoryContextSwitchTo(old);
                notes::runs_finished();
                buffered++;
            }
            lanes::release_at_commit(id);  // (not ours any more -- the holder's cancel_run committed: its slot too)
            break;
        }
    }
    // Not locked: held still, or gone (deleted): those are forgotten.
    int m = 0;
    foreach (lc, held) {
        Held *h = static_cast<Held *>(lfirst(lc));
        if (!h->settled) ids[m++] = h->row->id;
    }
    if (m > 0) {
        read_existing(ids, m);
        foreach (lc, held) {
            Held *h = static_cast<Held *>(lfirst(lc));
            if (!h->settled && !returned(h->row->id)) {
                h->settled = true;
                touched = true;
                lanes::release_at_commit(h->row->id);
            }
        }
    }
    SPI_finish();
    return buffered;
}

void held_outcomes_at_end(bool committed) {
    if (!touched) return;
    touched = false;
    ListCell *lc;
    foreach (lc, held) {
        Held *h = static_cast<Held *>(lfirst(lc));
        bool drop = committed ? h->settled : h->provisional;
        h->provisional = h->settled = false;
        if (drop) held = foreach_delete_current(held, lc);
    }
    if (held == NIL && held_ctx != nullptr) {
        MemoryContextReset(held_ctx);
        next_try = 0;
    }
}

}  // namespace pw::store
