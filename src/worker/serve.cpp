#include "worker/serve.hpp"

#include <utility>

#include "exec/executor.hpp"
#include "exec/function_step.hpp"
#include "exec/http_step.hpp"
#include "exec/http_queue.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/gucs.hpp"
#include "store/children.hpp"
#include "store/claims.hpp"
#include "store/queue.hpp"
#include "store/retention.hpp"
#include "shmem/metrics.hpp"
#include "shmem/lanes.hpp"
#include "store/run_rows.hpp"
#include "store/task_rows.hpp"
#include "store/writes.hpp"
#include "worker/batch_recovery.hpp"
#include "worker/claiming.hpp"
#include "worker/interrupts.hpp"
#include "worker/parent_wakes.hpp"
#include "worker/run_times.hpp"
#include "worker/timer.hpp"

namespace pw::worker {

shared::Slot *my_slot = nullptr;
bool claims_stopped = false;

namespace {

void queue_parked(exec::HttpIO *io);
void drop_parked(exec::HttpIO *io);

constexpr int kLimitedBatch = 8;  // (16 until 2026-12-07: with faster runs, 8 leaves more keys to the other workers)

}  // namespace

bool extension_ready() {
    bool ready;
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    ready = OidIsValid(get_extension_oid("pipeline_worker", true));
    CommitTransactionCommand();
    return ready;
}

bool runs_queued(TimestampTz *expiry) {
    MemoryContext ctx = CurrentMemoryContext;
    volatile bool queued = false;
    *expiry = 0;
    PG_TRY();
    {
        begin_work_txn();
        if (OidIsValid(get_extension_oid("pipeline_worker", true))) {
            pg::spi_connect();
            queued = store::any_queued();
            SPI_finish();
            if (store::schema_version() >= 2) *expiry = store::next_expiry();
        }
        PopActiveSnapshot();
        CommitTransactionCommand();
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
    }
    PG_END_TRY();
    return queued;
}

namespace {

// Worker commit policy: consecutive fast steps -- and several runs -- share a transaction; it commits once it
// has been open commit_interval_ms or holds kMaxSubxacts step subtransactions (well under the 64 that fit
// the subtransaction cache), so that progress stays visible and xmin moves.
constexpr int kMaxSubxacts = 48;

struct TxnClock {
    TimestampTz started;
};

void begin_txn(TxnClock *clock, bool read_committed = false) {
    SetCurrentStatementStartTimestamp();  // now() and pg_stat_activity: this transaction's start
    StartTransactionCommand();
    if (read_committed) XactIsoLevel = XACT_READ_COMMITTED;  // (no snapshot taken yet: as SET TRANSACTION would)
    pg::lock_run_table_first();
    PushActiveSnapshot(GetTransactionSnapshot());
    clock->started = GetCurrentTimestamp();
    exec::reset_subxacts();
}

void commit_txn() {
    store::flush_writes();
    PopActiveSnapshot();
    CommitTransactionCommand();
    // The start of the HTTP steps parked in this transaction is durable now: their requests may leave.
    httpq::send_queued();
    wake_held_parents();  // parents whose rows this commit found held elsewhere
    // Background workers must report their statistics themselves (rate-limited inside): without it
    // autovacuum never sees the dead tuples the workers leave in the run tables.
    pgstat_report_stat(false);
}

bool txn_is_due(const TxnClock *clock) {
    return exec::subxacts_in_xact() >= kMaxSubxacts ||
           TimestampDifferenceExceeds(clock->started, GetCurrentTimestamp(), guc::commit_interval_ms);
}

// The batch being executed. A run claimed lazily is only row-locked until its transaction commits: a commit in
// the middle of a run records that run's claim first (so that recovery sees it), and the batch's other lazily
// claimed runs not yet started are then skipped -- the commit released them to the pool. Runs whose claim is
// recorded (persisted) stay this worker's and are executed.
struct Batch {
    TxnClock clock;
    store::ClaimedRun *current;
    bool locks_released;
    store::ClaimedRun *runs = nullptr;  // the claimed batch, in queue order but rate places first (none when recording
                                        // HTTP answers; claiming.hpp's rate_places_first)
    int n = 0;
    int next = 0;                       // the first run not started yet
    int version = 2;                    // store::schema_version() at the claim
};

// Called before a commit that releases the batch's unstarted, lazily claimed runs: the claim moved the shared hint
// past the whole batch, so it comes back to the first of them at commit -- else the next claims would take the runs
// queued after them first (one worker, priority order: a batch cut by the subtransaction limit ran its tail late).
// The commit wakes as many idle workers (this one goes on with its current run: a slow step left them waiting for the
// idle workers' next look, up to 10 s).
// runs[from, to) whose claims are not recorded go back to the queue at the next commit: the hint comes back to the
// first of them, and as many idle workers are woken. (Not in queue order: claiming.hpp's rate_places_first.)
void note_released(const store::ClaimedRun *runs, int from, int to, int version) {
    int64 lo = 0, hi = 0;
    int count = 0;
    for (int j = from; j < to; j++)
        if (!runs[j].persisted) {
            int64 at = queue_position(runs[j], version);
            if (count == 0 || at < lo) lo = at;
            if (count == 0 || at > hi) hi = at;
            count++;
        }
    if (count > 0) notes::runs_queued_at(static_cast<uint64>(count), static_cast<uint64>(lo), static_cast<uint64>(hi) + 1);
}

void note_unstarted(const Batch *b) {
    if (b->locks_released) return;  // (released by an earlier commit, noted then)
    note_released(b->runs, b->next, b->n, b->version);
}

// A pause in the middle of a run (exec/shared_tasks.cpp: the run's map tasks are with other workers): what the run
// did so far is committed, the worker waits with no transaction open, and goes on in a new one.
// The HTTP requests of the worker's other runs go on meanwhile (driven, their timers and cancels seen; their answers
// are recorded after the batch).
int64 paused_us = 0;  // time spent in pauses (not counted as the runs' execution time)

// Before a commit in the middle of the current run (between its steps, before a pause, before sending its parked
// requests): a claim recorded by an earlier commit may have been cancelled and retried meanwhile -- the retry
// withdraws the cancel request, so the executor may not have seen it -- and claimed again. The steps done since must
// not commit beside the new claimer's (until 2026-12-05 they did: effects twice, or a duplicate step row failing a
// run). The row stays locked until the commit; no longer this worker's claim: 40001, the batch goes back.
void require_claim(const Batch *b) {
    if (b->current == nullptr) return;
    pg::spi_connect();
    store::require_claim_for_commit(b->current->id, b->current->claims);
    SPI_finish();
}

void pause_txn(void *arg, bool (*ready)(void *), void *ready_arg) {
    Batch *b = static_cast<Batch *>(arg);
    require_claim(b);
    if (b->current != nullptr) store::persist_claim(b->current);
    note_unstarted(b);
    commit_txn();
    b->locks_released = true;
    TimestampTz start = GetCurrentTimestamp();
    for (;;) {
        ResetLatch(MyLatch);
        httpq::drive();
        httpq::check_cancels();
        if (ready(ready_arg)) break;
        long timeout = 100, http_timeout = httpq::timeout_ms();
        if (http_timeout >= 0 && http_timeout < timeout) timeout = http_timeout;
        (void)WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
                                httpq::fd(), timeout, PG_WAIT_EXTENSION);
        CHECK_FOR_INTERRUPTS();
    }
    paused_us += GetCurrentTimestamp() - start;
    begin_txn(&b->clock);
}

void queue_parked(exec::HttpIO *io);

// Requests parked by a run that goes on with a function step of another branch: they leave now (their rows and the
// claim committed first), in flight while the step runs.
void send_parked_now(void *arg, exec::HttpIO *io) {
    Batch *b = static_cast<Batch *>(arg);
    require_claim(b);
    if (b->current != nullptr) store::persist_claim(b->current);
    queue_parked(io);
    io->parked = nullptr;
    note_unstarted(b);
    commit_txn();  // (hands what is queued to the client)
    b->locks_released = true;
    // The client connects and writes when driven: a few short rounds put the requests on the wire before the step
    // keeps this process busy (a local connect and write take well under a millisecond).
    for (int round = 0; round < 3; round++) {
        httpq::drive();
        (void)WaitLatchOrSocket(nullptr, WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, httpq::fd(), 1,
                                PG_WAIT_EXTENSION);
    }
    httpq::drive();
    begin_txn(&b->clock);
}

bool between_steps(void *arg) {
    Batch *b = static_cast<Batch *>(arg);
    httpq::drive();  // answers that arrive while a batch runs are read in time (their timeouts are running)
    if (!txn_is_due(&b->clock)) return false;
    require_claim(b);
    store::persist_claim(b->current);
    note_unstarted(b);
    commit_txn();
    begin_txn(&b->clock);
    b->locks_released = true;
    return true;
}

}  // namespace

void begin_work_txn(bool read_committed) {
    TxnClock clock;
    begin_txn(&clock, read_committed);
}

void commit_work_txn() { commit_txn(); }

void abort_work_txn(MemoryContext ctx) {
    MemoryContextSwitchTo(ctx);
    EmitErrorReport();
    FlushErrorState();
    AbortCurrentTransaction();
}

namespace {

int safe_mode = 0;  // after an unexpected error: claim and commit one run at a time for a while

// recover_batch for a claimed batch; the worker then claims and commits one run at a time for a while.
void recover_claimed(const store::ClaimedRun *runs, int n, MemoryContext iter_ctx, int64 suspect) {
    int64 ids[kMaxBatch];
    for (int j = 0; j < n; j++) ids[j] = runs[j].id;
    recover_batch(iter_ctx, ids, n, suspect);
    safe_mode = kMaxBatch;
}

// A full batch wakes another idle worker; a batch that drained the queue keeps only its fair share (the rest
// is released to the idle workers). A small batch of runs not known to be fast is shown as running at once.
// Returns how many runs this worker keeps.
int share_batch(store::ClaimedRun *runs, int n, int batch, Batch *b) {
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
    // In the order the runs will begin (rate places first: claiming.hpp), a run of a pipeline not seen lately, or
    // seen to take long, may take long again: the runs after it go back to the pool, for the idle workers
    // (worker/run_times.hpp), and this worker keeps the ones before it. (The next batches are claimed smaller
    // meanwhile: note_batch_kept.)
    rate_places_first(runs, n);
    int keep = keep_until_slow(runs, n);
    note_batch_kept(keep, n);
    if (keep < n) {
        released += n - keep;
        n = keep;
    }
    // A small batch means a short queue or slow runs, and a run of a pipeline not known to be fast may take long:
    // show the claims (status running) at once (worker/run_times.hpp). The commit is asynchronous: a claim lost in a
    // crash only means the run is pending again, and the next synchronous commit flushes it anyway.
    if (show_claims_first(runs, n) || released > 0) {
        for (int i = 0; i < n; i++) store::persist_claim(&runs[i]);
        note_released(runs, n, n + released, b->version);  // (the ones given back: none persisted)
        (void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
                                false);
        commit_txn();
        begin_txn(&b->clock);
    }

    return n;
}

// Executes the batch's runs, committing as the commit policy says. A failure of the bookkeeping puts the
// batch back in the queue (recover_batch). Returns the number of runs handled.
int execute_batch(store::ClaimedRun *runs, int n, MemoryContext iter_ctx, Batch *b_arg) {
    Batch &b = *b_arg;
    volatile int done = 0;
    volatile bool failed = false;
    for (volatile int i = 0; i < n && !failed; i++) {
        if (b.locks_released && !runs[i].persisted) continue;  // back in the pool since the last commit
        pg_atomic_write_u64(&my_slot->run_id, static_cast<uint64>(runs[i].id));
        b.next = i + 1;
        TimestampTz run_start = GetCurrentTimestamp();
        int64 paused_before = paused_us;
        if (!runs[i].persisted) runs[i].claimed_at = run_start;  // started_at: when it really starts
        b.current = &runs[i];
        volatile bool deferred = false;
        // Everything of an iteration that may raise an error is inside: an error outside went past the put-back,
        // and left the batch's claimed runs 'running' under this live worker, which recovery never takes back.
        PG_TRY();
        {
            MemoryContextSwitchTo(iter_ctx);
            int wait_ms;
            if (!lanes::begin(runs[i].id, &wait_ms)) {
                // its rate window filled up since the claim: back to the queue, due when the window has room. It
                // did not start: its row keeps the started_at it had (claimed_at 0: none to record). A claim shown
                // before execution (persisted) recorded its time already, as any claim_run() does.
                if (!runs[i].persisted) runs[i].claimed_at = 0;
                store::buffer_run(&runs[i], core::RunStatus::Pending, nullptr, nullptr, wait_ms);
                deferred = true;
            }
        }
        PG_CATCH();
        {
            recover_claimed(runs, n, iter_ctx, 0);
            failed = true;
        }
        PG_END_TRY();
        if (deferred || failed) {
            pg_atomic_write_u64(&my_slot->run_id, 0);
            if (failed) pg_usleep(10000L);  // (as below)
            continue;
        }
        PG_TRY();
        {
            MemoryContextSwitchTo(iter_ctx);
            exec::HttpIO io;
            io.park_parent = TopMemoryContext;
            io.pause = pause_txn;
            io.send_parked = send_parked_now;
            exec::Outcome outcome = exec::execute_claimed(&runs[i], between_steps, &b, &io);
            if (outcome == exec::Outcome::Parked) {
                // Stopped at an HTTP step: the claim and the step's start are committed before the request leaves
                // (also when its requests left already, sent early: the run stays this worker's until they answer).
                store::persist_claim(&runs[i]);
                queue_parked(&io);
            } else {
                drop_parked(&io);  // the run ended meanwhile: those requests do not leave (their rows are closed)
            }
            note_run_time(runs[i].pipeline_id, run_start + (paused_us - paused_before));  // execution only: commit waits and pauses
                                                                      // must not shrink the batches
            if (safe_mode > 0 || txn_is_due(&b.clock)) {
                note_unstarted(&b);
                commit_txn();  // releases the lazily claimed runs not started yet
                begin_txn(&b.clock);
                b.locks_released = true;
            }
        }
        PG_CATCH();
        {
            recover_claimed(runs, n, iter_ctx, runs[i].id);
            failed = true;
        }
        PG_END_TRY();
        done++;
        pg_atomic_write_u64(&my_slot->run_id, 0);
        pg_atomic_fetch_add_u64(&my_slot->runs_done, 1);
        if (!failed) {
            PG_TRY();
            {
                httpq::drive();
                CHECK_FOR_INTERRUPTS();
            }
            PG_CATCH();
            {
                recover_claimed(runs, n, iter_ctx, 0);
                failed = true;
            }
            PG_END_TRY();
        }
        if (failed) pg_usleep(10000L);  // a failing database must not become a hot loop
        CHECK_FOR_INTERRUPTS();
    }
    if (!failed) {
        // The last commit flushes the batch's buffered writes: an error there (a deadlock, a run taken over) is a
        // failed batch like any other -- its runs whose claims an earlier commit recorded would otherwise stay
        // "running" under this live worker, which recovery never takes back. (A batch of one names its culprit.)
        PG_TRY();
        {
            commit_txn();  // (an empty transaction commits without a WAL flush)
        }
        PG_CATCH();
        {
            recover_claimed(runs, n, iter_ctx, n == 1 ? runs[0].id : 0);
            pg_usleep(10000L);  // (as after a failure mid-way)
        }
        PG_END_TRY();
    }
    return done;
}

}  // namespace

bool takes_due_moment() { return guc::enabled && !claims_stopped && timer_may_run(); }

// Claims a batch and executes it, in as few transactions as the commit policy allows. The claim is part of
// the first transaction: a crash before it commits leaves the runs pending, nothing to recover.
// Returns the number of runs claimed.
int serve_once(MemoryContext iter_ctx) {
    store::ClaimedRun runs[kMaxBatch];
    int batch = safe_mode > 0 ? 1 : batch_size();
    // Runs with concurrency limits hold their slots until the batch commits: small batches spread the slots over
    // the workers (one worker's long batch would hold every key it touched).
    if (store::limited_in_last_claim() > 0 && batch > kLimitedBatch) batch = kLimitedBatch;
    // Every claimed run may stop at an HTTP step: claim no more than there is room for in flight.
    if (!guc::enabled || claims_stopped) return 0;  // off: nothing is claimed, the timer does not fire (HTTP answers still land)
    int room = httpq::capacity() - httpq::pending();
    if (room <= 0) return 0;
    if (batch > room) batch = room;
    run_timer_if_due();
    Batch b;
    b.current = nullptr;
    b.locks_released = false;

    pgstat_report_activity(STATE_RUNNING, "claiming runs");
    begin_txn(&b.clock);
    pg::spi_connect();
    (void)store::take_parked_count();
    int n = claim_batch(batch, runs, iter_ctx, &b.version);
    SPI_finish();
    if (n == 0) {
        commit_txn();
        return store::take_parked_count() > 0 ? 1 : 0;  // runs were parked: look again behind them
    }
    pg_atomic_write_u32(&my_slot->idle, 0);  // busy: wake-ups must go to workers that are really idle
    pg_atomic_fetch_add_u64(&my_slot->batches, 1);
    if (safe_mode > 0) safe_mode--;
    n = share_batch(runs, n, batch, &b);  // (rate places first: the order they begin in)
    b.runs = runs;
    b.n = n;
    int done = execute_batch(runs, n, iter_ctx, &b);
    MemoryContextReset(iter_ctx);
    absorb_interrupts(httpq::configure);  // a changed allowlist applies to the next request
    return done;
}

namespace {

// Every call a run parked (several for the tasks of an HTTP map step).
void drop_parked(exec::HttpIO *io) {
    exec::free_http_call(io->parked);
    ListCell *lc;
    foreach (lc, io->parked_more) exec::free_http_call(static_cast<exec::HttpCall *>(lfirst(lc)));
    list_free(io->parked_more);
    io->parked = nullptr;
    io->parked_more = NIL;
}

void queue_parked(exec::HttpIO *io) {
    if (io->parked == nullptr) return;  // (parked with requests out already, none new)
    httpq::queue(io->parked);
    ListCell *lc;
    foreach (lc, io->parked_more) httpq::queue(static_cast<exec::HttpCall *>(lfirst(lc)));
    list_free(io->parked_more);
    io->parked_more = NIL;
}

// Records the answers of HTTP steps and continues their runs (following steps may park again), in one
// transaction per batch. Returns the number of answers handled.
constexpr int kMaxAnswers = 256;

}  // namespace

int serve_answers(MemoryContext iter_ctx) {
    MemoryContextSwitchTo(iter_ctx);
    int n = 0;
    exec::HttpCall **calls = httpq::take_answered(&n, kMaxAnswers);
    if (n == 0) return 0;
    // the answers of one claim of a run next to each other (several map tasks of a run may answer in one batch; an
    // answer of an older claim -- the run cancelled, retried and claimed again by this worker -- is another group)
    auto before = [](const exec::HttpCall *a, const exec::HttpCall *b) {
        return a->run.id < b->run.id || (a->run.id == b->run.id && a->run.claims < b->run.claims);
    };
    auto same_claim = [](const exec::HttpCall *a, const exec::HttpCall *b) {
        return a->run.id == b->run.id && a->run.claims == b->run.claims;
    };
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && before(calls[j], calls[j - 1]); j--) std::swap(calls[j - 1], calls[j]);
    pg_atomic_write_u32(&my_slot->idle, 0);
    pgstat_report_activity(STATE_RUNNING, "recording HTTP answers");
    Batch b;
    b.current = nullptr;
    b.locks_released = false;
    volatile int current = -1;
    volatile int nkept = n;  // (the calls deferred are no longer this batch's)
    PG_TRY();
    {
        begin_txn(&b.clock);
        // iter_ctx, not the transaction's context: a commit between the steps of one run must not free this
        MemoryContextSwitchTo(iter_ctx);
        const char **status = static_cast<const char **>(palloc(sizeof(char *) * n));
        // Lock the runs: a concurrent cancel_run waits for this transaction, and one that came first wins. A run
        // another transaction holds is not waited for (row_locks.sh): its answers are recorded later.
        nkept = n = httpq::lock_answered(calls, status, n);
        for (int i = 0; i < n; i++) {
            current = i;
            // answers of one run (map tasks) are handed over together: the first of them resumes the run
            if (i > 0 && same_claim(calls[i], calls[i - 1])) continue;
            if (b.locks_released) {
                // A commit between the steps of an earlier run released the row locks taken above: look again
                // (and lock again), so that a cancel_run -- or a cancel_run + retry_run and a claim by another
                // worker -- that came in meanwhile wins over continuing the run here.
                MemoryContextSwitchTo(iter_ctx);
                nkept = n = i + httpq::lock_answered(calls + i, status + i, n - i);
                b.locks_released = false;
                if (i == n) break;
            }
            int same = 1;
            while (i + same < n && same_claim(calls[i + same], calls[i])) same++;
            if (status[i] == nullptr || strcmp(status[i], "running") != 0) {
                // cancelled meanwhile (or no longer this worker's), or finished by another task of it that failed:
                // record what happened to the attempts
                if (status[i] != nullptr && strcmp(status[i], "cancelled") == 0)
                    for (int k = 0; k < same; k++) exec::record_cancelled_call(calls[i + k]);
                else if (status[i] != nullptr && strcmp(status[i], "failed") == 0)
                    for (int k = 0; k < same; k++) exec::record_late_answer(calls[i + k]);
                // The run is no longer this worker's to execute: its limits' slots go back with this commit, once none
                // of its calls is out any more. (Until 2026-12-04 they stayed taken until the worker exited: a run
                // cancelled while it waited for an answer blocked a pipeline at "concurrency": 1 -- http.sh.)
                // (not when a newer claim of the run answers in this batch too: the slot is that claim's now)
                bool newer = i + same < n && calls[i + same]->run.id == calls[i]->run.id;
                if (!newer && httpq::calls_of_run(calls[i]->run.id) == 0) lanes::release_at_commit(calls[i]->run.id);
                continue;
            }
            pg_atomic_write_u64(&my_slot->run_id, static_cast<uint64>(calls[i]->run.id));
            b.current = &calls[i]->run;
            exec::HttpIO io;
            io.resume = calls[i];
            io.more = calls + i + 1;
            io.nmore = same - 1;
            io.park_parent = TopMemoryContext;
            io.pause = pause_txn;
            io.send_parked = send_parked_now;
            MemoryContextSwitchTo(iter_ctx);
            exec::Outcome o = exec::execute_claimed(nullptr, between_steps, &b, &io);
            if (o == exec::Outcome::Parked) {
                queue_parked(&io);
            } else {
                drop_parked(&io);
                pg_atomic_fetch_add_u64(&my_slot->runs_done, 1);
            }
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
        n = nkept;
        int64 *ids = static_cast<int64 *>(MemoryContextAlloc(iter_ctx, sizeof(int64) * n));
        for (int j = 0; j < n; j++) ids[j] = calls[j]->run.id;
        recover_batch(iter_ctx, ids, n, current >= 0 ? calls[current]->run.id : 0);
        pg_usleep(10000L);
    }
    PG_END_TRY();
    n = nkept;
    for (int i = 0; i < n; i++) exec::free_http_call(calls[i]);
    MemoryContextReset(iter_ctx);
    return n;
}


}  // namespace pw::worker
