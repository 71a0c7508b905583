#include "worker/upkeep.hpp"

#include "store/claims.hpp"
#include "store/queue.hpp"
#include "store/retention.hpp"
#include "store/stats.hpp"
#include "shmem/gucs.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"

namespace pw::worker {

// Sweeps when asked (the launcher saw a worker exit; start-up) and, on the database's lead worker only, every
// recovery_interval_ms as a safety net: one sweeper is enough, and the others stay out of the latency path.
void maybe_recover(TimestampTz *last_sweep, bool periodic) {
    shared::DbState *d = shared::db();
    bool asked = d != nullptr && pg_atomic_exchange_u32(&d->recovery_needed, 0) != 0;
    if (!asked && (!periodic ||
                   !TimestampDifferenceExceeds(*last_sweep, GetCurrentTimestamp(), guc::recovery_interval_ms)))
        return;
    *last_sweep = GetCurrentTimestamp();
    pgstat_report_activity(STATE_RUNNING, "recovering orphaned runs");
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    int64 n = store::recover_runs();
    PopActiveSnapshot();
    CommitTransactionCommand();
    if (n > 0) ereport(LOG, (errmsg("pipeline_worker: recovered %lld run(s) whose worker had exited", (long long)n)));
}

// metrics()' gauges (the database's lead worker): counted every 5 s, or less often when counting is expensive
// (at most 2 % of the time), so that a scrape finds them without counting a large backlog itself -- only while
// metrics are read (a scrape in the last 10 minutes): a server nobody scrapes pays nothing.
constexpr long kScrapedWithinMs = 10 * 60 * 1000;

void maybe_count(TimestampTz *last, bool mine) {
    if (!mine || !metrics::scraped_within(kScrapedWithinMs)) return;
    TimestampTz at;
    int64 cost_us;
    metrics::gauges_age(MyDatabaseId, &at, &cost_us);
    long interval_ms = cost_us / 20 > 5000 ? static_cast<long>(cost_us / 20) : 5000;
    if (!TimestampDifferenceExceeds(*last, GetCurrentTimestamp(), interval_ms)) return;
    *last = GetCurrentTimestamp();
    pgstat_report_activity(STATE_RUNNING, "counting unfinished runs (metrics)");
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    store::refresh_gauges();
    PopActiveSnapshot();
    CommitTransactionCommand();
}

// Retention (the database's lead worker, at most once a second): finished runs past their retention are deleted, 10,000 per
// transaction, until none is left.
namespace {

void expire_rounds() {
    for (int round = 0; round < 100; round++) {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
        int64 n = store::schema_version() >= 2 ? store::delete_expired_runs(10000) : 0;
        PopActiveSnapshot();
        CommitTransactionCommand();
        if (n < 10000) break;
        pgstat_report_activity(STATE_RUNNING, "deleting finished runs past their retention");
        CHECK_FOR_INTERRUPTS();
    }
}

}  // namespace

void maybe_expire(TimestampTz *last, bool mine) {
    if (!mine || !guc::enabled || !TimestampDifferenceExceeds(*last, GetCurrentTimestamp(), 1000)) return;
    *last = GetCurrentTimestamp();
    // A failure here (reported) must not keep this worker from claiming runs.
    MemoryContext ctx = CurrentMemoryContext;
    PG_TRY();
    {
        expire_rounds();
        (void)store::seal_finished_minutes();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        EmitErrorReport();
        FlushErrorState();
        AbortCurrentTransaction();
        store::forget_expire_cursors();  // a rolled-back delete may have moved them
    }
    PG_END_TRY();
}

}  // namespace pw::worker
