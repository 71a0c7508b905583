#include "store/task_rows.hpp"

extern "C" {
#include "storage/lmgr.h"
}

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_lock_claimed, plan_still_claimed, plan_task_rows, plan_step_attempts;

}  // namespace

bool lock_if_claimed(int64 run_id, int pid, TimestampTz started, int claims, bool lock) {
    Oid types[4] = {INT8OID, INT4OID, TIMESTAMPTZOID, INT4OID};
    Datum v[4] = {Int64GetDatum(run_id), Int32GetDatum(pid), TimestampTzGetDatum(started), Int32GetDatum(claims)};
#define PW_CLAIMED(lock_clause)                                                                                   \
    "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1"                                \
    " AND CASE status WHEN 'running' THEN worker_pid = $2 AND worker_started_at = $3"                             \
    "   AND claims = $4 ELSE false END" lock_clause
    SPIPlanPtr p = lock ? pg::prepare(&plan_lock_claimed, PW_CLAIMED(" FOR SHARE"), 4, types)
                        : pg::prepare(&plan_still_claimed, PW_CLAIMED(""), 4, types);
#undef PW_CLAIMED
    pg::exec_as_owner(p, v, nullptr, false, 0);
    return SPI_processed == 1;
}

void require_claim_for_commit(int64 run_id, int claims) {
    // Not while DDL waits for the run table (the worker's transactions hold it from their start: pg::
    // lock_run_table_first, so DDL can only be queued here): a conditional request does not go ahead of queued DDL,
    // and the check is skipped for this commit then, as before 2026-12-05. (Before the workers locked the run table
    // first, waiting here deadlocked ALTER EXTENSION ... UPDATE: upgrade.sh.)
    Oid runs = pg::run_table();
    if (!OidIsValid(runs) || !ConditionalLockRelationOid(runs, RowShareLock)) return;
    static SPIPlanPtr plan = nullptr;
    Oid types[4] = {INT8OID, INT4OID, TIMESTAMPTZOID, INT4OID};
    Datum v[4] = {Int64GetDatum(run_id), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp),
                  Int32GetDatum(claims)};
    // (a cancel is this claim's only if the row still has its claim count: a cancel_run of the run after a retry
    // and another claim is not)
    SPIPlanPtr p = pg::prepare(&plan,
                               "/* pw_indexes: runs_pkey */ SELECT status = 'cancelled' FROM pipeline_worker.runs"
                               " WHERE id = $1"
                               " AND CASE status WHEN 'running' THEN worker_pid = $2 AND worker_started_at = $3"
                               "   AND claims = $4 WHEN 'pending' THEN worker_pid IS NULL AND claims = $4 - 1"
                               "   WHEN 'cancelled' THEN claims = $4 ELSE false END FOR SHARE",
                               4, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    if (SPI_processed == 1) {
        // Cancelled under this claim, its request gone from the ring (pushed out by newer ones): made again here,
        // so that the executor stops and records the cancel rather than going on with the run's steps.
        bool isnull;
        if (DatumGetBool(col(0, 1, &isnull)) && !shared::cancel_requested(run_id)) shared::request_cancel(run_id);
        return;
    }
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("run %lld is no longer this backend's: it was retried or recovered while this one executed "
                           "it", (long long)run_id),
                    errdetail("Its work here since the last commit is rolled back; whoever holds the run now goes on "
                              "from its committed rows.")));
}

void require_claimed(int64 run_id, int claims) {
    if (lock_if_claimed(run_id, MyProcPid, MyStartTimestamp, claims, false)) return;
    ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                    errmsg("run %lld is no longer this backend's: it was cancelled, recovered or retried while other "
                           "workers executed its steps", (long long)run_id),
                    errdetail("Its execution here stops; whoever holds the run now goes on from its committed rows.")));
}

namespace {

int read_task_records(TaskRecord **out, MemoryContext dest, bool by_position) {
    int n = static_cast<int>(SPI_processed);
    MemoryContext old = MemoryContextSwitchTo(dest);
    TaskRecord *rows = static_cast<TaskRecord *>(palloc0(sizeof(TaskRecord) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) {
        bool isnull;
        rows[i].task = DatumGetInt32(col(i, 1, &isnull)) - (by_position ? 1 : 0);
        rows[i].attempt = DatumGetInt32(col(i, 2, &isnull));
        rows[i].status = TextDatumGetCString(col(i, 3, &isnull));
        Datum o = col(i, 4, &isnull);
        rows[i].output = isnull ? nullptr : DatumGetJsonbPCopy(o);
        Datum e = col(i, 5, &isnull);
        rows[i].error = isnull ? nullptr : TextDatumGetCString(e);
        rows[i].started = DatumGetTimestampTz(col(i, 6, &isnull));
    }
    MemoryContextSwitchTo(old);
    *out = rows;
    return n;
}

}  // namespace

int read_step_attempts(int64 run_id, const int *positions, int k, TaskRecord **out, MemoryContext dest) {
    Datum *pos = static_cast<Datum *>(palloc(sizeof(Datum) * (k > 0 ? k : 1)));
    for (int i = 0; i < k; i++) pos[i] = Int32GetDatum(positions[i] + 1);
    Oid types[2] = {INT8OID, INT4ARRAYOID};
    Datum v[2] = {Int64GetDatum(run_id), pg::make_array(pos, nullptr, k, INT4OID)};
    SPIPlanPtr p = pg::prepare(&plan_step_attempts,
                               "/* pw_indexes: run_steps_pkey */ SELECT position, attempt, status, output, error, started_at"
                               " FROM pipeline_worker.run_steps WHERE run_id = $1 AND position = ANY ($2) AND task IS NULL"
                               " ORDER BY position, attempt",
                               2, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    return read_task_records(out, dest, true);
}

int read_task_rows(int64 run_id, int pos, int lo, int hi, TaskRecord **out, MemoryContext dest) {
    Oid types[4] = {INT8OID, INT4OID, INT4OID, INT4OID};
    Datum v[4] = {Int64GetDatum(run_id), Int32GetDatum(pos + 1), Int32GetDatum(lo), Int32GetDatum(hi)};
    SPIPlanPtr p = pg::prepare(&plan_task_rows,
                               "/* pw_indexes: run_steps_pkey */ SELECT task, attempt, status, output, error, started_at"
                               " FROM pipeline_worker.run_steps WHERE run_id = $1 AND position = $2"
                               " AND task >= $3 AND task < $4 ORDER BY task, attempt",
                               4, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    return read_task_records(out, dest, false);
}

}  // namespace pw::store
