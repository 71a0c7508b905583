#include "store/stats.hpp"

#include "pg/spi.hpp"
#include "shmem/metrics.hpp"

namespace pw::store {

namespace {

SPIPlanPtr plan_gauges = nullptr;
constexpr int64 kCheapUs = 2000;

}  // namespace

void refresh_gauges() {
    TimestampTz started = GetCurrentTimestamp();
    pg::spi_connect();
    // One row per pipeline (none of its runs unfinished: zeros). The per-pipeline counts read the partial index of
    // unfinished runs only: what finished costs nothing.
    pg::run_as_owner(&plan_gauges,
                     "/* pw_indexes: runs_unfinished_idx */ SELECT p.name, c.pending, c.scheduled, c.running,"
                     " c.waiting, c.oldest FROM pipeline_worker.pipelines p, LATERAL ("
                     "  SELECT count(*) FILTER (WHERE r.status = 'pending' AND NOT COALESCE(r.run_at > now(), false))"
                     "           AS pending,"
                     "         count(*) FILTER (WHERE r.status = 'pending' AND r.run_at > now()) AS scheduled,"
                     "         count(*) FILTER (WHERE r.status = 'running') AS running,"
                     "         count(*) FILTER (WHERE r.status = 'waiting') AS waiting,"
                     "         min(r.created_at) FILTER (WHERE r.status = 'pending'"
                     "                                  AND NOT COALESCE(r.run_at > now(), false)) AS oldest"
                     "  FROM pipeline_worker.runs r WHERE r.pipeline_id = p.id"
                     "   AND r.status IN ('pending', 'running', 'waiting')) c",
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
    int64 cost;
    metrics::gauges_age(MyDatabaseId, &at, &cost);
    return at == 0 || cost < kCheapUs || TimestampDifferenceExceeds(at, GetCurrentTimestamp(), max_age_ms);
}

}  // namespace pw::store
