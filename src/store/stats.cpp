#include "store/stats.hpp"

#include "pg/spi.hpp"
#include "shmem/metrics.hpp"
#include "store/queue.hpp"

extern "C" {
#include "utils/backend_status.h"
}

namespace pw::store {

char *each_finished_status(const char *branch) {
    static const char *const kStatuses[3] = {"cancelled", "failed", "succeeded"};
    StringInfoData b;
    initStringInfo(&b);
    for (int i = 0; i < 3; i++) {
        appendStringInfoString(&b, i == 0 ? "SELECT * FROM (" : " UNION ALL SELECT * FROM (");
        for (const char *p = branch; *p != '\0';) {
            if (strncmp(p, "@status@", 8) == 0) {
                appendStringInfoString(&b, kStatuses[i]);
                p += 8;
            } else {
                appendStringInfoChar(&b, *p++);
            }
        }
        appendStringInfo(&b, ") f%d", i);
    }
    return b.data;
}

namespace {

SPIPlanPtr plan_gauges = nullptr;
constexpr int64 kCheapRuns = 10000;  // counting this many unfinished runs takes ~1-2 ms (index-only scans)
constexpr int64 kCheapCountUs = 5000;  // ... when their indexes are not full of dead entries: the last count's time

}  // namespace

void refresh_gauges() {
    // A database still at 0.1 has no gauges to count (no run_at, no waiting runs): its lead worker counted with the
    // 0.2 statement after every scrape anywhere, and logged its ERROR every few seconds (acceptance walk-through,
    // 2026-12-07).
    if (schema_version() < 2) return;
    uint64 created_before = metrics::runs_created_in(MyDatabaseId);
    TimestampTz started = GetCurrentTimestamp();
    pg::spi_connect();
    // One row per pipeline (none of its runs unfinished: zeros). Each count is an index-only range scan of the
    // partial indexes of unfinished and pending runs: what finished costs nothing.
    pg::run_as_owner(&plan_gauges,
                     "/* pw_indexes: runs_stats_open_idx runs_stats_oldest_idx */ SELECT p.name,"
                     " nw.ready + due.ready,"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at > pg_catalog.now())"
                     " + nw.backoff + due.backoff,"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'running'),"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'waiting'),"
                     " (SELECT r.created_at FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending'"
                     "     AND NOT COALESCE(r.run_at > pg_catalog.now(), false)"
                     "     AND NOT COALESCE(r.not_before > pg_catalog.now(), false) ORDER BY r.created_at LIMIT 1)"
                     " FROM pipeline_worker.pipelines p"
                     // (as pipeline_stats: a run waiting for a retry's back-off is not claimable now -- scheduled)
                     " CROSS JOIN LATERAL (SELECT"
                     "   pg_catalog.count(*) FILTER (WHERE NOT COALESCE(r.not_before > pg_catalog.now(), false))"
                     "     AS ready,"
                     "   pg_catalog.count(*) FILTER (WHERE r.not_before > pg_catalog.now()) AS backoff"
                     "   FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at IS NULL) nw"
                     " CROSS JOIN LATERAL (SELECT"
                     "   pg_catalog.count(*) FILTER (WHERE NOT COALESCE(r.not_before > pg_catalog.now(), false))"
                     "     AS ready,"
                     "   pg_catalog.count(*) FILTER (WHERE r.not_before > pg_catalog.now()) AS backoff"
                     "   FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at <= pg_catalog.now()) due",
                     0, nullptr, nullptr, nullptr, true);
    int n = static_cast<int>(SPI_processed);
    const char **names = static_cast<const char **>(palloc(sizeof(char *) * (n > 0 ? n : 1)));
    metrics::Gauges *g = static_cast<metrics::Gauges *>(palloc0(sizeof(metrics::Gauges) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) {
        bool isnull;
        names[i] = TextDatumGetCString(pg::col(i, 1, &isnull));
        g[i].pending = DatumGetInt64(pg::col(i, 2, &isnull));
        g[i].scheduled = DatumGetInt64(pg::col(i, 3, &isnull));
        g[i].running = DatumGetInt64(pg::col(i, 4, &isnull));
        g[i].waiting = DatumGetInt64(pg::col(i, 5, &isnull));
        Datum oldest = pg::col(i, 6, &isnull);
        g[i].oldest_pending = isnull ? 0 : DatumGetTimestampTz(oldest);
    }
    TimestampTz at = GetCurrentTimestamp();
    metrics::gauges_publish(MyDatabaseId, names, g, n, started, at - started, created_before);
    SPI_finish();
}

bool gauges_stale(long max_age_ms) {
    TimestampTz at;
    int64 cost, unfinished, created_since;
    metrics::gauges_age(MyDatabaseId, &at, &cost, &unfinished, &created_since);
    // (Runs created since that count are unfinished too, as far as the scrape can tell: a count after a surge of
    // 20,000 took a scrape 14-29 ms, against the issue's 5 ms; acceptance walk-through, 2026-12-07. The lead worker
    // counts them within 5 s.)
    unfinished += created_since;
    // Few unfinished runs are not always cheap to count: under a steady load the partial indexes hold the entries of
    // millions of runs finished since the last VACUUM, which every count walks (tens of milliseconds). A scrape counts
    // again only when the last count was cheap in time too; else it reads what the lead worker published.
    return at == 0 || (unfinished <= kCheapRuns && cost <= kCheapCountUs) ||
           TimestampDifferenceExceeds(at, GetCurrentTimestamp(), max_age_ms);
}

namespace {

// The earliest start of an open transaction of another backend (autovacuum's aside: it finishes no run), now at
// the latest: every run that can still become finished will have finished_at at or after it.
TimestampTz open_transactions_horizon() {
    TimestampTz horizon = GetCurrentTimestamp();
    pgstat_clear_snapshot();
    int nb = pgstat_fetch_stat_numbackends();
    for (int i = 1; i <= nb; i++) {
        LocalPgBackendStatus *l = pgstat_fetch_stat_local_beentry(i);
        if (l == nullptr) continue;
        const PgBackendStatus *b = &l->backendStatus;
        if (b->st_procpid <= 0 || b->st_procpid == MyProcPid || b->st_backendType == B_AUTOVAC_WORKER) continue;
        if (b->st_xact_start_timestamp != 0 && b->st_xact_start_timestamp < horizon) horizon = b->st_xact_start_timestamp;
    }
    pgstat_clear_snapshot();
    return horizon;
}

}  // namespace

int seal_finished_minutes() {
    TimestampTz horizon = open_transactions_horizon();
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    pg::lock_run_table_first();
    PushActiveSnapshot(GetTransactionSnapshot());
    if (schema_version() < 2) {  // (0.1: no roll-ups)
        PopActiveSnapshot();
        CommitTransactionCommand();
        return 0;
    }
    pg::spi_connect();
    static SPIPlanPtr plan_prepared = nullptr, plan_lock = nullptr, plan_count = nullptr, plan_trim = nullptr;
    // a prepared transaction's start is not known: nothing is sealed while one exists
    pg::run_as_owner(&plan_prepared, "SELECT 1 FROM pg_catalog.pg_prepared_xacts LIMIT 1", 0, nullptr, nullptr,
                     nullptr, true);
    int sealed = 0;
    if (SPI_processed == 0) {
        Oid types[1] = {TIMESTAMPTZOID};
        Datum v[1] = {TimestampTzGetDatum(horizon)};
        // from: the first minute not sealed (within the last 61 minutes); to: the horizon's minute. Nothing this
        // second while a session holds the lock (a retry_run or purge_runs not yet committed): the lead worker does
        // not wait for it.
        pg::run_as_owner(&plan_lock,
                         "SELECT GREATEST(f.upto, pg_catalog.date_trunc('minute', pg_catalog.now() - interval '61 minutes')),"
                         " pg_catalog.date_trunc('minute', $1) FROM pipeline_worker.finished_sealed f"
                         " FOR UPDATE SKIP LOCKED",
                         1, types, v, nullptr, false);
        bool isnull, tnull;
        Datum from = SPI_processed == 1 ? pg::col(0, 1, &isnull) : 0;
        Datum to = SPI_processed == 1 ? pg::col(0, 2, &tnull) : 0;
        if (SPI_processed == 1 && DatumGetTimestampTz(to) > DatumGetTimestampTz(from)) {
            Oid ct[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
            Datum cv[2] = {from, to};
            // (a statement of its own, after the lock: its snapshot sees every unsealing committed before)
            pg::run_as_owner(&plan_count,
                             plan_count != nullptr ? "" : psprintf(
                             "/* pw_indexes: f.runs_stats_finished_idx g.runs_stats_finished_idx"
                             " r.runs_stats_finished_idx */"
                             PW_FINISHED_PIPELINES
                             " c AS (INSERT INTO pipeline_worker.finished_minutes"
                             "   (pipeline_id, minute, status, submitted_by, pipeline_owner, n)"
                             " SELECT m.pipeline_id, pg_catalog.date_trunc('minute', m.finished_at), m.status,"
                             "   m.submitted_by, m.pipeline_owner, pg_catalog.count(*) FROM ids, LATERAL (%s) m"
                             " WHERE ids.id IS NOT NULL"
                             " GROUP BY 1, 2, 3, 4, 5 RETURNING 1)"
                             " UPDATE pipeline_worker.finished_sealed SET upto = $2",
                             each_finished_status("SELECT r.pipeline_id, r.finished_at, r.status, r.submitted_by,"
                                                  " r.pipeline_owner FROM pipeline_worker.runs r"
                                                  " WHERE r.pipeline_id = ids.id AND r.status = '@status@'"
                                                  " AND r.finished_at >= $1 AND r.finished_at < $2")),
                             2, ct, cv, nullptr, false);
            sealed = static_cast<int>((DatumGetTimestampTz(to) - DatumGetTimestampTz(from)) / USECS_PER_MINUTE);
            pg::run_as_owner(&plan_trim,
                             "DELETE FROM pipeline_worker.finished_minutes"
                             " WHERE minute < pg_catalog.now() - interval '62 minutes'",
                             0, nullptr, nullptr, nullptr, false);
        }
    }
    SPI_finish();
    PopActiveSnapshot();
    CommitTransactionCommand();
    return sealed;
}

namespace {

SPIPlanPtr plan_lock_sealed = nullptr;

// The sealer's lock first, in a statement of its own: the next statement's snapshot then sees whatever a sealer
// that held it committed, and no sealer counts meanwhile.
void lock_sealed() {
    pg::run_as_owner(&plan_lock_sealed, "SELECT 1 FROM pipeline_worker.finished_sealed FOR UPDATE", 0, nullptr,
                     nullptr, nullptr, false);
}

}  // namespace

bool try_lock_sealed() {
    static SPIPlanPtr plan_try = nullptr;
    pg::run_as_owner(&plan_try,
                     "SELECT (SELECT pg_catalog.count(*) FROM (SELECT 1 FROM pipeline_worker.finished_sealed"
                     "   FOR UPDATE SKIP LOCKED) l) = (SELECT pg_catalog.count(*) FROM pipeline_worker.finished_sealed)",
                     0, nullptr, nullptr, nullptr, false);
    bool isnull;
    return SPI_processed == 1 && DatumGetBool(pg::col(0, 1, &isnull));
}

// Retention deletes the runs of a minute or so ago, each second. Unsealing their minutes made the lead worker count
// a minute's worth of runs again each second: with retention '1 minute' under a steady load, a sixth of both CPUs.
void discount_deleted(Datum *columns) {
    static SPIPlanPtr plan_discount = nullptr;
    lock_sealed();
    Oid types[5] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID, OIDARRAYOID, OIDARRAYOID};
    pg::run_as_owner(&plan_discount,
                     "/* pw_indexes: finished_minutes_idx */"
                     " WITH d AS (SELECT x.pipeline_id, pg_catalog.date_trunc('minute', x.at) AS minute, x.status,"
                     "     x.submitted_by, x.pipeline_owner, pg_catalog.count(*) AS n"
                     "   FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
                     "     pg_catalog.unnest($4), pg_catalog.unnest($5)) x(pipeline_id, at, status, submitted_by,"
                     "     pipeline_owner), pipeline_worker.finished_sealed s"
                     "   WHERE x.at < s.upto GROUP BY 1, 2, 3, 4, 5),"
                     " u AS (UPDATE pipeline_worker.finished_minutes f SET n = f.n - d.n FROM d"
                     "   WHERE f.pipeline_id = d.pipeline_id AND f.status = d.status AND f.minute = d.minute"
                     "     AND f.submitted_by::oid = d.submitted_by AND f.pipeline_owner::oid = d.pipeline_owner"
                     "   RETURNING d.minute)"
                     " SELECT (SELECT pg_catalog.count(*) FROM d) = (SELECT pg_catalog.count(*) FROM u),"
                     "   (SELECT pg_catalog.min(d.minute) FROM d)",
                     5, types, columns, nullptr, false);
    bool same_null, first_null;
    bool same = DatumGetBool(pg::col(0, 1, &same_null));
    Datum first = pg::col(0, 2, &first_null);
    // (a sealed minute without the roll-up of a deleted run, or with two: not what sealing leaves; count it again)
    if (!same_null && !same && !first_null) unseal_from(first);
}

void unseal_from(Datum finished_at) {
    static SPIPlanPtr plan_unseal = nullptr;
    lock_sealed();
    Oid types[1] = {TIMESTAMPTZOID};
    Datum v[1] = {finished_at};
    pg::run_as_owner(&plan_unseal,
                     "WITH u AS (UPDATE pipeline_worker.finished_sealed"
                     "   SET upto = LEAST(upto, pg_catalog.date_trunc('minute', $1)) RETURNING 1)"
                     " DELETE FROM pipeline_worker.finished_minutes WHERE minute >= pg_catalog.date_trunc('minute', $1)",
                     1, types, v, nullptr, false);
}

}  // namespace pw::store
