#include "store/run_rows.hpp"

#include "shmem/lanes.hpp"
#include "store/pipelines.hpp"
#include "store/queue.hpp"
#include "store/children.hpp"

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_read_run, plan_read_run_v2, plan_read_steps, plan_lock, plan_lock_skip, plan_exist, plan_fail, plan_fail_crashed, plan_unfinished;

}  // namespace

bool read_run(int64 run_id, RunRecord *out, MemoryContext dest) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // (the priority: where a retry due at once goes back in the queue -- 0.2 schema only)
    bool v2 = schema_version() >= 2;
    SPIPlanPtr plan = v2 ? pg::prepare(&plan_read_run_v2,
                                       "/* pw_indexes: runs_pkey */ SELECT pipeline, submitted_by::oid, input, metadata,"
                                       " status, worker_pid, worker_started_at, claims, pipeline_id, priority"
                                       " FROM pipeline_worker.runs WHERE id = $1",
                                       1, types)
                         : pg::prepare(&plan_read_run,
                                       "/* pw_indexes: runs_pkey */ SELECT pipeline, submitted_by::oid, input, metadata,"
                                       " status, worker_pid, worker_started_at, claims, pipeline_id"
                                       " FROM pipeline_worker.runs WHERE id = $1",
                                       1, types);
    pg::exec_as_owner(plan, v, nullptr, false, 1);
    if (SPI_processed == 0) return false;
    bool isnull;
    MemoryContext old = MemoryContextSwitchTo(dest);
    ClaimedRun &run = out->run;
    run.id = run_id;
    run.pipeline = TextDatumGetCString(col(0, 1, &isnull));
    run.submitter = DatumGetObjectId(col(0, 2, &isnull));
    run.input = DatumGetJsonbPCopy(col(0, 3, &isnull));
    run.metadata = DatumGetJsonbPCopy(col(0, 4, &isnull));
    out->status = TextDatumGetCString(col(0, 5, &isnull));
    Datum pid = col(0, 6, &isnull);
    out->worker_pid = isnull ? 0 : DatumGetInt32(pid);
    Datum started = col(0, 7, &isnull);
    out->worker_started_at = isnull ? 0 : DatumGetTimestampTz(started);
    run.claims = DatumGetInt32(col(0, 8, &isnull));
    run.pipeline_id = DatumGetInt64(col(0, 9, &isnull));
    run.priority = v2 ? DatumGetInt32(col(0, 10, &isnull)) : 0;
    run.claimed_at = GetCurrentTimestamp();
    run.persisted = true;
    MemoryContextSwitchTo(old);
    return true;
}

int read_step_history(int64 run_id, StepRecord **out, MemoryContext dest, bool steps_only) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // (0.1's schema has no task: no step has tasks there)
    static SPIPlanPtr plan_read_steps_v1 = nullptr, plan_read_steps_only = nullptr;
    SPIPlanPtr plan =
        steps_only && schema_version() >= 2
            ? pg::prepare(&plan_read_steps_only,
                          "/* pw_indexes: run_steps_pkey */ SELECT position, attempt, status, output, started_at, task"
                          " FROM pipeline_worker.run_steps WHERE run_id = $1 AND task IS NULL"
                          " ORDER BY position, task, attempt",
                          1, types)
        : schema_version() >= 2
            ? pg::prepare(&plan_read_steps,
                          "/* pw_indexes: run_steps_pkey */ SELECT position, attempt, status, output, started_at, task"
                          " FROM pipeline_worker.run_steps WHERE run_id = $1 ORDER BY position, task, attempt",
                          1, types)
            : pg::prepare(&plan_read_steps_v1,
                          "/* pw_indexes: run_steps_pkey */ SELECT position, attempt, status, output, started_at,"
                          " NULL::int FROM pipeline_worker.run_steps WHERE run_id = $1 ORDER BY position, attempt",
                          1, types);
    pg::exec_as_owner(plan, v, nullptr, false, 0);
    int n = static_cast<int>(SPI_processed);
    MemoryContext old = MemoryContextSwitchTo(dest);
    StepRecord *rows = static_cast<StepRecord *>(palloc0(sizeof(StepRecord) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) {
        bool isnull;
        rows[i].pos = DatumGetInt32(col(i, 1, &isnull)) - 1;
        rows[i].attempt = DatumGetInt32(col(i, 2, &isnull));
        rows[i].status = TextDatumGetCString(col(i, 3, &isnull));
        Datum o = col(i, 4, &isnull);
        rows[i].output = isnull ? nullptr : DatumGetJsonbPCopy(o);
        rows[i].started = DatumGetTimestampTz(col(i, 5, &isnull));
        Datum task = col(i, 6, &isnull);
        rows[i].task = isnull ? -1 : DatumGetInt32(task);
    }
    MemoryContextSwitchTo(old);
    *out = rows;
    return n;
}

const char *const kRunHeld = "held";

void lock_runs(const int64 *ids, int n, const char **status, bool skip_held, const int *claims) {
    for (int i = 0; i < n; i++) status[i] = nullptr;
    if (n == 0) return;
    MemoryContext caller = CurrentMemoryContext;
    pg::spi_connect();
    Oid types[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[3] = {pg::int8_array(ids, n), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
#define PW_LOCK_RUNS(lock)                                                                                            \
    "/* pw_indexes: runs_pkey */ SELECT id, CASE WHEN status = 'running'"                                             \
    " AND (worker_pid <> $2 OR worker_started_at <> $3) THEN 'taken' ELSE status END, claims"                         \
    " FROM pipeline_worker.runs WHERE id = ANY ($1) " lock  // a primary-key scan: locks in id order
    SPIPlanPtr p = skip_held ? pg::prepare(&plan_lock_skip, PW_LOCK_RUNS("FOR UPDATE SKIP LOCKED"), 3, types)
                             : pg::prepare(&plan_lock, PW_LOCK_RUNS("FOR UPDATE"), 3, types);
#undef PW_LOCK_RUNS
    pg::exec_as_owner(p, v, nullptr, false, 0);
    int found = 0;
    for (uint64 row = 0; row < SPI_processed; row++) {
        bool isnull;
        int64 id = DatumGetInt64(col(row, 1, &isnull));
        char *st = MemoryContextStrdup(caller, TextDatumGetCString(col(row, 2, &isnull)));
        int row_claims = DatumGetInt32(col(row, 3, &isnull));
        for (int i = 0; i < n; i++) {
            if (ids[i] != id) continue;
            // Running under this worker, but claimed again since (cancelled, retried, claimed by this same worker):
            // another claim's run. (Until 2026-12-05 an HTTP answer of the old claim resumed the new one.)
            status[i] = claims != nullptr && strcmp(st, "running") == 0 && row_claims != claims[i] ? "taken" : st;
            found++;
        }
    }
    if (skip_held && found < n) {
        // Skipped, or gone: the runs that still exist are held by another transaction.
        SPIPlanPtr e = pg::prepare(&plan_exist, "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs"
                                                " WHERE id = ANY ($1)", 1, types);
        pg::exec_as_owner(e, v, nullptr, true, 0);
        for (uint64 row = 0; row < SPI_processed; row++) {
            bool isnull;
            int64 id = DatumGetInt64(col(row, 1, &isnull));
            for (int i = 0; i < n; i++)
                if (ids[i] == id && status[i] == nullptr) status[i] = kRunHeld;
        }
    }
    SPI_finish();
}

void fail_run(int64 run_id, const char *message) {
    pg::spi_connect();
    Oid types[2] = {INT8OID, TEXTOID};
    SPIPlanPtr p = pg::prepare(&plan_fail,
                           "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'failed', error = $2,"
                           " finished_at = pg_catalog.clock_timestamp()"
                           " WHERE id = $1 AND CASE status WHEN 'running' THEN worker_pid = pg_catalog.pg_backend_pid()"
                           "   WHEN 'pending' THEN worker_pid IS NULL ELSE false END RETURNING pipeline",
                           2, types);
    Datum v[2] = {Int64GetDatum(run_id), CStringGetTextDatum(message)};
    pg::exec_as_owner(p, v, nullptr, false, 0);
    bool isnull;
    bool failed = SPI_processed == 1;
    if (failed) note_finished(TextDatumGetCString(pg::col(0, 1, &isnull)), run_id, core::RunStatus::Failed, -1);
    notes::runs_finished();
    lanes::release_at_commit(run_id);
    // (as any failed run: child runs of its other branches are cancelled)
    if (failed && schema_version() >= 2) cancel_descendants(run_id, "cancelled: its parent run failed", true);
    SPI_finish();
}

bool fail_crashed_run(int64 run_id, int position, int attempt, int ends, int faults) {
    pg::spi_connect();
    char *step_error =
        faults == ends ? psprintf("the worker process executing this step ended abnormally %d times (a crash: a fault "
                                  "such as a segmentation fault); not retried",
                                  ends)
        : faults == 0  ? psprintf("the worker process executing this step ended abnormally %d times (killed, as by the "
                                  "out-of-memory killer or SIGKILL); not retried",
                                  ends)
                       : psprintf("the worker process executing this step ended abnormally %d times (%d crashes, %d "
                                  "kills); not retried",
                                  ends, faults, ends - faults);
    Oid types[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
    Datum v[4] = {Int64GetDatum(run_id), Int32GetDatum(position), Int32GetDatum(attempt),
                  CStringGetTextDatum(step_error)};
    // Only a run nobody executes: pending, or running for a claimer that is gone (as recover_runs decides).
    // (the key of run_steps has task under 0.2's schema)
#define PW_FAIL_CRASHED(key)                                                                                          \
    "/* pw_indexes: runs_pkey pipelines_id_key */ WITH r AS (SELECT r.id, r.pipeline_id FROM pipeline_worker.runs r" \
    "   WHERE r.id = $1 AND CASE r.status WHEN 'pending' THEN true WHEN 'running' THEN NOT EXISTS ("                \
    "     SELECT 1 FROM pg_catalog.pg_stat_get_activity(r.worker_pid) a"                                             \
    "     WHERE a.backend_start = r.worker_started_at) ELSE false END FOR UPDATE SKIP LOCKED),"                        \
    " n AS (SELECT r.id, COALESCE((SELECT p.steps -> ($2 - 1) ->> 'name'"                                           \
    "   FROM pipeline_worker.pipelines p WHERE p.id = r.pipeline_id), 'step ' || $2) AS name FROM r),"              \
    " s AS (INSERT INTO pipeline_worker.run_steps"                                                                  \
    "   (run_id, position, attempt, name, status, error, started_at, finished_at)"                                  \
    "   SELECT n.id, $2, $3, n.name, 'failed', $4, pg_catalog.clock_timestamp(),"                                    \
    "          pg_catalog.clock_timestamp() FROM n"                                                                 \
    "   ON CONFLICT (" key ") DO UPDATE SET status = 'failed',"                                                     \
    "   error = excluded.error, finished_at = excluded.finished_at)"                                                \
    " UPDATE pipeline_worker.runs u SET status = 'failed', worker_pid = NULL,"                                      \
    "  worker_started_at = NULL, not_before = NULL, finished_at = pg_catalog.clock_timestamp(),"                    \
    "  error = pg_catalog.format('step \"%s\" failed: %s', n.name, $4)"                                              \
    " FROM n WHERE u.id = n.id RETURNING u.pipeline"
    static SPIPlanPtr plan_fail_crashed_v1 = nullptr;
    SPIPlanPtr p = schema_version() >= 2
                       ? pg::prepare(&plan_fail_crashed, PW_FAIL_CRASHED("run_id, position, task, attempt"), 4, types)
                       : pg::prepare(&plan_fail_crashed_v1, PW_FAIL_CRASHED("run_id, position, attempt"), 4, types);
#undef PW_FAIL_CRASHED
    pg::exec_as_owner(p, v, nullptr, false, 0);
    bool failed = SPI_processed == 1;
    bool isnull;
    if (failed) note_finished(TextDatumGetCString(pg::col(0, 1, &isnull)), run_id, core::RunStatus::Failed, -1);
    if (failed && schema_version() >= 2) cancel_descendants(run_id, "cancelled: its parent run failed", true);
    SPI_finish();
    if (failed) notes::runs_finished();
    return failed;
}

bool run_unfinished(int64 run_id) {
    pg::spi_connect();
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    SPIPlanPtr p = pg::prepare(&plan_unfinished,
                           "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1 AND status IN ('pending', 'running')",
                           1, types);
    pg::exec_as_owner(p, v, nullptr, true, 1);
    bool unfinished = SPI_processed == 1;
    SPI_finish();
    return unfinished;
}

}  // namespace pw::store
