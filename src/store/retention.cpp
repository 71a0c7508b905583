#include "store/retention.hpp"

#include "store/stats.hpp"

#include "pg/direct_rows.hpp"
#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/gucs.hpp"

extern "C" {
#include "storage/itemptr.h"
}

// A run whose parent (the run that started it from a "pipeline" step) is unfinished is kept. (The status test is a
// CASE: see pg/kept_plans.cpp.)
#define PW_PARENT_FINISHED                                                                                  \
    "     AND NOT EXISTS (SELECT 1 FROM pipeline_worker.runs pr WHERE pr.id = r.parent_run_id"               \
    "       AND CASE pr.status WHEN 'succeeded' THEN false WHEN 'failed' THEN false WHEN 'cancelled' THEN false" \
    "       ELSE true END)"

// The deletion of the runs d (locked just before, by the same statement) with their step rows and events: one index
// scan of each table over the batch's ids (one executor node, not a rescan per run); events not at all while the
// table is empty (most deployments never send one). Until 2026-12-04 a nested loop per run for each of the three
// tables. (Not the runs by the ctid their lock returned, a TID scan: a run updated after this statement's snapshot
// is locked in its new version, which that snapshot does not see -- the run would stay while its steps went. Found by
// id, its delete follows the update chain to the version locked.)
#define PW_DELETE_D                                                                                                \
    " a AS (SELECT pg_catalog.array_agg(d.id) AS ids FROM d),"                                                        \
    " s AS (DELETE FROM pipeline_worker.run_steps rs WHERE rs.run_id = ANY ((SELECT a.ids FROM a)::bigint[])),"       \
    " ev AS (DELETE FROM pipeline_worker.events v WHERE v.run_id = ANY ((SELECT a.ids FROM a)::bigint[])"             \
    "   AND EXISTS (SELECT 1 FROM pipeline_worker.events v1))"                                                        \
    " DELETE FROM pipeline_worker.runs rd WHERE rd.id = ANY ((SELECT a.ids FROM a)::bigint[])"

namespace pw::store {

namespace {

// The runs finished within the last hour that retention or purge_runs just deleted (RETURNING pipeline_id,
// finished_at, status, submitted_by, pipeline_owner: discount_deleted()'s arrays, in its order) are taken off
// pipeline_stats' roll-ups. deleted: which rows of SPI_tuptable were deleted (nullptr: all).
void discount_returned(const bool *deleted = nullptr) {
    TimestampTz window = GetCurrentTimestamp() - kRollupWindowUs;
    static const Oid elem[5] = {INT8OID, TIMESTAMPTZOID, TEXTOID, OIDOID, OIDOID};
    pg::ArrayColumns *a = pg::array_columns(static_cast<int>(SPI_processed), 5, elem);
    int n = 0;
    for (uint64 i = 0; i < SPI_processed; i++) {
        if (deleted != nullptr && !deleted[i]) continue;
        bool null[5], any_null = false;
        Datum d[5];
        for (int c = 0; c < 5; c++) {
            d[c] = pg::col(i, c + 1, &null[c]);
            any_null = any_null || null[c];
        }
        if (any_null || DatumGetTimestampTz(d[1]) < window) continue;
        for (int c = 0; c < 5; c++) pg::set_cell(a, n, c, d[c]);
        n++;
    }
    if (n == 0) return;
    a->nrows = n;
    Datum v[5];
    pg::column_arrays(a, v);
    discount_deleted(v);
}

}  // namespace

using pg::col;

// x.keep: how long the runs of pipeline ids.id are kept ($1: pipeline_worker.retention as an interval, NULL when -1;
// NULL: forever).
#define PW_KEEP_OF_IDS                                                                                              \
    " LATERAL (SELECT CASE WHEN o.r IS NULL THEN $1 WHEN o.r = '-1' THEN NULL ELSE o.r::interval END"                \
    "     AS keep FROM (SELECT (SELECT p.options->>'retention' FROM pipeline_worker.pipelines p"                      \
    "       WHERE p.id = ids.id) AS r) o OFFSET 0) x"

namespace {

SPIPlanPtr plan_any_retention, plan_purge, plan_next_expiry;

// Whether any retention is in force (a pipeline option, or the global setting); SPI connected.
bool retention_in_force() {
    SPIPlanPtr p = pg::prepare(&plan_any_retention,
                               "SELECT EXISTS (SELECT 1 FROM pipeline_worker.pipelines WHERE options ? 'retention')",
                               0, nullptr);
    pg::exec_as_owner(p, nullptr, nullptr, true, 1);
    bool isnull;
    return DatumGetBool(col(0, 1, &isnull)) || guc::retention_us > 0;
}

// pipeline_worker.retention as an interval (the $1 of PW_KEEP_OF_IDS), and its null flag.
Datum global_keep(char *null) {
    Interval *iv = static_cast<Interval *>(palloc0(sizeof(Interval)));
    iv->time = guc::retention_us;
    *null = guc::retention_us > 0 ? ' ' : 'n';
    return IntervalPGetDatum(iv);
}

// now - us as a parameter: "finished_at < $n" bounds the scan of runs_stats_finished_idx. (Written as
// "finished_at < clock_timestamp() - ..." it was a filter -- clock_timestamp() is volatile -- and the scan read every
// finished run younger than the bound, each second, to find none: 7 % of a CPU for the idle lead worker with
// 300,000 finished runs in the table, a core's worth with millions.) -infinity when the interval reaches past the
// earliest timestamp: nothing is that old.
Datum finished_before(int64 us) {
    TimestampTz now = GetCurrentTimestamp();
    if (us < 0 || now - MIN_TIMESTAMP < us) return TimestampTzGetDatum(DT_NOBEGIN);
    return TimestampTzGetDatum(now - us);
}

}  // namespace

namespace {

// Where the expired runs of each (pipeline, status) start. Retention deletes the oldest runs of a range, so the range
// begins with the index entries of the runs it deleted before, dead until VACUUM removes them (minutes, on a big
// table): scanned from its start, every round walked millions of them through cold pages (a steady load with
// retention '1 minute' spent a quarter of both CPUs there). Fast rounds start each range at its cursor, the newest
// finished_at deleted from it; a full round from the start every kFullEveryUs picks up what a cursor passed by (a
// run locked at the time, a run whose transaction committed after newer ones were deleted, the runs of a pipeline
// dropped since the last full round), so no run outlives its retention by more than that. Kept by the lead worker
// in TopMemoryContext; forget_expire_cursors() after a failed round (a rolled-back delete moved them).
struct ExpireCursor {
    int64 pipeline;
    TimestampTz lo[3];  // cancelled, failed, succeeded (each_finished_status' order); DT_NOBEGIN: from the start
};
constexpr int64 kFullEveryUs = 10 * USECS_PER_SEC;
ExpireCursor *cursors = nullptr;
int n_cursors = 0, cap_cursors = 0;
TimestampTz last_full = 0;

int status_slot(const char *status) {
    return strcmp(status, "cancelled") == 0 ? 0 : strcmp(status, "failed") == 0 ? 1 : 2;
}

ExpireCursor *cursor_of(int64 pipeline) {
    for (int i = 0; i < n_cursors; i++)
        if (cursors[i].pipeline == pipeline) return &cursors[i];
    if (n_cursors == cap_cursors) {
        int cap = cap_cursors == 0 ? 16 : cap_cursors * 2;
        cursors = static_cast<ExpireCursor *>(
            cursors == nullptr ? MemoryContextAlloc(TopMemoryContext, cap * sizeof(ExpireCursor))
                               : repalloc(cursors, cap * sizeof(ExpireCursor)));
        cap_cursors = cap;
    }
    ExpireCursor *c = &cursors[n_cursors++];
    c->pipeline = pipeline;
    for (TimestampTz &t : c->lo) t = DT_NOBEGIN;
    return c;
}

// After a round (its rows: pipeline_id, finished_at, status, ... of the runs deleted or found): each range's cursor
// moves to the newest run of it in the round. (Ranges with nothing found keep theirs: only ranges that retention
// deletes from grow dead prefixes.) Returns whether a cursor moved.
bool advance_cursors() {
    bool moved = false;
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool n1, n2, n3;
        Datum pipeline = pg::col(i, 1, &n1), at = pg::col(i, 2, &n2), status = pg::col(i, 3, &n3);
        if (n1 || n2 || n3) continue;
        TimestampTz &lo = cursor_of(DatumGetInt64(pipeline))->lo[status_slot(TextDatumGetCString(status))];
        if (DatumGetTimestampTz(at) > lo) {
            lo = DatumGetTimestampTz(at);
            moved = true;
        }
    }
    return moved;
}

}  // namespace

void forget_expire_cursors() {
    n_cursors = 0;
    last_full = 0;
}

namespace {

SPIPlanPtr plan_expire[2], plan_expire_from[2], plan_delete_rest;

// The statement of a round (full: every pipeline with finished runs, each range from its start; else the pipelines
// with cursors and those of the pipelines table, each range from its cursor). find: it returns the expired runs
// (pipeline_id, finished_at, status, submitted_by, pipeline_owner as a delete's RETURNING, then ctid, id and
// tableoid) without locking them; else it locks and deletes them with their step rows and events, RETURNING those
// five values.
//
// Each run is held to its own retention by its age, an interval comparison: "finished_at < clock_timestamp() -
// retention" raised "timestamp out of range" for a retention reaching before 4713 BC ('10000 years', meant as
// "keep"), every second; and the global one is passed as an interval built here, not as microseconds times
// interval '1 microsecond' (out of range past ~292,000 years). Each (pipeline, status) range is scanned up to its
// pipeline's own bound (k.bound: an outer column, so an index condition): a pipeline keeping its runs for a week
// is not read each second because another one keeps them for a minute. Past 6,000 years the bound is -infinity
// (no run finished that long ago; clock_timestamp() - interval stays in range).
void run_expire_statement(bool full, bool find, int max) {
    char keep_null;
    Datum keep = global_keep(&keep_null);
#define PW_EXPIRE_K                                                                                                 \
    " k AS (SELECT ids.*, x.keep,"                                                                                  \
    "     CASE WHEN x.keep > interval '6000 years' THEN '-infinity'::timestamptz"                                     \
    "          ELSE pg_catalog.clock_timestamp() - x.keep END AS bound"                                               \
    "   FROM ids, " PW_KEEP_OF_IDS                                                                                    \
    "   WHERE ids.id IS NOT NULL AND x.keep IS NOT NULL)"
#define PW_EXPIRE_FIND                                                                                              \
    " SELECT e.pipeline_id, e.finished_at, e.status, e.submitted_by::oid, e.pipeline_owner::oid, e.ctid, e.id,"     \
    "   e.tableoid"                                                                                                   \
    " FROM k, LATERAL (%s) e LIMIT $2"
#define PW_EXPIRE_DELETE                                                                                            \
    ", d AS (SELECT e.id FROM k, LATERAL (%s) e LIMIT $2),"                                                         \
    PW_DELETE_D                                                                                                    \
    " RETURNING rd.pipeline_id, rd.finished_at, rd.status, rd.submitted_by::oid, rd.pipeline_owner::oid"
#define PW_EXPIRE_BRANCH(LOWER, TAIL)                                                                               \
    "SELECT r.id, r.ctid, r.tableoid, r.pipeline_id, r.finished_at, r.status, r.submitted_by, r.pipeline_owner"     \
    " FROM pipeline_worker.runs r"                                                                                  \
    " WHERE r.pipeline_id = k.id AND r.status = '@status@'" LOWER " AND r.finished_at < k.bound"                   \
    " AND pg_catalog.clock_timestamp() - r.finished_at > k.keep" PW_PARENT_FINISHED " LIMIT $2" TAIL
#define PW_LOCKED " FOR UPDATE OF r SKIP LOCKED"
    SPIPlanPtr p;
    if (full) {
        Oid types[2] = {INTERVALOID, INT4OID};
        Datum v[2] = {keep, Int32GetDatum(max)};
        char nulls[2] = {keep_null, ' '};
        const char *sql = plan_expire[find] != nullptr ? ""
            : find ? psprintf("/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx"
                              " r.runs_stats_finished_idx pr.runs_pkey pipelines_id_key */"
                              PW_FINISHED_PIPELINES PW_EXPIRE_K PW_EXPIRE_FIND,
                              each_finished_status(PW_EXPIRE_BRANCH("", "")))
                   : psprintf("/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx"
                              " r.runs_stats_finished_idx pr.runs_pkey rd.runs_pkey run_steps_pkey pipelines_id_key"
                              " events_run_idx */"
                              PW_FINISHED_PIPELINES PW_EXPIRE_K PW_EXPIRE_DELETE,
                              each_finished_status(PW_EXPIRE_BRANCH("", PW_LOCKED)));
        p = pg::prepare(&plan_expire[find], sql, 2, types);
        pg::exec_as_owner(p, v, nulls, false, 0);
        return;
    }
    static const Oid elem[4] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
    pg::ArrayColumns *a = pg::array_columns(n_cursors, 4, elem);
    for (int i = 0; i < n_cursors; i++) {
        pg::set_cell(a, i, 0, Int64GetDatum(cursors[i].pipeline));
        for (int s = 0; s < 3; s++) pg::set_cell(a, i, s + 1, TimestampTzGetDatum(cursors[i].lo[s]));
    }
    Oid types[6] = {INTERVALOID, INT4OID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
    Datum v[6] = {keep, Int32GetDatum(max)};
    pg::column_arrays(a, v + 2);
    char nulls[6] = {keep_null, ' ', ' ', ' ', ' ', ' '};
#define PW_EXPIRE_IDS                                                                                               \
    " WITH ids(id, lo_cancelled, lo_failed, lo_succeeded) AS ("                                                     \
    "   SELECT * FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5),"               \
    "     pg_catalog.unnest($6)) c"                                                                                  \
    "   UNION ALL SELECT q.id, '-infinity', '-infinity', '-infinity' FROM pipeline_worker.pipelines q"                \
    "     WHERE NOT q.id = ANY ($3)),"
    const char *sql = plan_expire_from[find] != nullptr ? ""
        : find ? psprintf("/* pw_indexes: r.runs_stats_finished_idx pr.runs_pkey pipelines_id_key */"
                          PW_EXPIRE_IDS PW_EXPIRE_K PW_EXPIRE_FIND,
                          each_finished_status(PW_EXPIRE_BRANCH(" AND r.finished_at >= k.lo_@status@", "")))
               : psprintf("/* pw_indexes: r.runs_stats_finished_idx pr.runs_pkey rd.runs_pkey run_steps_pkey"
                          " pipelines_id_key events_run_idx */"
                          PW_EXPIRE_IDS PW_EXPIRE_K PW_EXPIRE_DELETE,
                          each_finished_status(PW_EXPIRE_BRANCH(" AND r.finished_at >= k.lo_@status@", PW_LOCKED)));
    p = pg::prepare(&plan_expire_from[find], sql, 6, types);
    pg::exec_as_owner(p, v, nulls, false, 0);
#undef PW_EXPIRE_IDS
#undef PW_LOCKED
#undef PW_EXPIRE_BRANCH
#undef PW_EXPIRE_DELETE
#undef PW_EXPIRE_FIND
#undef PW_EXPIRE_K
}

// The expired runs just found (SPI_tuptable: run_expire_statement's find form) deleted one by one by the row version
// found, without a statement (pg/direct_rows.hpp). nullptr: the run table is not one to delete from that way (a
// trigger, a rule, row-level security, inheritance children: the caller deletes with the statement). Else, per row
// found, whether it was deleted: not if it changed or was locked since the statement's snapshot (a retry_run, a
// purge_runs, a user's transaction), as SKIP LOCKED leaves a row -- the next round finds it again if it is still
// expired. The ids of the runs deleted go to *ids, for delete_rest(). What this spares, per run: the row lock and its
// WAL record, the runs_pkey descent by id and the DELETE's executor (bench/README, 2026-12-06 night: 7.5 -> 4.9 us of
// the workers' CPU per run deleted). The step rows are left to a statement: deleted one run at a time through
// run_steps_pkey without one, they cost more than the statement's one index scan over the batch (4.1 -> 4.7 us).
bool *delete_found(Datum *ids, int64 *n_deleted) {
    uint64 rows = SPI_processed;
    bool *deleted = static_cast<bool *>(palloc0(sizeof(bool) * (rows + 1)));
    *n_deleted = 0;
    if (rows == 0) return deleted;  // (nothing found: the table is not opened)
    Oid runs = pg::run_table();
    pg::DirectRows *d = pg::direct_begin(runs, CMD_DELETE, nullptr);
    if (d == nullptr) return nullptr;
    static const Oid elem[1] = {INT8OID};
    pg::ArrayColumns *a = pg::array_columns(static_cast<int>(rows), 1, elem);
    int n = 0;
    for (uint64 i = 0; i < rows; i++) {
        bool null_tid, null_id, null_table;
        Datum tid = pg::col(i, 6, &null_tid);
        Datum id = pg::col(i, 7, &null_id);
        Datum table = pg::col(i, 8, &null_table);
        // (a row version of the run table itself: direct_begin refuses a parent of inheritance children, whose rows
        // the statement would also return)
        if (null_tid || null_id || null_table || DatumGetObjectId(table) != runs ||
            !pg::direct_delete(d, reinterpret_cast<ItemPointer>(DatumGetPointer(tid))))
            continue;
        deleted[i] = true;
        pg::set_cell(a, n++, 0, id);
    }
    pg::direct_end(d);
    a->nrows = n;
    pg::column_arrays(a, ids);
    *n_deleted = n;
    return deleted;
}

// The step rows and events of the runs delete_found() deleted (events not at all while the table is empty, as most
// deployments never send one): one index scan of each table over the ids. (After the callers have read the rows
// found: this statement's result replaces them.)
void delete_rest(Datum ids) {
    Oid types[1] = {INT8ARRAYOID};
    SPIPlanPtr p = pg::prepare(
        &plan_delete_rest,
        plan_delete_rest != nullptr ? "" :
        "/* pw_indexes: run_steps_pkey events_run_idx */"
        " WITH s AS (DELETE FROM pipeline_worker.run_steps rs WHERE rs.run_id = ANY ($1))"
        " DELETE FROM pipeline_worker.events v WHERE v.run_id = ANY ($1)"
        "   AND EXISTS (SELECT 1 FROM pipeline_worker.events v1)",
        1, types);
    pg::exec_as_owner(p, &ids, nullptr, false, 0);
}

}  // namespace

int64 delete_expired_runs(int max) {
    pg::spi_connect();
    // Nothing to do when no retention is in force (no pipeline option, the global one off).
    if (!retention_in_force()) {
        SPI_finish();
        return 0;  // nothing expires
    }
    // The deleted runs are taken off the roll-ups under their lock: while a session's transaction holds it (a
    // retry_run, a purge_runs), this round is skipped rather than waited for (tried again in a second).
    if (!try_lock_sealed()) {
        SPI_finish();
        return -1;
    }
    TimestampTz now = GetCurrentTimestamp();
    bool full = last_full == 0 || now - last_full >= kFullEveryUs;
    run_expire_statement(full, true, max);
    int64 n = 0;
    Datum ids = 0;
    const bool *deleted = delete_found(&ids, &n);
    if (deleted == nullptr) {  // (the rows found are not deleted: the statement finds them again, and deletes them)
        run_expire_statement(full, false, max);
        n = static_cast<int64>(SPI_processed);
    }
    if (full) last_full = now;
    // The cursors move past the runs found and left too (held by another transaction: the next full round takes
    // them), else rows held at a range's start would be found again by every round, filling its LIMIT, and retention
    // would stop there. For the same reason the rounds go on while a round finds max runs, deleted or not -- unless
    // it deleted none and moved no cursor (max held runs finished at the same moment: the same rows again).
    bool moved = advance_cursors();
    int64 found = deleted != nullptr && (n > 0 || moved) ? static_cast<int64>(SPI_processed) : n;
    discount_returned(deleted);
    if (deleted != nullptr && n > 0) delete_rest(ids);
    SPI_finish();
    return found;
}

TimestampTz next_expiry() {
    pg::spi_connect();
    if (!retention_in_force()) {
        SPI_finish();
        return 0;
    }
    // For each pipeline with finished runs and a retention, the first run of each status still within it (an index
    // range scan from the bound: the expired runs before it, and the dead entries of those deleted, are not read),
    // and the moment the delete above takes it: finished_at + keep both by the calendar (the bound) and as an
    // interval comparison (a month as 30 days, a day as 24 h) -- the later of the two. (A month-end finish with a
    // keep in months can pass both and still be before the bound -- clamped to the shorter month's end: such a
    // moment, past already, is left out: the database's periodic visits take that run.)
    Oid types[1] = {INTERVALOID};
    char nulls[1];
    Datum v[1] = {global_keep(&nulls[0])};
    SPIPlanPtr p = pg::prepare(
        &plan_next_expiry,
        plan_next_expiry != nullptr ? "" : psprintf(
        "/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx r.runs_stats_finished_idx pipelines_id_key */"
        PW_FINISHED_PIPELINES
        " k AS (SELECT ids.id, x.keep, pg_catalog.clock_timestamp() - x.keep AS bound FROM ids, " PW_KEEP_OF_IDS
        "   WHERE ids.id IS NOT NULL AND x.keep IS NOT NULL AND x.keep <= interval '6000 years')"
        " SELECT pg_catalog.min(x.at) FROM (SELECT GREATEST(e.finished_at + k.keep, e.finished_at"
        "   + pg_catalog.make_interval(secs => pg_catalog.date_part('epoch', k.keep))) + interval '1 millisecond' AS at"
        "   FROM k, LATERAL (%s) e) x WHERE x.at > pg_catalog.clock_timestamp()",
        each_finished_status("SELECT r.finished_at FROM pipeline_worker.runs r"
                             " WHERE r.pipeline_id = k.id AND r.status = '@status@' AND r.finished_at > k.bound"
                             " ORDER BY r.finished_at LIMIT 1")),
        1, types);
    pg::exec_as_owner(p, v, nulls, true, 1);
    bool isnull = true;
    Datum at = SPI_processed == 1 ? col(0, 1, &isnull) : (Datum)0;
    TimestampTz due = isnull ? 0 : DatumGetTimestampTz(at);
    SPI_finish();
    return due;
}

int64 purge_finished_runs(int64 older_than_us, const char *pipeline, bool all, int max) {
    pg::spi_connect();
    Oid types[5] = {TIMESTAMPTZOID, TEXTOID, BOOLOID, OIDOID, INT4OID};
    Datum v[5] = {finished_before(older_than_us), pipeline ? CStringGetTextDatum(pipeline) : (Datum)0, BoolGetDatum(all),
                  ObjectIdGetDatum(GetUserId()), Int32GetDatum(max)};
    char nulls[5] = {' ', pipeline ? ' ' : 'n', ' ', ' ', ' '};
    SPIPlanPtr p = pg::prepare(
        &plan_purge,
        plan_purge != nullptr ? "" : psprintf(
        "/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx r.runs_stats_finished_idx pr.runs_pkey"
        " rd.runs_pkey run_steps_pkey events_run_idx */"
        PW_FINISHED_PIPELINES
        " d AS (SELECT e.id FROM ids, LATERAL (%s) e WHERE ids.id IS NOT NULL LIMIT $5),"
        PW_DELETE_D
        " RETURNING rd.pipeline_id, rd.finished_at, rd.status, rd.submitted_by::oid, rd.pipeline_owner::oid",
        each_finished_status("SELECT r.id FROM pipeline_worker.runs r"
                             " WHERE r.pipeline_id = ids.id AND r.status = '@status@' AND r.finished_at < $1"
                             " AND ($2 IS NULL OR r.pipeline = $2)"
                             " AND ($3 OR CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles o"
                             "   WHERE o.oid = r.pipeline_owner::oid)"
                             "   THEN pg_catalog.pg_has_role($4, r.pipeline_owner::oid, 'USAGE') ELSE false END)"
                             PW_PARENT_FINISHED
                             " LIMIT $5 FOR UPDATE OF r SKIP LOCKED")),
        5, types);
    pg::exec_as_owner(p, v, nulls, false, 0);
    int64 n = static_cast<int64>(SPI_processed);
    discount_returned();
    SPI_finish();
    return n;
}

}  // namespace pw::store
