#include "store/claims.hpp"

#include <utility>

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/cancel_requests.hpp"
#include "store/queue.hpp"

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_claim, plan_claim_mine, plan_release, plan_release_v2, plan_recover, plan_recover_v2, plan_claimers;

// A run back in the queue (0.2: recovered, put back) goes as a woken one does: parked as paused if its pipeline is
// (PW_PARKED_IF_PAUSED), its position noted, the lead worker told to look if it parked one (note_woken).
#define PW_RETURNING_WOKEN " RETURNING r.priority, r.id, r.parked"

}  // namespace

int claim_runs(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_id,
               int64 below_id) {
    if (schema_version() >= 2) {
        int n = claim_queued(max, submitter, out, dest, mark_running, min_id, below_id);
        // (a cancel that cascaded to one of them while another transaction held it, told only through shared memory,
        // which a crash since forgot: its record asks again -- store/cancel_requests)
        apply_cancel_requests(out, n);
        return n;
    }
    // The oldest claimable rows in [min_id, below_id), skipping rows another session is claiming right now.
    // (SKIP LOCKED does not skip rows this transaction locked itself: callers claiming twice in one
    // transaction must use disjoint ranges.)
    Oid types[6] = {INT4OID, TIMESTAMPTZOID, INT4OID, OIDOID, INT8OID, INT8OID};
    SPIPlanPtr plan;
    Datum v[6] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp), Int32GetDatum(max),
                  ObjectIdGetDatum(submitter), Int64GetDatum(min_id), Int64GetDatum(below_id)};
    if (mark_running) {
        plan = pg::prepare(&plan_claim_mine,
                       "/* pw_indexes: runs.runs_pending_idx r.runs_pkey */ WITH c AS (SELECT id FROM pipeline_worker.runs"
                       "  WHERE status = 'pending' AND ($4 = 0::oid OR submitted_by = $4::regrole) AND id >= $5 AND id < $6"
                       "    AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       "  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                       " UPDATE pipeline_worker.runs r SET status = 'running', worker_pid = $1, worker_started_at = $2,"
                       "  started_at = pg_catalog.clock_timestamp(), not_before = NULL, claims = r.claims + 1"
                       " FROM c WHERE r.id = c.id"
                       " RETURNING r.id, r.pipeline, r.submitted_by::oid, r.input, r.metadata, r.claims, r.pipeline_id",
                       6, types);
    } else {
        plan = pg::prepare(&plan_claim,
                       "/* pw_indexes: runs_pending_idx */ SELECT id, pipeline, submitted_by::oid, input, metadata, claims + 1, pipeline_id"
                       " FROM pipeline_worker.runs"
                       " WHERE status = 'pending' AND ($4 = 0::oid OR submitted_by = $4::regrole) AND id >= $5 AND id < $6"
                       "   AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                       6, types);
    }
    pg::exec_as_owner(plan, v, nullptr, false, 0);
    int n = static_cast<int>(SPI_processed);
    TimestampTz now = GetCurrentTimestamp();
    MemoryContext old = MemoryContextSwitchTo(dest);
    for (int i = 0; i < n; i++) {
        bool isnull;
        out[i].id = DatumGetInt64(col(i, 1, &isnull));
        out[i].pipeline = TextDatumGetCString(col(i, 2, &isnull));
        out[i].submitter = DatumGetObjectId(col(i, 3, &isnull));
        out[i].input = DatumGetJsonbPCopy(col(i, 4, &isnull));
        out[i].metadata = DatumGetJsonbPCopy(col(i, 5, &isnull));
        out[i].claims = DatumGetInt32(col(i, 6, &isnull));
        out[i].pipeline_id = DatumGetInt64(col(i, 7, &isnull));
        out[i].priority = 0;
        out[i].claimed_at = now;
        out[i].persisted = mark_running;
    }
    MemoryContextSwitchTo(old);
    // ascending: FIFO within the batch
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1].id > out[j].id; j--) std::swap(out[j - 1], out[j]);
    return n;
}

void release_runs(const int64 *ids, int n) {
    if (n <= 0) return;
    pg::spi_connect();
    Datum v[2] = {pg::int8_array(ids, n), TimestampTzGetDatum(MyStartTimestamp)};
    Oid types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
    bool v2 = schema_version() >= 2;
    SPIPlanPtr p = v2 ? pg::prepare(&plan_release_v2,
                                    "/* pw_indexes: r.runs_pkey pipelines_id_key */ UPDATE pipeline_worker.runs r"
                                    " SET status = 'pending', worker_pid = NULL, worker_started_at = NULL," PW_PARKED_IF_PAUSED
                                    " WHERE r.id = ANY ($1) AND CASE r.status WHEN 'running' THEN"
                                    "   r.worker_pid = pg_catalog.pg_backend_pid() AND r.worker_started_at = $2 ELSE false END"
                                    PW_RETURNING_WOKEN,
                                    2, types)
                      : pg::prepare(&plan_release,
                                    "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'pending', worker_pid = NULL, worker_started_at = NULL"
                                    " WHERE id = ANY ($1) AND CASE status WHEN 'running' THEN worker_pid = pg_catalog.pg_backend_pid()"
                                    "   AND worker_started_at = $2 ELSE false END",
                                    2, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    if (v2) note_woken();
    SPI_finish();
    for (int i = 0; i < n; i++) lanes::release_at_commit(ids[i]);
    notes::runs_created(n);
    notes::queue_reordered();
}

int64 recover_runs() {
    pg::spi_connect();
    // A claim belongs to the backend (pid, start time); if no such backend exists, the claimer is gone. Who is alive
    // is read from the process array (shared::claimer_alive), then only the claims of those found gone are reset.
    SPIPlanPtr p = pg::prepare(&plan_claimers,
                               "/* pw_indexes: runs_running_idx */ SELECT DISTINCT worker_pid, worker_started_at"
                               " FROM pipeline_worker.runs WHERE status = 'running'",
                               0, nullptr);
    pg::exec_as_owner(p, nullptr, nullptr, true, 0);
    int n = static_cast<int>(SPI_processed);
    Datum *pids = static_cast<Datum *>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
    Datum *starts = static_cast<Datum *>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
    int gone = 0;
    for (int i = 0; i < n; i++) {
        bool pid_null, start_null;
        Datum pid = col(i, 1, &pid_null), start = col(i, 2, &start_null);
        if (pid_null || start_null) continue;  // (claims always set both)
        if (shared::claimer_alive(DatumGetInt32(pid), DatumGetTimestampTz(start))) continue;
        pids[gone] = pid;
        starts[gone] = start;
        gone++;
    }
    int64 recovered = 0;
    if (gone > 0) {
        Oid types[2] = {INT4ARRAYOID, TIMESTAMPTZARRAYOID};
        Datum v[2] = {pg::make_array(pids, nullptr, gone, INT4OID), pg::make_array(starts, nullptr, gone, TIMESTAMPTZOID)};
        // SKIP LOCKED: a run another transaction holds (a cancel_run or SELECT ... FOR UPDATE left open) is left to
        // a later sweep. Until 2026-12-05 the sweep waited for it, and the worker sweeping -- claims, HTTP answers,
        // the lead's timer and upkeep -- with it (test/scripts/row_locks.sh).
#define PW_RECOVERED                                                                                      \
    " FROM (SELECT o.id FROM pipeline_worker.runs o,"                                                          \
    "   ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS d(pid, started)"                           \
    "   WHERE o.status = 'running' AND o.worker_pid = d.pid AND o.worker_started_at = d.started"                \
    "   FOR UPDATE OF o SKIP LOCKED) k"                                                                          \
    " WHERE r.id = ANY (ARRAY[k.id])"
        // 0.2: a run executing when its pipeline was paused finishes, but one its worker's exit stopped waits for
        // resume_pipeline (until 2026-12-06 it was executed at once).
        bool v2 = schema_version() >= 2;
        if (v2)
            p = pg::prepare(&plan_recover_v2,
                            "/* pw_indexes: o.runs_running_idx r.runs_pkey pipelines_id_key */ UPDATE pipeline_worker.runs r"
                            " SET status = 'pending', worker_pid = NULL, worker_started_at = NULL," PW_PARKED_IF_PAUSED
                            PW_RECOVERED PW_RETURNING_WOKEN,
                            2, types);
        else
            p = pg::prepare(&plan_recover,
                            "/* pw_indexes: o.runs_running_idx r.runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'pending',"
                            " worker_pid = NULL, worker_started_at = NULL" PW_RECOVERED,
                            2, types);
#undef PW_RECOVERED
        pg::exec_as_owner(p, v, nullptr, false, 0);
        recovered = static_cast<int64>(SPI_processed);
        if (v2) note_woken();
    }
    SPI_finish();
    notes::runs_queued(static_cast<uint64>(recovered));  // wake workers for them at commit
    return recovered;
}

}  // namespace pw::store
