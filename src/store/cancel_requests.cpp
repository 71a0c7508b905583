#include "store/cancel_requests.hpp"

#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/shared.hpp"

namespace pw::store {

using pg::col;

// Whether claims in this database must look: a record committed since the last sweep that found none left (or since
// the entry's start -- shared memory new after a crash, when the records are all that is left of the requests).
// Without shared memory (the library not preloaded: no workers, a session's claim_run) always.
bool cancel_records_possible() {
    shared::DbState *d = shared::db();
    return d == nullptr ||
           pg_atomic_read_u64(&d->cancel_records_seq) != pg_atomic_read_u64(&d->cancel_records_swept);
}

namespace {

// A sweep also once a minute with no record noted: records written otherwise (a restore of the table while workers
// run, a hand-made row) make the claims look from then on.
constexpr int64 kSweepAnywayUs = 60 * USECS_PER_SEC;
TimestampTz last_sweep = 0;

}  // namespace

bool cancel_sweep_due() {
    return cancel_records_possible() || GetCurrentTimestamp() - last_sweep >= kSweepAnywayUs;
}

void record_cancel_requests(const int64 *run_ids, int n, const char *error) {
    if (n == 0) return;
    static SPIPlanPtr plan_record = nullptr;
    Oid types[2] = {INT8ARRAYOID, TEXTOID};
    Datum v[2] = {pg::int8_array(run_ids, n), CStringGetTextDatum(error)};
    pg::run_as_owner(&plan_record,
                     "INSERT INTO pipeline_worker.cancel_requests (run_id, error) SELECT pg_catalog.unnest($1), $2",
                     2, types, v, nullptr, false);
    notes::cancel_requests_recorded();  // (at commit: claims look from then on)
}

void apply_cancel_requests(const ClaimedRun *runs, int n) {
    if (n == 0 || !cancel_records_possible()) return;
    static SPIPlanPtr plan_recorded = nullptr;
    Oid types[1] = {INT8ARRAYOID};
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    for (int i = 0; i < n; i++) ids[i] = runs[i].id;
    Datum v[1] = {pg::int8_array(ids, n)};
    pg::run_as_owner(&plan_recorded,
                     "/* pw_indexes: cancel_requests_run_idx */ SELECT DISTINCT run_id FROM pipeline_worker.cancel_requests"
                     " WHERE run_id = ANY ($1)",
                     1, types, v, nullptr, false);  // (a snapshot as fresh as the claim's)
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        int64 id = DatumGetInt64(col(i, 1, &isnull));
        if (!shared::cancel_requested(id)) shared::request_cancel(id);  // (not one ring entry per claim of it)
    }
}

// The run r is not finished (a CASE: see pg/kept_plans.cpp).
#define PW_UNFINISHED " CASE r.status WHEN 'succeeded' THEN false WHEN 'failed' THEN false WHEN 'cancelled' THEN false ELSE true END"
#define PW_RECORDED_UNFINISHED                                                                                    \
    " FROM pipeline_worker.runs r WHERE r.id = ANY (ARRAY(SELECT DISTINCT c.run_id FROM pipeline_worker.cancel_requests c))" \
    "   AND" PW_UNFINISHED

int lock_recorded_runs(RecordedRun **locked, int64 **held, int *nheld) {
    static SPIPlanPtr plan_lock = nullptr, plan_held = nullptr;
    pg::run_as_owner(&plan_lock,
                     "/* pw_indexes: r.runs_pkey c.cancel_requests_run_idx */ SELECT r.id, r.status = 'running',"
                     " (SELECT min(e.error) FROM pipeline_worker.cancel_requests e WHERE e.run_id = r.id)"
                     PW_RECORDED_UNFINISHED " LIMIT 1000 FOR UPDATE OF r SKIP LOCKED",
                     0, nullptr, nullptr, nullptr, false);
    int n = static_cast<int>(SPI_processed);
    *locked = static_cast<RecordedRun *>(palloc(sizeof(RecordedRun) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) {
        bool isnull;
        (*locked)[i].id = DatumGetInt64(col(i, 1, &isnull));
        (*locked)[i].running = DatumGetBool(col(i, 2, &isnull));
        Datum e = col(i, 3, &isnull);
        (*locked)[i].error = isnull ? "cancelled" : TextDatumGetCString(e);
    }
    // (this transaction's own locks are not skipped: the rows locked above come back too, and are left out here)
    Oid types[1] = {INT8ARRAYOID};
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) ids[i] = (*locked)[i].id;
    Datum v[1] = {pg::int8_array(ids, n)};
    pg::run_as_owner(&plan_held,
                     "/* pw_indexes: r.runs_pkey c.cancel_requests_run_idx */ SELECT r.id" PW_RECORDED_UNFINISHED
                     " AND NOT r.id = ANY ($1)",
                     1, types, v, nullptr, false);
    *nheld = static_cast<int>(SPI_processed);
    *held = static_cast<int64 *>(palloc(sizeof(int64) * (*nheld > 0 ? *nheld : 1)));
    for (int i = 0; i < *nheld; i++) {
        bool isnull;
        (*held)[i] = DatumGetInt64(col(i, 1, &isnull));
    }
    return n;
}


void drop_cancel_requests(const int64 *run_ids, int n) {
    if (n == 0) return;
    static SPIPlanPtr plan_drop = nullptr;
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {pg::int8_array(run_ids, n)};
    pg::run_as_owner(&plan_drop,
                     "/* pw_indexes: cancel_requests_run_idx */ DELETE FROM pipeline_worker.cancel_requests"
                     " WHERE run_id = ANY ($1)",
                     1, types, v, nullptr, false);
}

void sweep_cancel_requests() {
    shared::DbState *d = shared::db();
    if (d == nullptr) return;
    // Read before the statements' snapshots: a record committed after this read bumps the sequence past it, and the
    // claims keep looking; one committed before is seen below.
    uint64 seq = pg_atomic_read_u64(&d->cancel_records_seq);
    bool noted = seq != pg_atomic_read_u64(&d->cancel_records_swept);
    last_sweep = GetCurrentTimestamp();
    static SPIPlanPtr plan_sweep = nullptr, plan_left = nullptr;
    pg::spi_connect();
    // SKIP LOCKED: a record a user's open retry_run deletes (or a cancel inserts) is not waited for -- the lead
    // worker's upkeep would wait with it; the look below still sees it, and the claims keep looking.
    pg::run_as_owner(&plan_sweep,
                     "/* pw_indexes: r.runs_pkey */ DELETE FROM pipeline_worker.cancel_requests c WHERE c.ctid = ANY (ARRAY("
                     " SELECT s.ctid FROM pipeline_worker.cancel_requests s WHERE NOT EXISTS (SELECT 1 FROM pipeline_worker.runs r"
                     "   WHERE r.id = s.run_id AND" PW_UNFINISHED ")"
                     " FOR UPDATE OF s SKIP LOCKED))",
                     0, nullptr, nullptr, nullptr, false);
    pg::run_as_owner(&plan_left, "SELECT 1 FROM pipeline_worker.cancel_requests LIMIT 1", 0, nullptr, nullptr, nullptr,
                     false);
    bool none_left = SPI_processed == 0;
    SPI_finish();
    if (none_left) pg_atomic_write_u64(&d->cancel_records_swept, seq);
    else if (!noted) pg_atomic_fetch_add_u64(&d->cancel_records_seq, 1);  // (found by the once-a-minute look)
}

}  // namespace pw::store
