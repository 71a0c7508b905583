#include "worker/upkeep.hpp"

#include "pg/spi.hpp"
#include "store/cancel_requests.hpp"
#include "store/children.hpp"
#include "store/claims.hpp"
#include "store/queue.hpp"
#include "store/retention.hpp"
#include "store/stats.hpp"
#include "shmem/gucs.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"
#include "worker/serve.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "commands/vacuum.h"
#include "parser/parse_node.h"
#include "parser/parser.h"
#include "pgstat.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
}

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
    pg::lock_run_table_first();
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
    pg::lock_run_table_first();
    PushActiveSnapshot(GetTransactionSnapshot());
    store::refresh_gauges();
    PopActiveSnapshot();
    CommitTransactionCommand();
}

// Retention (the database's lead worker, at most once a second): finished runs past their retention are deleted, 10,000 per
// transaction, until none is left.
namespace {

bool round_skipped = false;  // the last retention round met the roll-ups' lock held elsewhere

void expire_rounds() {
    round_skipped = false;
    for (int round = 0; round < 100; round++) {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        pg::lock_run_table_first();
        PushActiveSnapshot(GetTransactionSnapshot());
        int64 n = store::schema_version() >= 2 ? store::delete_expired_runs(10000) : 0;
        PopActiveSnapshot();
        CommitTransactionCommand();
        round_skipped = n < 0;
        if (n < 10000) break;
        pgstat_report_activity(STATE_RUNNING, "deleting finished runs past their retention");
        CHECK_FOR_INTERRUPTS();
    }
}

}  // namespace

bool retention_skipped() { return round_skipped; }

void maybe_expire(TimestampTz *last, bool mine) {
    if (!mine || (guc::enabled && !TimestampDifferenceExceeds(*last, GetCurrentTimestamp(), 1000))) return;
    *last = GetCurrentTimestamp();
    // A moment the last worker to leave this database noted (runs passing their retention then), if due: this round
    // is the one the launcher sent a worker for, and keeps the database active until it is done. (Compare-and-swap:
    // a moment still to come, noted by a worker leaving meanwhile, stays.)
    if (shared::DbState *d = shared::db()) {
        uint64 due = pg_atomic_read_u64(&d->expiry_due);
        if (due != 0 && static_cast<TimestampTz>(due) <= *last) (void)pg_atomic_compare_exchange_u64(&d->expiry_due, &due, 0);
    }
    if (!guc::enabled) return;
    // A failure here (reported) must not keep this worker from claiming runs.
    MemoryContext ctx = CurrentMemoryContext;
    PG_TRY();
    {
        expire_rounds();
        (void)store::seal_finished_minutes();
        // (with the same once-a-second look: runs a wake parked while a pause or resume was in flight)
        begin_work_txn(true);
        if (store::schema_version() >= 2) (void)store::unpark_resumed();
        commit_work_txn();
        // The look at recorded cascading cancels, then the sweep of their records: each in a transaction of its own (a
        // failure leaves what came before done).
        if (store::cancel_sweep_due()) {
            begin_work_txn(true);
            bool v2 = store::schema_version() >= 2;
            if (v2) store::cancel_recorded_runs();
            commit_work_txn();
            if (v2) {
                begin_work_txn(true);
                store::sweep_cancel_requests();
                commit_work_txn();
            }
        }
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
        store::forget_expire_cursors();  // a rolled-back delete may have moved them
    }
    PG_END_TRY();
}

// The run tables churn by their whole size every minute or two under load: every run is inserted, updated once or
// twice and (with retention) deleted. Autovacuum visits a database at most once per autovacuum_naptime (a minute by
// default), so between its passes the dead rows of a steady load pile up to millions, and claims from the head of
// the queue, retention and the writes pay for walking them (bench --steady: the workers' CPU per run went from 33 to
// 61-83 us before a pass ended; with autovacuum_naptime = 10s the windows before the first deletion held 90-98 % of a
// fresh drain instead of 60-87 %). So the lead worker can vacuum the two tables itself, at most once per
// vacuum_interval_ms (0, the default, is off), each when it has enough dead rows -- a plain VACUUM (SKIP_LOCKED:
// never waits for autovacuum or a user's VACUUM, which skip it in turn), with no transaction of ours open: VACUUM runs
// its own. Off by default: over 10 minutes of sustained load its passes (one table at a time, in this one process)
// fell behind autovacuum's and the tables grew (docs/GUIDE.md, Keeping the tables small).
namespace {

constexpr int64 kVacuumMinDead = 10000;
constexpr double kVacuumDeadFraction = 0.02;

// Which of the two tables have enough dead rows: bit 0 runs, bit 1 run_steps. Each is vacuumed only when it needs it:
// a pass over run_steps (the larger) does not hold back the next one over runs, whose dead queue entries the claims walk.
int tables_worth_vacuuming() {
    Oid ns = get_namespace_oid("pipeline_worker", true);
    if (!OidIsValid(ns)) return 0;
    pgstat_clear_snapshot();  // (counts as of now, not as of an earlier read in this process)
    static const char *const kTables[] = {"runs", "run_steps"};
    int which = 0;
    for (int i = 0; i < 2; i++) {
        Oid rel = get_relname_relid(kTables[i], ns);
        PgStat_StatTabEntry *t = OidIsValid(rel) ? pgstat_fetch_stat_tabentry(rel) : nullptr;
        if (t == nullptr) continue;
#if PG_VERSION_NUM >= 160000
        int64 dead = t->dead_tuples, live = t->live_tuples;
#else
        int64 dead = t->n_dead_tuples, live = t->n_live_tuples;
#endif
        if (dead >= kVacuumMinDead && static_cast<double>(dead) >= kVacuumDeadFraction * static_cast<double>(live))
            which |= 1 << i;
    }
    return which;
}

// Called with PortalContext = portal (VACUUM's own memory lives under it, as in autovacuum: an error leaves nothing
// behind once portal is reset). The statement is parsed there too: VACUUM commits the transaction it was called in.
void vacuum_run_tables(MemoryContext portal, int which) {
    MemoryContext old = MemoryContextSwitchTo(portal);
    const char *tables = which == 1   ? "pipeline_worker.runs"
                         : which == 2 ? "pipeline_worker.run_steps"
                                      : "pipeline_worker.runs, pipeline_worker.run_steps";
    List *raw = raw_parser(psprintf("VACUUM (SKIP_LOCKED, PARALLEL 0) %s", tables), RAW_PARSE_DEFAULT);
    VacuumStmt *stmt = castNode(VacuumStmt, linitial_node(RawStmt, raw)->stmt);
    ParseState *ps = make_parsestate(nullptr);
    MemoryContextSwitchTo(old);
    pgstat_report_activity(STATE_RUNNING, psprintf("VACUUM %s", tables));
    // Called in a transaction (not a block): VACUUM commits it, runs a transaction per table, and leaves a new one
    // open, committed here.
    ExecVacuum(ps, stmt, true);
    CommitTransactionCommand();
}

}  // namespace

void maybe_vacuum(TimestampTz *last, bool mine) {
    if (!mine || !guc::enabled || guc::vacuum_interval_ms <= 0 ||
        !TimestampDifferenceExceeds(*last, GetCurrentTimestamp(), guc::vacuum_interval_ms))
        return;
    *last = GetCurrentTimestamp();
    static MemoryContext portal = nullptr;
    if (portal == nullptr)
        portal = AllocSetContextCreate(TopMemoryContext, "pipeline_worker vacuum", ALLOCSET_DEFAULT_SIZES);
    MemoryContext ctx = CurrentMemoryContext;
    MemoryContext saved_portal = PortalContext;
    PortalContext = portal;
    PG_TRY();
    {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        int which = tables_worth_vacuuming();
        if (which == 0) CommitTransactionCommand();
        else vacuum_run_tables(portal, which);
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
    }
    PG_END_TRY();
    PortalContext = saved_portal;
    MemoryContextSwitchTo(ctx);  // (the caller's, not whatever the last commit left current)
    MemoryContextReset(portal);
}

}  // namespace pw::worker
