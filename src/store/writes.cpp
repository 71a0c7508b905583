#include "store/writes.hpp"

#include "store/direct_writes.hpp"

#include "pg/direct_rows.hpp"

#include "shmem/lanes.hpp"
#include "store/pipelines.hpp"
#include "store/children.hpp"
#include "store/queue.hpp"

#include "pg/kept_plans.hpp"

extern "C" {
#include "utils/typcache.h"
}

#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/shared.hpp"

namespace pw::store {

namespace {

MemoryContext write_ctx = nullptr;
List *pending_claims = NIL;
List *pending_steps = NIL;
List *pending_runs = NIL;
List *pending_closes = NIL;  // RunRow of runs that end failed or cancelled: their open step rows are closed
SPIPlanPtr plan_flush_steps, plan_flush_steps_upsert, plan_flush_steps_late, plan_flush_runs, plan_persist_claim;

MemoryContext writes_context() {
    if (write_ctx == nullptr)
        write_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker writes", ALLOCSET_DEFAULT_SIZES);
    return write_ctx;
}

Jsonb *copy_jsonb(Jsonb *j) { return j ? DatumGetJsonbPCopy(JsonbPGetDatum(j)) : nullptr; }

SPIPlanPtr plan_taken_over;

// Some of the batch's runs did not match "still this worker's": cancelled (that wins), or -- if one is pending, or
// running under another backend -- taken over: recovered by a sweep that judged this worker gone, then claimed
// again. Its steps' effects in this transaction must not commit (the other worker runs them): ERROR 40001, the
// transaction rolls back, and the worker puts its batch back (worker/serve.cpp).
void require_still_ours(Datum ids) {
    Oid types[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[3] = {ids, Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
    SPIPlanPtr p = pg::prepare(&plan_taken_over,
                               "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs WHERE id = ANY ($1)"
                               " AND CASE status WHEN 'pending' THEN worker_pid IS NOT NULL"
                               "   WHEN 'running' THEN worker_pid IS DISTINCT FROM $2"
                               "     OR worker_started_at IS DISTINCT FROM $3 ELSE false END",
                               3, types);
    pg::exec_as_owner(p, v, nullptr, false, 1);  // (a takeover committed since the batch began is seen)
    if (SPI_processed == 0) return;
    bool isnull;
    int64 id = DatumGetInt64(pg::col(0, 1, &isnull));
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("run %lld was taken over by another backend while this one executed it", (long long)id),
                    errdetail("A recovery sweep judged this backend gone; its work on the run is rolled back.")));
}

// One claim per run not recorded yet, first (the outcome's UPDATE below expects it recorded).
void flush_claims() {
    int n = list_length(pending_claims);
    if (n == 0) return;
    // At the row version the claim locked, without a statement (direct_writes.cpp); the rest by id.
    int direct = schema_version() >= 2 ? record_claims_at_claims(pending_claims) : -1;
    if (direct == n) return;
    static const Oid elem[3] = {INT8OID, INT4OID, TIMESTAMPTZOID};
    pg::ArrayColumns *a = pg::array_columns(n - (direct > 0 ? direct : 0), 3, elem);
    int64 *all_ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int i = 0, k = 0;
    ListCell *lc;
    foreach (lc, pending_claims) {
        ClaimRow *r = static_cast<ClaimRow *>(lfirst(lc));
        all_ids[k++] = r->id;
        if (r->recorded) continue;
        pg::set_cell(a, i, 0, Int64GetDatum(r->id));
        pg::set_cell(a, i, 1, Int32GetDatum(r->claims));
        pg::set_cell(a, i, 2, TimestampTzGetDatum(r->claimed_at));
        i++;
    }
    Oid types[5] = {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[5];
    pg::column_arrays(a, v);
    v[3] = Int32GetDatum(MyProcPid);
    v[4] = TimestampTzGetDatum(MyStartTimestamp);
    SPIPlanPtr p = pg::prepare(&plan_persist_claim,
                               "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'running',"
                               " worker_pid = $4, worker_started_at = $5, started_at = c.at, claims = c.claims,"
                               " not_before = NULL"
                               " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))"
                               "   AS c(id, claims, at)"
                               " WHERE r.id = ANY (ARRAY[c.id])"
                               "   AND CASE r.status WHEN 'pending' THEN r.worker_pid IS NULL"
                               "     WHEN 'running' THEN r.worker_pid = $4 AND r.worker_started_at = $5 ELSE false END",
                               5, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    if (SPI_processed + (direct > 0 ? direct : 0) < static_cast<uint64>(n)) require_still_ours(pg::int8_array(all_ids, n));
}

// The buffered step rows of one kind as one array of run_steps' own row type, read back with unnest(): one
// function scan instead of nine (ROWS FROM (unnest($1), ..., unnest($9)) kept a tuplestore per column; this form
// inserts a 150-row batch in two thirds of the time). Columns are filled by name; a column this code does not know
// (a later schema) is left out of the INSERT, so it gets its default.
// run_steps' row type (looked up at every flush: the extension may have been dropped and created again since).
Oid step_rowtype() {
    Oid rowtype = get_rel_type_id(get_relname_relid("run_steps", get_namespace_oid("pipeline_worker", false)));
    if (!OidIsValid(rowtype)) elog(ERROR, "pipeline_worker.run_steps does not exist");
    return rowtype;
}

Datum step_rows_array(Oid rowtype, int kind, int n) {
    TupleDesc desc = lookup_rowtype_tupdesc(rowtype, -1);
    int natts = desc->natts;
    int att[10];
    for (int c = 0; c < 10; c++) {
        att[c] = pg::attribute_of(desc, kStepColumns[c]);
        if (att[c] < 0 && c != kTaskColumn) elog(ERROR, "pipeline_worker.run_steps has no column %s", kStepColumns[c]);
    }
    // A column the owner changed to another type (or gave a modifier: timestamptz(0)) gets each value converted through
    // its text form: this array is of the table's own row type, so no assignment converts it (the direct insert
    // refuses such a table).
    pg::IoCast *casts[10] = {};
    for (int c = 0; c < 10; c++) {
        Form_pg_attribute a = att[c] >= 0 ? TupleDescAttr(desc, att[c]) : nullptr;
        if (a == nullptr || takes_as_is(a, kStepTypes[c])) continue;
        casts[c] = static_cast<pg::IoCast *>(palloc(sizeof(pg::IoCast)));
        pg::io_cast_init(casts[c], kStepTypes[c], a->atttypid, a->atttypmod);
    }
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * natts));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * natts));
    Datum *rows = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    int k = 0;
    ListCell *lc;
    foreach (lc, pending_steps) {
        StepRow *r = static_cast<StepRow *>(lfirst(lc));
        if (r->kind != kind) continue;
        step_row_values(r, att, natts, values, nulls);
        for (int c = 0; c < 10; c++)
            if (casts[c] != nullptr && !nulls[att[c]]) values[att[c]] = pg::io_cast(casts[c], values[att[c]]);
        rows[k++] = HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
    }
    ReleaseTupleDesc(desc);
    return PointerGetDatum(construct_array(rows, k, rowtype, -1, false, TYPALIGN_DOUBLE));
}

void flush_steps_kind(int kind) {
    int n = 0;
    ListCell *lc;
    foreach (lc, pending_steps) n += static_cast<StepRow *>(lfirst(lc))->kind == kind;
    if (n == 0) return;
    if (kind == kInsert && insert_step_rows(pending_steps)) return;  // (without a statement: direct_writes.cpp)
    Oid rowtype = step_rowtype();
    Datum v[1] = {step_rows_array(rowtype, kind, n)};
    Oid types[1] = {get_array_type(rowtype)};
    // The statements take the table's own row type: prepared again when that is another type (the extension was
    // dropped and created again while this process lived).
    static Oid prepared_for = InvalidOid, prepared_for_v1 = InvalidOid;
    if (rowtype != prepared_for) {
        for (SPIPlanPtr *pp : {&plan_flush_steps, &plan_flush_steps_upsert, &plan_flush_steps_late}) {
            if (*pp != nullptr) SPI_freeplan(*pp);
            *pp = nullptr;
        }
        prepared_for = rowtype;
    }
    // Under 0.1's schema (before ALTER EXTENSION UPDATE) run_steps has no task and its key is (run_id, position,
    // attempt); under 0.2 the key has task.
#define PW_STEP_ROWS(task_col, task_val)                                                                      \
    "INSERT INTO pipeline_worker.run_steps"                                                                \
    " (run_id, position, attempt, name, status, output, error, started_at, finished_at" task_col ")"       \
    " SELECT r.run_id, r.position, r.attempt, r.name, r.status, r.output, r.error, r.started_at,"          \
    "   r.finished_at" task_val " FROM pg_catalog.unnest($1) AS r"
#define PW_UPSERT(key)                                                                                        \
    " ON CONFLICT (" key ") DO UPDATE SET status = excluded.status,"                                        \
    " output = excluded.output, error = excluded.error,"                                                    \
    " started_at = excluded.started_at, finished_at = excluded.finished_at"
#define PW_SAME_ISSUANCE " WHERE run_steps.started_at = excluded.started_at"
    static SPIPlanPtr plan_flush_steps_v1 = nullptr, plan_flush_steps_upsert_v1 = nullptr,
                      plan_flush_steps_late_v1 = nullptr;
    if (prepared_for_v1 != prepared_for) {
        for (SPIPlanPtr *pp : {&plan_flush_steps_v1, &plan_flush_steps_upsert_v1, &plan_flush_steps_late_v1}) {
            if (*pp != nullptr) SPI_freeplan(*pp);
            *pp = nullptr;
        }
        prepared_for_v1 = prepared_for;
    }
    SPIPlanPtr p;
    if (schema_version() >= 2) {
        if (kind == kUpsert)
            p = pg::prepare(&plan_flush_steps_upsert,
                            PW_STEP_ROWS(", task", ", r.task") PW_UPSERT("run_id, position, task, attempt"), 1, types);
        else if (kind == kLate)
            p = pg::prepare(&plan_flush_steps_late,
                            PW_STEP_ROWS(", task", ", r.task") PW_UPSERT("run_id, position, task, attempt")
                                PW_SAME_ISSUANCE,
                            1, types);
        else
            p = pg::prepare(&plan_flush_steps, PW_STEP_ROWS(", task", ", r.task"), 1, types);
    } else {
        if (kind == kUpsert)
            p = pg::prepare(&plan_flush_steps_upsert_v1, PW_STEP_ROWS("", "") PW_UPSERT("run_id, position, attempt"),
                            1, types);
        else if (kind == kLate)
            p = pg::prepare(&plan_flush_steps_late_v1,
                            PW_STEP_ROWS("", "") PW_UPSERT("run_id, position, attempt") PW_SAME_ISSUANCE, 1, types);
        else
            p = pg::prepare(&plan_flush_steps_v1, PW_STEP_ROWS("", ""), 1, types);
    }
#undef PW_STEP_ROWS
#undef PW_UPSERT
#undef PW_SAME_ISSUANCE
    pg::exec_as_owner(p, v, nullptr, false, 0);
}

// One write per run: its claim (if it was not recorded yet) and its outcome. Only a run that is still ours
// changes: a concurrent cancel_run wins. A pending row is ours only as the claim this transaction holds and has
// not recorded (its claim count one below ours): a run whose recorded claim was cancelled and then retried is
// pending too, and is another claim's now (until 2026-12-05 its outcome overwrote the retry).
namespace {

// The buffered outcomes as the statement's ten array columns (id, status, result, error, at, wake, claims, claimed_at,
// waiting_for, tid); *with_tid: how many carry the row version their claim locked.
pg::ArrayColumns *outcome_columns(int n, int *with_tid) {
    static const Oid elem[10] = {INT8OID, TEXTOID,        JSONBOID,       TEXTOID, TIMESTAMPTZOID,
                                 TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TEXTOID, TIDOID};
    pg::ArrayColumns *a = pg::array_columns(n, 10, elem);
    *with_tid = 0;
    int i = 0;
    ListCell *lc;
    foreach (lc, pending_runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        pg::set_cell(a, i, 0, Int64GetDatum(r->id));
        pg::set_cell(a, i, 1, CStringGetTextDatum(core::to_text(r->status)));
        if (r->result) pg::set_cell(a, i, 2, JsonbPGetDatum(r->result));
        else pg::set_null(a, i, 2);
        if (r->error) pg::set_cell(a, i, 3, CStringGetTextDatum(r->error));
        else pg::set_null(a, i, 3);
        pg::set_cell(a, i, 4, TimestampTzGetDatum(r->at));
        if (r->wake_at != 0) pg::set_cell(a, i, 5, TimestampTzGetDatum(r->wake_at));
        else pg::set_null(a, i, 5);
        pg::set_cell(a, i, 6, Int32GetDatum(r->claims));
        if (r->claimed_at != 0) pg::set_cell(a, i, 7, TimestampTzGetDatum(r->claimed_at));
        else pg::set_null(a, i, 7);  // (put back before it started: started_at stays as it is)
        if (r->waiting_for) pg::set_cell(a, i, 8, CStringGetTextDatum(r->waiting_for));
        else pg::set_null(a, i, 8);
        if (ItemPointerIsValid(&r->tid)) {
            pg::set_cell(a, i, 9, PointerGetDatum(&r->tid));
            (*with_tid)++;
        } else {
            pg::set_null(a, i, 9);
        }
        i++;
    }
    return a;
}

// After the outcomes' UPDATE (updated rows: out_ids, with their parents): each run this flush finished is counted
// (metrics) and notified -- not one a cancel_run finished first (it counted and notified) -- and the parents of
// those started by a "pipeline" step look at them again.
void after_outcomes(int n, const int64 *out_ids, const int64 *out_parents, const bool *out_pnull, uint64 updated) {
    ListCell *lc;
    foreach (lc, pending_runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        if (r->status == core::RunStatus::Pending || r->status == core::RunStatus::Waiting) continue;
        bool mine = updated == static_cast<uint64>(n);
        for (uint64 k = 0; k < updated && !mine; k++) mine = out_ids[k] == r->id;
        if (!mine) continue;
        note_finished(r->pipeline != nullptr ? r->pipeline : "", r->id, r->status, r->at - r->claimed_at);
    }
    int64 *parents = nullptr;
    int nparents = 0;
    for (uint64 k = 0; k < updated; k++) {
        if (out_pnull[k]) continue;
        foreach (lc, pending_runs) {
            RunRow *r = static_cast<RunRow *>(lfirst(lc));
            if (r->id != out_ids[k] || r->status == core::RunStatus::Pending || r->status == core::RunStatus::Waiting)
                continue;
            if (parents == nullptr) parents = static_cast<int64 *>(palloc(sizeof(int64) * updated));
            parents[nparents++] = out_parents[k];
            break;
        }
    }
    if (nparents > 0) wake_parents(parents, nparents);
}

}  // namespace

void flush_runs() {
    int n = list_length(pending_runs);
    if (n == 0) return;
    int64 *out_ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int64 *out_parents = static_cast<int64 *>(palloc(sizeof(int64) * n));
    bool *out_pnull = static_cast<bool *>(palloc(sizeof(bool) * n));
    uint64 updated = 0;
    bool v2 = schema_version() >= 2;
    // Rows found first by the row version their claim locked, the id checked: written there without a statement
    // (direct_writes.cpp), or else by a TID scan (no index named: no probe of runs_pkey, ~3 % of a W1 drain). The
    // others -- claims recorded since, runs resumed after an HTTP answer, a row this transaction changed since (its
    // version is no longer visible) -- by id, in a second statement.
    bool tids_done = false;
    if (v2) {
        int k = update_outcomes_at_claims(pending_runs, out_ids, out_parents, out_pnull);
        if (k >= 0) {
            updated = static_cast<uint64>(k);
            tids_done = true;
        }
    }
    if (updated < static_cast<uint64>(n)) {
        int with_tid;
        pg::ArrayColumns *a = outcome_columns(n, &with_tid);
        Oid types[12] = {INT8ARRAYOID, TEXTARRAYOID,        JSONBARRAYOID, TEXTARRAYOID,   TIMESTAMPTZARRAYOID,
                         TIMESTAMPTZARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT4OID, TIMESTAMPTZOID,
                         TIDARRAYOID};
        Datum cols[10], v[12];
        pg::column_arrays(a, cols);
        for (int c = 0; c < 9; c++) v[c] = cols[c];
        v[9] = Int32GetDatum(MyProcPid);
        v[10] = TimestampTzGetDatum(MyStartTimestamp);
        // (0.1's schema, before ALTER EXTENSION UPDATE: no waiting_for; no run waits there; by id only)
#define PW_RUN_OUTCOMES(indexes, waiting_for, tid_col, tid_name, found)                                       \
    "/* pw_indexes: " indexes " */ UPDATE pipeline_worker.runs r SET status = u.status,"                       \
    " result = u.result, error = u.error,"                                                                     \
    " claims = u.claims, started_at = COALESCE(r.started_at, u.claimed_at),"                                   \
    " finished_at = CASE WHEN u.status IN ('pending', 'waiting') THEN NULL ELSE u.at END,"                     \
    " not_before = u.wake," waiting_for                                                                        \
    " worker_pid = CASE WHEN u.status IN ('pending', 'waiting') THEN NULL ELSE $10 END,"                       \
    " worker_started_at = CASE WHEN u.status IN ('pending', 'waiting') THEN NULL ELSE $11 END"                 \
    " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"                    \
    "   pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6),"                                  \
    "   pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9)" tid_col ")"                       \
    "   AS u(id, status, result, error, at, wake, claims, claimed_at, waiting_for" tid_name ")"                \
    " WHERE " found " AND CASE r.status WHEN 'pending' THEN r.worker_pid IS NULL AND r.claims = u.claims - 1"   \
    "   WHEN 'running' THEN r.worker_pid = $10 AND r.worker_started_at = $11 ELSE false END"                   \
    " RETURNING r.id, "
        static SPIPlanPtr plan_flush_runs_v1 = nullptr, plan_flush_runs_tid = nullptr;
        auto collect = [&]() {
            for (uint64 k = 0; k < SPI_processed && updated < static_cast<uint64>(n); k++, updated++) {
                bool isnull;
                out_ids[updated] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 1, &isnull));
                Datum parent = SPI_getbinval(SPI_tuptable->vals[k], SPI_tuptable->tupdesc, 2, &out_pnull[updated]);
                out_parents[updated] = out_pnull[updated] ? 0 : DatumGetInt64(parent);
            }
        };
        if (v2 && with_tid > 0 && !tids_done) {
            v[11] = cols[9];
            SPIPlanPtr p = pg::prepare(&plan_flush_runs_tid,
                                       PW_RUN_OUTCOMES("none", " waiting_for = u.waiting_for,", ", pg_catalog.unnest($12)",
                                                       ", tid", "r.ctid = u.tid AND r.id = u.id") "r.parent_run_id",
                                       12, types);
            pg::exec_as_owner(p, v, nullptr, false, 0);
            collect();
        }
        if (updated < static_cast<uint64>(n)) {
            types[11] = INT8ARRAYOID;
            v[11] = pg::int8_array(out_ids, static_cast<int>(updated));  // (those are done)
            SPIPlanPtr p = v2 ? pg::prepare(&plan_flush_runs,
                                            PW_RUN_OUTCOMES("runs_pkey", " waiting_for = u.waiting_for,", "", "",
                                                            "r.id = ANY (ARRAY[u.id]) AND NOT u.id = ANY ($12)")
                                                "r.parent_run_id",
                                            12, types)
                              : pg::prepare(&plan_flush_runs_v1,
                                            PW_RUN_OUTCOMES("runs_pkey", "", "", "",
                                                            "r.id = ANY (ARRAY[u.id]) AND NOT u.id = ANY ($12)")
                                                "NULL::bigint",
                                            12, types);
            pg::exec_as_owner(p, v, nullptr, false, 0);
            collect();
        }
#undef PW_RUN_OUTCOMES
        after_outcomes(n, out_ids, out_parents, out_pnull, updated);
        if (updated < static_cast<uint64>(n)) require_still_ours(v[0]);
        return;
    }
    after_outcomes(n, out_ids, out_parents, out_pnull, updated);
}

}  // namespace

namespace {

void buffer_step_row(int64 run_id, int pos, int attempt, const char *name, core::StepStatus status, Jsonb *output,
                     const char *error, TimestampTz started, int kind, int task) {
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    StepRow *row = static_cast<StepRow *>(palloc(sizeof(StepRow)));
    row->run_id = run_id;
    row->pos = pos + 1;
    row->attempt = attempt;
    row->name = pstrdup(name);
    row->status = status;
    row->output = copy_jsonb(output);
    row->error = error ? pstrdup(error) : nullptr;
    row->started = started;
    row->finished = GetCurrentTimestamp();
    row->kind = kind;
    row->task = task;
    pending_steps = lappend(pending_steps, row);
    MemoryContextSwitchTo(old);
}

}  // namespace

void buffer_step(int64 run_id, int pos, int attempt, const char *name, core::StepStatus status, Jsonb *output,
                 const char *error, TimestampTz started, bool upsert, int task) {
    buffer_step_row(run_id, pos, attempt, name, status, output, error, started, upsert ? kUpsert : kInsert, task);
}

void buffer_late_step(int64 run_id, int pos, int attempt, const char *name, core::StepStatus status, Jsonb *output,
                      const char *error, TimestampTz started, int task) {
    // Two issuances of one attempt answered in the same batch (a cancel, retry_run and a new claim by this worker
    // while the old request was out): one INSERT ... ON CONFLICT must not carry the key twice ("cannot affect row a
    // second time"), and the newer issuance wins anyway -- the older answer is dropped here.
    ListCell *lc;
    foreach (lc, pending_steps) {
        StepRow *r = static_cast<StepRow *>(lfirst(lc));
        if (r->kind != kLate || r->run_id != run_id || r->pos != pos + 1 || r->attempt != attempt || r->task != task)
            continue;
        if (r->started >= started) return;
        pending_steps = foreach_delete_current(pending_steps, lc);
        break;
    }
    buffer_step_row(run_id, pos, attempt, name, status, output, error, started, kLate, task);
}

void buffer_run(const ClaimedRun *run, core::RunStatus status, Jsonb *result, const char *error, int delay_ms) {
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    RunRow *row = static_cast<RunRow *>(palloc(sizeof(RunRow)));
    row->id = run->id;
    row->tid = run->persisted ? ItemPointerData{} : run->tid;
    row->pipeline = run->pipeline != nullptr ? pstrdup(run->pipeline) : nullptr;
    row->claims = run->claims;
    row->claimed_at = run->claimed_at;
    row->status = status;
    row->result = copy_jsonb(result);
    row->error = error ? pstrdup(error) : nullptr;
    row->at = GetCurrentTimestamp();
    row->wake_at = status == core::RunStatus::Pending && delay_ms > 0 ? row->at + int64(delay_ms) * 1000 : 0;
    row->waiting_for = nullptr;
    pending_runs = lappend(pending_runs, row);
    if (status == core::RunStatus::Failed || status == core::RunStatus::Cancelled) pending_closes = lappend(pending_closes, row);
    MemoryContextSwitchTo(old);
    lanes::release_at_commit(run->id);  // (pending again: a run waiting for its retry holds no slot)
    if (status == core::RunStatus::Pending) {
        // Tell idle workers when the retry is due (they sleep until the earliest one); the timer's commit that queues
        // it then says where. Due now: at its place in the queue -- the claim hint moves back to there, not to the
        // head (with a snapshot held open, a walk from the head reads the entry of every run claimed since).
        if (delay_ms > 0) {
            notes::due_at(row->at + int64(delay_ms) * 1000);  // set the timer at commit
        } else if (schema_version() >= 2) {
            uint64 key = static_cast<uint64>(queue_key(run->priority, run->id));
            notes::runs_queued_at(1, key, key + 1);
        } else {
            notes::runs_created();
            notes::queue_reordered();
        }
    } else {
        notes::runs_finished();
    }
}

void buffer_wait(const ClaimedRun *run, TimestampTz wake_at, const char *event) {
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    RunRow *row = static_cast<RunRow *>(palloc0(sizeof(RunRow)));
    row->id = run->id;
    row->tid = run->persisted ? ItemPointerData{} : run->tid;
    row->pipeline = run->pipeline != nullptr ? pstrdup(run->pipeline) : nullptr;
    row->claims = run->claims;
    row->claimed_at = run->claimed_at;
    row->status = core::RunStatus::Waiting;
    row->at = GetCurrentTimestamp();
    row->wake_at = wake_at;
    row->waiting_for = event != nullptr ? pstrdup(event) : nullptr;
    pending_runs = lappend(pending_runs, row);
    MemoryContextSwitchTo(old);
    lanes::release_at_commit(run->id);  // a waiting run holds no slot
    if (wake_at != 0) notes::due_at(wake_at);
}

void persist_claim(ClaimedRun *run) {
    if (run->persisted) return;
    run->persisted = true;
    lanes::persisted(run->id);
    // Deferred: flush_writes() records every claim of the transaction with one statement, first.
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    ClaimRow *row = static_cast<ClaimRow *>(palloc(sizeof(ClaimRow)));
    row->id = run->id;
    row->claims = run->claims;
    row->claimed_at = run->claimed_at;
    row->tid = run->tid;
    row->recorded = false;
    pending_claims = lappend(pending_claims, row);
    MemoryContextSwitchTo(old);
}

// A run that ended failed or cancelled leaves no step row open: HTTP requests of other branches or tasks that were
// out, waits and child maps' waiting tasks are closed with it (rows written by this flush included).
static void flush_closes() {
    int n = list_length(pending_closes);
    if (n == 0) return;
    static const Oid elem[2] = {INT8OID, TEXTOID};
    pg::ArrayColumns *a = pg::array_columns(n, 2, elem);
    int i = 0;
    ListCell *lc;
    foreach (lc, pending_closes) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        pg::set_cell(a, i, 0, Int64GetDatum(r->id));
        pg::set_cell(a, i, 1, CStringGetTextDatum(r->status == core::RunStatus::Cancelled ? "cancelled"
                                                                                          : "its run failed meanwhile"));
        i++;
    }
    Oid types[2] = {INT8ARRAYOID, TEXTARRAYOID};
    Datum v[2];
    pg::column_arrays(a, v);
    if (schema_version() >= 2) keep_succeeded_children(v[0]);  // (another branch's failure seen first)
    static SPIPlanPtr plan_close = nullptr;
    SPIPlanPtr p = pg::prepare(&plan_close,
                               "/* pw_indexes: run_steps_pkey */ UPDATE pipeline_worker.run_steps s SET status = 'failed',"
                               " error = c.why, finished_at = pg_catalog.clock_timestamp()"
                               " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS c(id, why)"
                               " WHERE s.run_id = ANY (ARRAY[c.id]) AND s.status IN ('running', 'waiting')",
                               2, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    // A failed run's children still under way (another branch of its graph): nobody takes their results now.
    if (schema_version() < 2) return;
    foreach (lc, pending_closes) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        // (cancelled: cancel_run cascaded already, but children this worker started in the same transaction were
        // not visible to it)
        cancel_descendants(r->id, r->status == core::RunStatus::Failed ? "cancelled: its parent run failed"
                                                                       : "cancelled: its parent run was cancelled",
                           true);
    }
}

void flush_writes() {
    if (pending_steps == NIL && pending_runs == NIL && pending_claims == NIL) return;
    pg::spi_connect();
    flush_claims();
    flush_steps_kind(kInsert);
    flush_steps_kind(kUpsert);
    flush_steps_kind(kLate);
    flush_runs();
    flush_closes();
    SPI_finish();
    reset_writes();
}

void reset_writes() {
    pending_claims = NIL;
    pending_steps = NIL;
    pending_runs = NIL;
    pending_closes = NIL;
    if (write_ctx != nullptr) MemoryContextReset(write_ctx);
}

}  // namespace pw::store
