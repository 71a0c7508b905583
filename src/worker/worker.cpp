// Background workers. One launcher (connected to no database) waits for pipeline_worker.database to exist
// and keeps pipeline_worker.workers dynamic workers running; each worker claims runs and executes them.
#include <utility>

#include "engine/engine.hpp"
#include "engine/http.hpp"
#include "worker/crashes.hpp"
#include "worker/shared.hpp"

extern "C" {
PGDLLEXPORT void pw_launcher_main(Datum arg);
PGDLLEXPORT void pw_worker_main(Datum arg);
}

namespace pw::worker {

namespace {

constexpr long kExtensionPollMs = 1000;    // while waiting for CREATE EXTENSION
constexpr long kIdleTimeoutMs = 1000;      // worker 0's idle safety net: periodic recovery sweep
constexpr long kIdleTimeoutOtherMs = 10000;  // other workers sleep until woken (work, a due retry, a dead worker)
constexpr long kRestartBackoffMs = 1000;   // launcher: minimum time between two starts of one slot
constexpr int kMaxBatch = 64;

shared::Slot *my_slot = nullptr;

// SIGTERM: a step that terminates its own backend (the sender is this process) gets an error instead;
// any other sender (pg_terminate_backend from elsewhere, server shutdown) ends the worker as usual.
void worker_sigterm(int signo, siginfo_t *info, void *) {
    if (engine::in_step_call && info != nullptr && info->si_pid == MyProcPid) {
        int save_errno = errno;
        engine::step_self_terminated = 1;
        QueryCancelPending = true;
        InterruptPending = true;
        SetLatch(MyLatch);
        errno = save_errno;
        return;
    }
    die(signo);
}

// SIGINT comes from cancel_run: honour it only while a step of a run that was asked to stop is executing,
// so that a late or stray signal never cancels another run's step.
void worker_sigint(SIGNAL_ARGS) {
    int save_errno = errno;
    if (engine::in_step_call && my_slot != nullptr) {
        uint64 run = pg_atomic_read_u64(&my_slot->run_id);
        if (run != 0 && engine::cancel_requested(static_cast<int64>(run))) {
            QueryCancelPending = true;
            InterruptPending = true;
        }
    }
    httpq::cancel_signalled = 1;
    SetLatch(MyLatch);  // HTTP requests in flight are checked for cancel requests when the loop wakes
    errno = save_errno;
}

void install_sigterm() {
    struct sigaction act;
    memset(&act, 0, sizeof(act));
    act.sa_sigaction = worker_sigterm;
    act.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, nullptr);
}

void slot_release(int, Datum) {
    if (my_slot != nullptr) {
        pg_atomic_write_u32(&my_slot->idle, 0);
        pg_atomic_write_u64(&my_slot->run_id, 0);
        my_slot->latch = nullptr;
        my_slot->pid = 0;
        my_slot = nullptr;
    }
}

bool extension_ready() {
    bool ready;
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    ready = OidIsValid(get_extension_oid("pipeline_worker", true));
    CommitTransactionCommand();
    return ready;
}

// Worker commit policy: consecutive fast steps -- and several runs -- share a transaction; it commits once it
// has been open commit_interval_ms or holds kMaxSubxacts step subtransactions (well under the 64 that fit
// the subtransaction cache), so that progress stays visible and xmin moves.
constexpr int kMaxSubxacts = 48;

struct TxnClock {
    TimestampTz started;
};

void begin_txn(TxnClock *clock) {
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    clock->started = GetCurrentTimestamp();
    engine::subxacts_in_xact = 0;
}

void commit_txn() {
    engine::flush_writes();
    PopActiveSnapshot();
    CommitTransactionCommand();
    // The start of the HTTP steps parked in this transaction is durable now: their requests may leave.
    httpq::send_queued();
    // Background workers must report their statistics themselves (rate-limited inside): without it
    // autovacuum never sees the dead tuples the workers leave in the run tables.
    pgstat_report_stat(false);
}

bool txn_is_due(const TxnClock *clock) {
    return engine::subxacts_in_xact >= kMaxSubxacts ||
           TimestampDifferenceExceeds(clock->started, GetCurrentTimestamp(), guc::commit_interval_ms);
}

// The batch being executed. A run claimed lazily is only row-locked until its transaction commits: a commit in
// the middle of a run records that run's claim first (so that recovery sees it), and the batch's other lazily
// claimed runs not yet started are then skipped -- the commit released them to the pool. Runs whose claim is
// recorded (persisted) stay this worker's and are executed.
struct Batch {
    TxnClock clock;
    engine::ClaimedRun *current;
    bool locks_released;
};

void between_steps(void *arg) {
    Batch *b = static_cast<Batch *>(arg);
    httpq::drive();  // answers that arrive while a batch runs are read in time (their timeouts are running)
    if (txn_is_due(&b->clock)) {
        engine::persist_claim(b->current);
        commit_txn();
        begin_txn(&b->clock);
        b->locks_released = true;
    }
}

// Sweeps when asked (the launcher saw a worker exit; start-up) and, on worker 0 only, every
// recovery_interval_ms as a safety net: one sweeper is enough, and the others stay out of the latency path.
void maybe_recover(TimestampTz *last_sweep, bool periodic) {
    shared::State *st = shared::state();
    bool asked = st != nullptr && pg_atomic_exchange_u32(&st->recovery_needed, 0) != 0;
    if (!asked && (!periodic ||
                   !TimestampDifferenceExceeds(*last_sweep, GetCurrentTimestamp(), guc::recovery_interval_ms)))
        return;
    *last_sweep = GetCurrentTimestamp();
    pgstat_report_activity(STATE_RUNNING, "recovering orphaned runs");
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    PushActiveSnapshot(GetTransactionSnapshot());
    int64 n = engine::recover_runs();
    PopActiveSnapshot();
    CommitTransactionCommand();
    if (n > 0) ereport(LOG, (errmsg("pipeline_worker: recovered %lld run(s) whose worker had exited", (long long)n)));
}

// Claimed runs wait for their worker, so batches only pay off for fast runs: the batch is sized so that it
// takes about commit_interval_ms, from a moving average of this worker's run durations (slow runs: 1).
double avg_run_ms = -1;  // unknown until the first run

int batch_size() {
    int max = guc::claim_batch < 1 ? 1 : (guc::claim_batch > kMaxBatch ? kMaxBatch : guc::claim_batch);
    if (avg_run_ms < 0) return 1;
    double budget = guc::commit_interval_ms > 0 ? guc::commit_interval_ms : 1;
    int n = avg_run_ms <= 0.001 ? max : static_cast<int>(budget / avg_run_ms);
    return n < 1 ? 1 : (n > max ? max : n);
}

void note_run_time(TimestampTz start) {
    double ms = static_cast<double>(GetCurrentTimestamp() - start) / 1000.0;
    avg_run_ms = avg_run_ms < 0 ? ms : 0.8 * avg_run_ms + 0.2 * ms;
}

int safe_mode = 0;  // after an unexpected error: claim and commit one run at a time for a while

// Claiming from the head of the queue makes every worker lock-probe the runs the others hold, and step over
// index entries of finished runs. Workers share a hint -- just past the highest id claimed -- and scan from
// there; a claim from the head (min_id 0) comes when the hinted one finds too little, and every
// kFullClaimEvery claims, so that runs behind the hint (released, retried, recovered) are served in order.
constexpr int kFullClaimEvery = 16;
constexpr int kEagerClaimMax = 4;
constexpr double kFastBatchMs = 2.0;  // a batch expected to finish within this is not shown as running first
int claims_since_full = 0;

pg_noinline int claim_batch(int batch, engine::ClaimedRun *runs, MemoryContext ctx) {
    shared::State *st = shared::state();
    int64 hint = static_cast<int64>(pg_atomic_read_u64(&st->claim_hint));
    bool hinted = hint > 0 && claims_since_full < kFullClaimEvery;
    int n = 0;
    if (hinted) {
        n = engine::claim_runs(batch, InvalidOid, runs, ctx, false, hint);
        claims_since_full++;
    }
    int from_hint = n;
    // From the head only when the hinted claim found nothing, or every kFullClaimEvery claims: a claim that
    // found work past the hint does not also pay a scan of the head (which steps over the index entries of
    // runs finished since the last vacuum -- the cost that dominated the wake-up at low rates).
    if (n == 0 || !hinted) {
        // From the head; below the hint if the hinted claim ran: this transaction already holds those rows.
        n += engine::claim_runs(batch - n, InvalidOid, runs + n, ctx, false, 0, hinted ? hint : PG_INT64_MAX);
        claims_since_full = 0;
    }
    int64 top = 0;
    for (int i = 0; i < n; i++) top = runs[i].id > top ? runs[i].id : top;
    uint64 cur = pg_atomic_read_u64(&st->claim_hint);
    if (hinted && from_hint == 0 && n > 0) {
        // Nothing at or past the hint, work below it: ids restarted (extension re-created, table truncated) or
        // only older runs are left. Move the hint down (a hint too low only costs a longer scan); otherwise every
        // claim would pay a useless hinted query first.
        uint64 seen = static_cast<uint64>(hint);  // only if no other worker moved it meanwhile
        (void)pg_atomic_compare_exchange_u64(&st->claim_hint, &seen, static_cast<uint64>(top + 1));
    } else {
        while (static_cast<int64>(cur) < top + 1 && !pg_atomic_compare_exchange_u64(&st->claim_hint, &cur, top + 1)) {
        }
    }
    // keep the batch in FIFO order
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && runs[j - 1].id > runs[j].id; j--) std::swap(runs[j - 1], runs[j]);
    return n;
}

// Bookkeeping failed (not a step: the engine records those) and everything since the last commit is rolled back.
// Called in PG_CATCH. Puts the batch's runs back in the queue -- except those whose HTTP request is in flight again
// -- and marks the culprit (0: none) failed, so that it cannot fail the same way forever.
void recover_batch(MemoryContext iter_ctx, const int64 *ids, int n, int64 culprit) {
    MemoryContextSwitchTo(iter_ctx);
    ErrorData *edata = CopyErrorData();
    EmitErrorReport();
    FlushErrorState();
    AbortCurrentTransaction();  // the abort callback drops the buffered writes and the unsent requests
    PG_TRY();
    {
        int64 *back = static_cast<int64 *>(palloc(sizeof(int64) * (n > 0 ? n : 1)));
        int m = 0;
        for (int j = 0; j < n; j++)
            if (ids[j] != culprit && !httpq::in_flight(ids[j])) back[m++] = ids[j];
        TxnClock clock;
        begin_txn(&clock);
        engine::release_runs(back, m);
        if (culprit != 0) engine::fail_run(culprit, psprintf("internal error: %s", edata->message));
        commit_txn();
    }
    PG_CATCH();
    {
        EmitErrorReport();
        FlushErrorState();
        AbortCurrentTransaction();
    }
    PG_END_TRY();
}

// Claims a batch and executes it, in as few transactions as the commit policy allows. The claim is part of
// the first transaction: a crash before it commits leaves the runs pending, nothing to recover.
// Returns the number of runs claimed.
int serve_once(MemoryContext iter_ctx) {
    engine::ClaimedRun runs[kMaxBatch];
    int batch = safe_mode > 0 ? 1 : batch_size();
    // Every claimed run may stop at an HTTP step: claim no more than there is room for in flight.
    int room = httpq::capacity() - httpq::pending();
    if (room <= 0) return 0;
    if (batch > room) batch = room;
    Batch b;
    b.current = nullptr;
    b.locks_released = false;

    pgstat_report_activity(STATE_RUNNING, "claiming runs");
    begin_txn(&b.clock);
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    int n = claim_batch(batch, runs, iter_ctx);
    SPI_finish();
    if (n == 0) {
        commit_txn();
        return 0;
    }
    pg_atomic_write_u32(&my_slot->idle, 0);  // busy: wake-ups must go to workers that are really idle
    pg_atomic_fetch_add_u64(&my_slot->batches, 1);
    if (safe_mode > 0) safe_mode--;
    // A full batch suggests more work: let another idle worker help.
    if (n == batch) shared::wake_workers(1);
    // The claim drained the queue: parallelism beats batching now. Keep a fair share and leave the rest to
    // the idle workers (released by the commit below, and woken only after it).
    int released = 0;
    if (n < batch && n > 1) {
        int idle = shared::idle_workers();
        int share = (n + idle) / (idle + 1);
        if (share < n) {
            released = n - share;
            n = share;
        }
    }
    // A small batch means a short queue or slow runs: show the claims (status running) at once. The commit
    // is asynchronous: a claim lost in a crash only means the run is pending again, and the next
    // synchronous commit flushes it anyway. Not when this worker's runs are known to be fast: they finish
    // before anyone could look, and the extra transaction would only add latency.
    bool fast_runs = avg_run_ms >= 0 && avg_run_ms * n < kFastBatchMs;
    if ((n <= kEagerClaimMax && !fast_runs) || released > 0) {
        for (int i = 0; i < n; i++) engine::persist_claim(&runs[i]);
        (void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
                                false);
        commit_txn();
        begin_txn(&b.clock);
        if (released > 0) shared::wake_workers(released);
    }

    int done = 0;
    volatile bool failed = false;
    for (int i = 0; i < n && !failed; i++) {
        if (b.locks_released && !runs[i].persisted) continue;  // back in the pool since the last commit
        pg_atomic_write_u64(&my_slot->run_id, static_cast<uint64>(runs[i].id));
        TimestampTz run_start = GetCurrentTimestamp();
        if (!runs[i].persisted) runs[i].claimed_at = run_start;  // started_at: when it really starts
        b.current = &runs[i];
        PG_TRY();
        {
            MemoryContextSwitchTo(iter_ctx);
            engine::HttpIO io;
            io.park_parent = TopMemoryContext;
            engine::execute_claimed(&runs[i], between_steps, &b, &io);
            if (io.parked != nullptr) {
                // Stopped at an HTTP step: the claim and the step's start are committed before the request leaves.
                engine::persist_claim(&runs[i]);
                httpq::queue(io.parked);
            }
            note_run_time(run_start);  // execution only: commit waits must not shrink the batches
            if (safe_mode > 0 || txn_is_due(&b.clock)) {
                commit_txn();  // releases the lazily claimed runs not started yet
                begin_txn(&b.clock);
                b.locks_released = true;
            }
        }
        PG_CATCH();
        {
            int64 ids[kMaxBatch];
            for (int j = 0; j < n; j++) ids[j] = runs[j].id;
            recover_batch(iter_ctx, ids, n, runs[i].id);
            failed = true;
            safe_mode = kMaxBatch;
        }
        PG_END_TRY();
        done++;
        pg_atomic_write_u64(&my_slot->run_id, 0);
        pg_atomic_fetch_add_u64(&my_slot->runs_done, 1);
        if (!failed) httpq::drive();
        if (failed) pg_usleep(10000L);  // a failing database must not become a hot loop
        CHECK_FOR_INTERRUPTS();
    }
    if (!failed) commit_txn();  // (an empty transaction commits without a WAL flush)
    MemoryContextReset(iter_ctx);
    if (ConfigReloadPending) {
        ConfigReloadPending = false;
        ProcessConfigFile(PGC_SIGHUP);
        httpq::configure();  // a changed allowlist applies to the next request
    }
    return done;
}

// Records the answers of HTTP steps and continues their runs (following steps may park again), in one
// transaction per batch. Returns the number of answers handled.
constexpr int kMaxAnswers = 256;

int serve_answers(MemoryContext iter_ctx) {
    MemoryContextSwitchTo(iter_ctx);
    int n = 0;
    engine::HttpCall **calls = httpq::take_answered(&n, kMaxAnswers);
    if (n == 0) return 0;
    pg_atomic_write_u32(&my_slot->idle, 0);
    pgstat_report_activity(STATE_RUNNING, "recording HTTP answers");
    Batch b;
    b.current = nullptr;
    b.locks_released = false;
    volatile int current = -1;
    PG_TRY();
    {
        begin_txn(&b.clock);
        // iter_ctx, not the transaction's context: a commit between the steps of one run must not free this
        MemoryContextSwitchTo(iter_ctx);
        const char **status = static_cast<const char **>(palloc(sizeof(char *) * n));
        // Lock the runs: a concurrent cancel_run waits for this transaction, and one that came first wins.
        engine::lock_http_runs(calls, n, status);
        for (int i = 0; i < n; i++) {
            current = i;
            if (b.locks_released) {
                // A commit between the steps of an earlier run released the row locks taken above: look again
                // (and lock again), so that a cancel_run -- or a cancel_run + retry_run and a claim by another
                // worker -- that came in meanwhile wins over continuing the run here.
                MemoryContextSwitchTo(iter_ctx);
                engine::lock_http_runs(calls + i, n - i, status + i);
                b.locks_released = false;
            }
            if (status[i] == nullptr || strcmp(status[i], "running") != 0) {
                // cancelled meanwhile (or no longer this worker's): record what happened to the attempt
                if (status[i] != nullptr && strcmp(status[i], "cancelled") == 0) engine::record_cancelled_call(calls[i]);
                continue;
            }
            pg_atomic_write_u64(&my_slot->run_id, static_cast<uint64>(calls[i]->run.id));
            b.current = &calls[i]->run;
            engine::HttpIO io;
            io.resume = calls[i];
            io.park_parent = TopMemoryContext;
            MemoryContextSwitchTo(iter_ctx);
            engine::execute_claimed(nullptr, between_steps, &b, &io);
            if (io.parked != nullptr) httpq::queue(io.parked);
            else pg_atomic_fetch_add_u64(&my_slot->runs_done, 1);
            pg_atomic_write_u64(&my_slot->run_id, 0);
        }
        current = -1;
        commit_txn();
    }
    PG_CATCH();
    {
        // The answers of this batch are lost with the transaction: their runs go back to the queue (the
        // interrupted attempt is re-issued with the same idempotency key).
        pg_atomic_write_u64(&my_slot->run_id, 0);
        int64 *ids = static_cast<int64 *>(MemoryContextAlloc(iter_ctx, sizeof(int64) * n));
        for (int j = 0; j < n; j++) ids[j] = calls[j]->run.id;
        recover_batch(iter_ctx, ids, n, current >= 0 ? calls[current]->run.id : 0);
        pg_usleep(10000L);
    }
    PG_END_TRY();
    for (int i = 0; i < n; i++) engine::free_http_call(calls[i]);
    MemoryContextReset(iter_ctx);
    return n;
}

}  // namespace

void worker_main(Datum arg) {
    int slot_no = DatumGetInt32(arg);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    install_sigterm();
    pqsignal(SIGINT, worker_sigint);  // cancel_run interrupts the current step of the cancelled run
    BackgroundWorkerUnblockSignals();

    shared::State *st = shared::state();
    if (st == nullptr || slot_no < 0 || slot_no >= st->nslots) elog(FATAL, "pipeline_worker: invalid worker slot");
    my_slot = &st->slots[slot_no];
    my_slot->pid = MyProcPid;
    my_slot->latch = MyLatch;
    before_shmem_exit(slot_release, 0);

    Oid dboid;
    memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(dboid));
    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname("pipeline_worker");
    engine::in_pw_worker = true;
    crashes::attach(slot_no);

    MemoryContext iter_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker iteration", ALLOCSET_DEFAULT_SIZES);
    TimestampTz last_sweep = 0;

    // One wait set for the worker's whole life: its latch, postmaster death, and the HTTP client's epoll set.
    httpq::configure();
    WaitEventSet *waits = CreateWaitEventSet(TopMemoryContext, 3);
    AddWaitEventToSet(waits, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
    AddWaitEventToSet(waits, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
    AddWaitEventToSet(waits, WL_SOCKET_READABLE, httpq::fd(), nullptr, nullptr);

    // Wait quietly for CREATE EXTENSION.
    for (;;) {
        ResetLatch(MyLatch);
        pg_atomic_write_u32(&my_slot->idle, 1);
        pg_memory_barrier();
        if (extension_ready()) break;
        pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION pipeline_worker");
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kExtensionPollMs, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            httpq::configure();
        }
    }
    ereport(DEBUG1, (errmsg("pipeline_worker: worker %d serving", slot_no)));

    volatile bool recheck_extension = false;
    volatile bool settled = false;  // runs that crashed their workers are dealt with before the first claim
    for (;;) {
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
            httpq::configure();
        }
        // Reset the latch and announce idleness before looking for work: a wake-up that arrives after the
        // look finds the latch set, so none is lost. (A worker whose HTTP requests fill its room is not idle.)
        ResetLatch(MyLatch);
        pg_atomic_write_u32(&my_slot->idle, httpq::pending() < httpq::capacity() ? 1 : 0);
        pg_memory_barrier();

        volatile int claimed = 0;
        PG_TRY();
        {
            httpq::drive();
            httpq::check_cancels();
            // Only after sleeping or an error: a busy worker does not pay a transaction per batch for this.
            if (recheck_extension && !extension_ready()) {
                // dropped while we served: go back to waiting (and settle crash counts again once it is back:
                // run ids start over)
                settled = false;
                pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION pipeline_worker");
                (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kExtensionPollMs, PG_WAIT_EXTENSION);
                claimed = -1;
            } else {
                recheck_extension = false;
                if (!settled) {
                    pgstat_report_activity(STATE_RUNNING, "checking runs that ended their workers abnormally");
                    crashes::settle();
                    settled = true;
                }
                maybe_recover(&last_sweep, slot_no == 0);
                if (httpq::has_answered()) claimed += serve_answers(iter_ctx);
                claimed += serve_once(iter_ctx);
            }
        }
        PG_CATCH();
        {
            // Errors outside a run (claim, recovery): report, clean up, back off briefly, go on.
            EmitErrorReport();
            FlushErrorState();
            AbortCurrentTransaction();
            MemoryContextReset(iter_ctx);
            pg_usleep(100000L);
            claimed = -1;
            recheck_extension = true;
        }
        PG_END_TRY();

        if (claimed != 0) {
            pg_atomic_write_u32(&my_slot->idle, 0);
            continue;
        }
        long timeout = shared::idle_timeout_ms(slot_no == 0 ? kIdleTimeoutMs : kIdleTimeoutOtherMs);
        int in_flight = httpq::pending();
        if (in_flight > 0 && httpq::pending() >= httpq::capacity()) timeout = kIdleTimeoutMs;  // no room to claim
        long http_timeout = httpq::timeout_ms();
        if (http_timeout >= 0 && http_timeout < timeout) timeout = http_timeout;
        if (timeout == 0 || httpq::has_answered()) continue;  // a retry or an HTTP timer is due
        pgstat_report_stat(true);  // going idle: flush what is pending
        if (in_flight > 0)
        {
            char activity[64];
            snprintf(activity, sizeof(activity), "waiting for %d HTTP request(s)", in_flight);
            pgstat_report_activity(STATE_IDLE, activity);
        }
        else
            pgstat_report_activity(STATE_IDLE, "waiting for runs");
        WaitEvent ev;
        int nev = WaitEventSetWait(waits, timeout, &ev, 1, PG_WAIT_EXTENSION);
        if (nev == 0 && in_flight == 0) recheck_extension = true;  // quiet: cheap moment to notice DROP EXTENSION
        pg_atomic_write_u32(&my_slot->idle, 0);
    }
}

// ------------------------------------------------------------------ launcher

namespace {

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
        CHECK_FOR_INTERRUPTS();
        if (ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
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
        (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout, PG_WAIT_EXTENSION);
        ResetLatch(MyLatch);
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
void pw_worker_main(Datum arg) { pw::worker::worker_main(arg); }
