// Module entry: GUCs, shared memory hooks, the launcher, and the commit callback that wakes workers.
#include "exec/http_queue.hpp"
#include "exec/step_hygiene.hpp"
#include "pg/kept_plans.hpp"
#include "shmem/cancels.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/gucs.hpp"
#include "shmem/lanes.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"
#include "store/writes.hpp"
#include "worker/db_guard.hpp"
#include "worker/ddl_locks.hpp"
#include "worker/launcher.hpp"

extern "C" {
PG_MODULE_MAGIC;
PGDLLEXPORT void _PG_init(void);
}

namespace pw {
namespace {

// Transaction end: what the transaction noted is published at commit; buffered writes and requests that were
// never sent are dropped at abort.
void xact_callback(XactEvent event, void *) {
    switch (event) {
        case XACT_EVENT_PRE_COMMIT:
        case XACT_EVENT_PARALLEL_PRE_COMMIT:
            notes::pre_commit();
            break;
        case XACT_EVENT_PRE_PREPARE:
            // What the transaction noted is published by this session's commit (wake-ups, the claim hint, cancels,
            // concurrency slots, parked runs to put back): a prepared transaction commits elsewhere, later, and it
            // would be lost -- or published by this session's next transaction. Refused, as PostgreSQL refuses
            // PREPARE after NOTIFY. (Before the point of no return: the error aborts the transaction.)
            if (notes::any() || lanes::any_in_txn() || metrics::any_in_txn() || worker::holds_databases())
                ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                                errmsg("cannot PREPARE a transaction that has submitted, changed or claimed "
                                       "pipeline_worker runs or pipelines"),
                                errdetail("The workers hear of such changes when the transaction commits in the "
                                          "session that made them; a prepared transaction commits elsewhere."),
                                errhint("Call these functions outside the prepared transaction, or commit it "
                                        "normally.")));
            break;
        case XACT_EVENT_COMMIT:
        case XACT_EVENT_PARALLEL_COMMIT:
            // (until 2026-12-07 the lanes woke a worker for the runs a raised limit admits before the generation was
            // bumped: it claimed them with the old definition cached, under the old limit, and parked them again)
            notes::publish_pipelines();
            lanes::at_commit();
            shared::cancels_at_commit();
            notes::publish();
            metrics::at_commit();
            worker::release_held_databases();
            worker::settings_at_end(true);
            break;
        case XACT_EVENT_PREPARE:
            // (an ALTER DATABASE / ROLE ... SET in it: its COMMIT PREPARED, elsewhere, ends no read-only note -- they
            // end by themselves, 5 minutes after the paused workers' last look)
            worker::settings_at_end(false);
            break;
        case XACT_EVENT_ABORT:
        case XACT_EVENT_PARALLEL_ABORT:
            store::reset_writes();
            httpq::discard_queued();  // parked in the aborted transaction: their start was never recorded
            notes::forget();
            shared::cancels_at_abort();  // (a cancel_run's own write undone: its request goes too)
            lanes::at_abort();
            metrics::at_abort();
            worker::release_held_databases();
            worker::settings_at_end(false);
            break;
        default:
            break;
    }
}

void subxact_callback(SubXactEvent event, SubTransactionId sub, SubTransactionId, void *) {
    if (event == SUBXACT_EVENT_ABORT_SUB) {
        lanes::at_subabort(sub);
        shared::cancels_at_subabort(sub);
        notes::at_subabort(sub);
        metrics::at_subabort(sub);
    }
}

}  // namespace
}  // namespace pw

void _PG_init(void) {
    pw::guc::define();
    // pg_upgrade starts the server to restore the schema: no workers, no hooks, nothing but the settings.
    if (IsBinaryUpgrade) return;
    RegisterXactCallback(pw::xact_callback, nullptr);
    RegisterSubXactCallback(pw::subxact_callback, nullptr);
    pw::pg::install_plan_hooks();
    if (process_shared_preload_libraries_in_progress) {
        pw::shared::install_hooks();
        pw::worker::install_db_guard();
        pw::worker::install_ddl_locks();
        pw::exec::install_step_guard();
        pw::worker::register_launcher();
    }
}
