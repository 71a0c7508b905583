#include "worker/batch_recovery.hpp"

#include "exec/http_queue.hpp"
#include "store/claims.hpp"
#include "store/run_rows.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// Runs still "running" under this live worker are taken back by nobody (recovery takes those of dead claimers): the
// put-back is bookkeeping only, so it runs at READ COMMITTED whatever the database's default, and is tried again
// after a serialization failure or a deadlock. (At a SERIALIZABLE default, one that failed left a run "running" for
// good: test/scripts/isolation_levels.sh, 1 run in 3 tries.) If it still fails, the worker exits: recovery then
// takes its runs back.
// One try: 0 done, 1 failed in a way worth another try, 2 failed otherwise.
int put_back_once(const int64 *back, int m, int64 culprit, const char *message) {
    MemoryContext ctx = CurrentMemoryContext;
    volatile int result = 0;
    PG_TRY();
    {
        begin_work_txn(true);
        store::release_runs(back, m);
        if (culprit != 0) store::fail_run(culprit, psprintf("internal error: %s", message));
        commit_work_txn();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        ErrorData *ed = CopyErrorData();
        result = ed->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE || ed->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
                         ed->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE
                     ? 1
                     : 2;
        FreeErrorData(ed);
        EmitErrorReport();
        FlushErrorState();
        AbortCurrentTransaction();
        MemoryContextSwitchTo(ctx);
    }
    PG_END_TRY();
    return result;
}

void put_back(const int64 *ids, int n, int64 culprit, const char *message) {
    constexpr int kAttempts = 5;
    // (the runs whose requests are in flight again stay this worker's)
    int64 *back = static_cast<int64 *>(palloc(sizeof(int64) * (n > 0 ? n : 1)));
    int m = 0;
    for (int j = 0; j < n; j++)
        if (ids[j] != culprit && !httpq::in_flight(ids[j])) back[m++] = ids[j];
    for (int attempt = 1; attempt <= kAttempts; attempt++) {
        int r = put_back_once(back, m, culprit, message);
        if (r == 0) {
            pfree(back);
            return;
        }
        if (r == 2) break;
        pg_usleep(10000L * attempt);
    }
    ereport(LOG, (errmsg("pipeline_worker: could not put back %d claimed run(s); the worker exits so that recovery "
                         "takes them back", n)));
    proc_exit(1);
}

}  // namespace

void recover_batch(MemoryContext iter_ctx, const int64 *ids, int n, int64 suspect) {
    MemoryContextSwitchTo(iter_ctx);
    ErrorData *edata = CopyErrorData();
    EmitErrorReport();
    FlushErrorState();
    AbortCurrentTransaction();  // the abort callback drops the buffered writes and the unsent requests
    // A run taken over by another worker (store/writes.cpp) is not the current run's fault: nothing is failed.
    // Nor is a deadlock (a finished child waking its parent while another worker holds that parent, and the
    // other way round): the runs go back and are executed again.
    // Nor a lock_timeout the worker inherited (ALTER DATABASE ... SET): a step's own ends in the step.
    bool no_culprit = edata->sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
                      edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED || edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
    put_back(ids, n, no_culprit ? 0 : suspect, edata->message);
}

}  // namespace pw::worker
