#include "store/stats.hpp"

#include "pg/spi.hpp"
#include "shmem/metrics.hpp"

namespace pw::store {

namespace {

SPIPlanPtr plan_gauges = nullptr;
constexpr int64 kCheapRuns = 10000;  // counting this many unfinished runs takes ~1-2 ms (index-only scans)

}  // namespace

void refresh_gauges() {
    TimestampTz started = GetCurrentTimestamp();
    pg::spi_connect();
    // One row per pipeline (none of its runs unfinished: zeros). Each count is an index-only range scan of the
    // partial indexes of unfinished and pending runs: what finished costs nothing.
    pg::run_as_owner(&plan_gauges,
                     "/* pw_indexes: runs_stats_open_idx runs_stats_oldest_idx */ SELECT p.name,"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at IS NULL)"
                     " + (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at <= pg_catalog.now()),"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending' AND r.run_at > pg_catalog.now()),"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'running'),"
                     " (SELECT pg_catalog.count(*) FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'waiting'),"
                     " (SELECT r.created_at FROM pipeline_worker.runs r"
                     "   WHERE r.pipeline_id = p.id AND r.status = 'pending'"
                     "     AND NOT COALESCE(r.run_at > pg_catalog.now(), false) ORDER BY r.created_at LIMIT 1)"
                     " FROM pipeline_worker.pipelines p",
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
    metrics::gauges_publish(MyDatabaseId, names, g, n, started, at - started);
    SPI_finish();
}

bool gauges_stale(long max_age_ms) {
    TimestampTz at;
    int64 cost, unfinished;
    metrics::gauges_age(MyDatabaseId, &at, &cost, &unfinished);
    return at == 0 || unfinished <= kCheapRuns || TimestampDifferenceExceeds(at, GetCurrentTimestamp(), max_age_ms);
}

}  // namespace pw::store
