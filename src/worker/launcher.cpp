// The launcher: connected to no database, it waits for pipeline_worker.database to exist and keeps
// pipeline_worker.workers dynamic workers running -- restarting the ones that exit, stopping extra ones, moving
// them when the database setting changes.
#include "shmem/gucs.hpp"
#include "shmem/shared.hpp"
#include "worker/crashes.hpp"
#include "worker/interrupts.hpp"
#include "worker/launcher.hpp"

extern "C" {
PGDLLEXPORT void pw_launcher_main(Datum arg);
}

namespace pw::worker {

namespace {

constexpr long kRestartBackoffMs = 1000;  // minimum time between two starts of one slot

struct LauncherSlot {
    BackgroundWorkerHandle *handle;
    TimestampTz last_start;
};

void encode_dboid(BackgroundWorker *w, Oid dboid) { memcpy(w->bgw_extra, &dboid, sizeof(dboid)); }

// Like autovacuum's launcher: with no database selected only a heap scan of the shared pg_database works.
Oid find_database(const char *name) {
    Oid result = InvalidOid;
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    Relation rel = table_open(DatabaseRelationId, AccessShareLock);
    TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
    HeapTuple tup;
    while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
        Form_pg_database db = (Form_pg_database)GETSTRUCT(tup);
        if (strcmp(NameStr(db->datname), name) == 0) {
            result = db->oid;
            break;
        }
    }
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    CommitTransactionCommand();
    return result;
}

bool start_worker(int slot, Oid dboid, BackgroundWorkerHandle **handle) {
    BackgroundWorker w;
    memset(&w, 0, sizeof(w));
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART;  // the launcher restarts workers itself
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pipeline_worker");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "pw_worker_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "pipeline_worker %d", slot);
    snprintf(w.bgw_type, BGW_MAXLEN, "pipeline_worker");
    w.bgw_main_arg = Int32GetDatum(slot);
    w.bgw_notify_pid = MyProcPid;
    encode_dboid(&w, dboid);
    return RegisterDynamicBackgroundWorker(&w, handle);
}

}  // namespace

void launcher_main(Datum) {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    pqsignal(SIGTERM, die);
    BackgroundWorkerUnblockSignals();
    BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);  // shared catalogs only
    pgstat_report_appname("pipeline_worker launcher");

    shared::State *st = shared::state();
    if (st == nullptr) elog(FATAL, "pipeline_worker: shared memory not initialised");
    st->launcher_latch = MyLatch;
    crashes::collect(st);  // before any worker starts (see crashes.hpp)
    int nslots = st->nslots;
    // Workers of a previous launcher (it exited alone): this launcher has no handles for them. They are asked to
    // stop, and their slots are started again once they are gone -- never two workers on one slot.
    for (int i = 0; i < nslots; i++) {
        int pid = st->slots[i].pid;
        if (pid != 0 && pid != MyProcPid) (void)kill(pid, SIGTERM);
    }
    LauncherSlot *slots = static_cast<LauncherSlot *>(MemoryContextAllocZero(TopMemoryContext, sizeof(LauncherSlot) * nslots));
    bool warned_missing_db = false, warned_no_slot = false;
    Oid dboid = InvalidOid;
    char served[NAMEDATALEN] = "";

    for (;;) {
        absorb_interrupts(nullptr);
        int wanted = guc::workers < 0 ? 0 : (guc::workers > nslots ? nslots : guc::workers);
        if (strcmp(served, guc::database) != 0) {
            // pipeline_worker.database changed (or first pass): stop the workers, serve the new database
            for (int i = 0; i < nslots; i++)
                if (slots[i].handle != nullptr) TerminateBackgroundWorker(slots[i].handle);
            strlcpy(served, guc::database, sizeof(served));
            dboid = InvalidOid;
            warned_missing_db = false;
        }

        if (!OidIsValid(dboid) && wanted > 0) {
            dboid = find_database(guc::database);
            if (!OidIsValid(dboid) && !warned_missing_db) {
                ereport(LOG, (errmsg("pipeline_worker: database \"%s\" does not exist yet; workers start when it does",
                                     guc::database)));
                warned_missing_db = true;
            }
        }
        long timeout = 1000;
        for (int i = 0; i < nslots; i++) {
            pid_t pid;
            bool alive = slots[i].handle != nullptr &&
                         GetBackgroundWorkerPid(slots[i].handle, &pid) != BGWH_STOPPED;
            if (slots[i].handle != nullptr && !alive) {
                // A worker exited: its claimed runs are orphans; have the next idle worker sweep at once.
                pfree(slots[i].handle);
                slots[i].handle = nullptr;
                pg_atomic_write_u32(&st->recovery_needed, 1);
                shared::wake_workers(1);
            }
            if (i >= wanted && alive) {
                TerminateBackgroundWorker(slots[i].handle);
            } else if (i < wanted && !alive && slots[i].handle == nullptr && OidIsValid(dboid)) {
                int old_pid = st->slots[i].pid;  // a previous launcher's worker, stopping (see above)
                if (old_pid != 0 && kill(old_pid, 0) == 0) {
                    timeout = 100;
                    continue;
                }
                TimestampTz now = GetCurrentTimestamp();
                if (slots[i].last_start != 0 && !TimestampDifferenceExceeds(slots[i].last_start, now, kRestartBackoffMs)) {
                    timeout = 100;
                    continue;
                }
                slots[i].last_start = now;
                if (!start_worker(i, dboid, &slots[i].handle)) {
                    slots[i].handle = nullptr;
                    if (!warned_no_slot)
                        ereport(WARNING, (errmsg("pipeline_worker: could not start worker %d: no free background worker slot", i),
                                          errhint("Raise max_worker_processes (it must exceed pipeline_worker.workers plus other workers).")));
                    warned_no_slot = true;
                    timeout = 5000;
                }
            }
        }
        wait_latch(timeout, nullptr);
    }
}

void register_launcher() {
    BackgroundWorker w;
    memset(&w, 0, sizeof(w));
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = 1;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pipeline_worker");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "pw_launcher_main");
    snprintf(w.bgw_name, BGW_MAXLEN, "pipeline_worker launcher");
    snprintf(w.bgw_type, BGW_MAXLEN, "pipeline_worker launcher");
    RegisterBackgroundWorker(&w);
}
}  // namespace pw::worker

void pw_launcher_main(Datum arg) { pw::worker::launcher_main(arg); }
