#include "store/retention.hpp"

#include "store/stats.hpp"

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/gucs.hpp"

// A run whose parent (the run that started it from a "pipeline" step) is unfinished is kept. (The status test is a
// CASE: see pg/kept_plans.cpp.)
#define PW_PARENT_FINISHED                                                                                  \
    "     AND NOT EXISTS (SELECT 1 FROM pipeline_worker.runs pr WHERE pr.id = r.parent_run_id"               \
    "       AND CASE pr.status WHEN 'succeeded' THEN false WHEN 'failed' THEN false WHEN 'cancelled' THEN false" \
    "       ELSE true END)"

namespace pw::store {

namespace {

// Runs finished within the last hour that the statement just deleted (RETURNING finished_at): pipeline_stats'
// roll-ups of their minutes are counted again.
void unseal_deleted() {
    TimestampTz window = GetCurrentTimestamp() - 62 * USECS_PER_MINUTE, first = 0;
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        Datum d = pg::col(i, 1, &isnull);
        TimestampTz t = isnull ? 0 : DatumGetTimestampTz(d);
        if (t >= window && (first == 0 || t < first)) first = t;
    }
    if (first != 0) unseal_from(TimestampTzGetDatum(first));
}

}  // namespace

using pg::col;

namespace {

SPIPlanPtr plan_any_retention, plan_expire, plan_purge;

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

int64 delete_expired_runs(int max) {
    pg::spi_connect();
    // Nothing to do when no retention is in force (no pipeline option, the global one off).
    SPIPlanPtr p = pg::prepare(&plan_any_retention,
                               "SELECT EXISTS (SELECT 1 FROM pipeline_worker.pipelines WHERE options ? 'retention')",
                               0, nullptr);
    pg::exec_as_owner(p, nullptr, nullptr, true, 1);
    bool isnull;
    bool any_option = DatumGetBool(col(0, 1, &isnull));
    int64 global = guc::retention_us;
    if (!any_option && global <= 0) {
        SPI_finish();
        return 0;  // nothing expires
    }
    // Each run is held to its own retention by its age, an interval comparison: "finished_at < clock_timestamp() -
    // retention" raised "timestamp out of range" for a retention reaching before 4713 BC ('10000 years', meant as
    // "keep"), every second; and the global one is passed as an interval built here, not as microseconds times
    // interval '1 microsecond' (out of range past ~292,000 years). Each (pipeline, status) range is scanned up to its
    // pipeline's own bound (k.bound: an outer column, so an index condition): a pipeline keeping its runs for a week
    // is not read each second because another one keeps them for a minute. Past 6,000 years the bound is -infinity
    // (no run finished that long ago; clock_timestamp() - interval stays in range).
    Interval *global_iv = static_cast<Interval *>(palloc0(sizeof(Interval)));
    global_iv->time = global;
    Oid types[2] = {INTERVALOID, INT4OID};
    Datum v[2] = {IntervalPGetDatum(global_iv), Int32GetDatum(max)};
    char nulls[2] = {global > 0 ? ' ' : 'n', ' '};
    p = pg::prepare(&plan_expire,
                    plan_expire != nullptr ? "" : psprintf(
                    "/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx r.runs_stats_finished_idx"
                    " pr.runs_pkey rd.runs_pkey run_steps_pkey pipelines_id_key events_run_idx */"
                    PW_FINISHED_PIPELINES
                    " k AS (SELECT ids.id, x.keep,"
                    "     CASE WHEN x.keep > interval '6000 years' THEN '-infinity'::timestamptz"
                    "          ELSE pg_catalog.clock_timestamp() - x.keep END AS bound"
                    "   FROM ids, LATERAL (SELECT COALESCE((SELECT (p.options->>'retention')::interval"
                    "     FROM pipeline_worker.pipelines p WHERE p.id = ids.id), $1) AS keep OFFSET 0) x"
                    "   WHERE ids.id IS NOT NULL AND x.keep IS NOT NULL),"
                    " d AS (SELECT e.id FROM k, LATERAL (%s) e LIMIT $2),"
                    " s AS (DELETE FROM pipeline_worker.run_steps rs USING d WHERE rs.run_id = ANY (ARRAY[d.id])),"
                    " ev AS (DELETE FROM pipeline_worker.events v USING d WHERE v.run_id = ANY (ARRAY[d.id]))"
                    " DELETE FROM pipeline_worker.runs rd USING d WHERE rd.id = ANY (ARRAY[d.id]) RETURNING rd.finished_at",
                    each_finished_status("SELECT r.id FROM pipeline_worker.runs r"
                                         " WHERE r.pipeline_id = k.id AND r.status = '@status@' AND r.finished_at < k.bound"
                                         " AND pg_catalog.clock_timestamp() - r.finished_at > k.keep"
                                         PW_PARENT_FINISHED
                                         " LIMIT $2 FOR UPDATE OF r SKIP LOCKED")),
                    2, types);
    pg::exec_as_owner(p, v, nulls, false, 0);
    int64 n = static_cast<int64>(SPI_processed);
    unseal_deleted();
    SPI_finish();
    return n;
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
        " s AS (DELETE FROM pipeline_worker.run_steps rs USING d WHERE rs.run_id = ANY (ARRAY[d.id])),"
        " ev AS (DELETE FROM pipeline_worker.events v USING d WHERE v.run_id = ANY (ARRAY[d.id]))"
        " DELETE FROM pipeline_worker.runs rd USING d WHERE rd.id = ANY (ARRAY[d.id]) RETURNING rd.finished_at",
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
    unseal_deleted();
    SPI_finish();
    return n;
}

}  // namespace pw::store
