// A worker process: its signals and the flags they set, the hooks it hands the executor (crash marker, a step
// that terminates its own worker), and its loop -- wait for the extension, then claim and execute runs, record
// HTTP answers, sleep on the latch (and the HTTP client's sockets) when there is nothing to do.
#include <malloc.h>

#include <algorithm>

#include "exec/hooks.hpp"
#include "exec/http_queue.hpp"
#include "shmem/cancels.hpp"
#include "shmem/gucs.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/children.hpp"
#include "worker/crashes.hpp"
#include "worker/interrupts.hpp"
#include "worker/parent_wakes.hpp"
#include "worker/read_only.hpp"
#include "worker/serve.hpp"
#include "worker/timer.hpp"
#include "worker/upkeep.hpp"
#include "worker/helping.hpp"

extern "C" {
PGDLLEXPORT void pw_worker_main(Datum arg);
}

namespace pw::worker {

namespace {

constexpr long kExtensionPollMs = 1000;      // while waiting for CREATE EXTENSION
constexpr long kIdleTimeoutMs = 1000;        // the lead worker's idle safety net: periodic sweep
constexpr long kIdleTimeoutOtherMs = 10000;  // other workers sleep until woken (work, a due retry, a dead worker)
constexpr long kExpiryGapMs = 5000;          // a database without a worker is sent one for retention at most this often
constexpr long kReadOnlyPollMs = 1000;       // while the database's transactions are read-only by default
constexpr long kReadOnlyRecheckMs = 5000;    // ... and whether that came from a setting since removed

// Set by the SIGTERM handler when a step terminated its own backend; read by the executor through the hooks.
volatile sig_atomic_t step_self_terminated = 0;

// SIGTERM: a step that terminates its own backend (the sender is this process) gets an error instead;
// any other sender (pg_terminate_backend from elsewhere, server shutdown) ends the worker as usual.
void worker_sigterm(int signo, siginfo_t *info, void *) {
    if (exec::in_step() && info != nullptr && info->si_pid == MyProcPid) {
        int save_errno = errno;
        step_self_terminated = 1;
        QueryCancelPending = true;
        InterruptPending = true;
        SetLatch(MyLatch);
        errno = save_errno;
        return;
    }
    die(signo);
}

// SIGINT comes from cancel_run: honour it only while a step of a run that was asked to stop is executing,
// so that a late or stray signal never cancels another run's step. Or from this process's own lock_timeout
// (PostgreSQL's timeout handler cancels the statement with a SIGINT to itself, after setting the timeout's
// indicator): honoured, as a backend's StatementCancelHandler would. (Until 2026-12-05 it was dropped, and a worker
// waited for a row lock past any lock_timeout: test/scripts/row_locks.sh. Nothing arms statement_timeout in a
// worker.)
void worker_sigint(SIGNAL_ARGS) {
    int save_errno = errno;
    if (get_timeout_indicator(LOCK_TIMEOUT, false)) {
        QueryCancelPending = true;
        InterruptPending = true;
    } else if (exec::in_step() && my_slot != nullptr) {
        uint64 run = pg_atomic_read_u64(&my_slot->run_id);
        if (run != 0 && shared::cancel_requested(static_cast<int64>(run), true)) {
            QueryCancelPending = true;
            InterruptPending = true;
        }
    }
    httpq::cancel_signalled = 1;
    SetLatch(MyLatch);  // HTTP requests in flight are checked for cancel requests when the loop wakes
    errno = save_errno;
}

void install_signals() {
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    struct sigaction act;
    memset(&act, 0, sizeof(act));
    act.sa_sigaction = worker_sigterm;
    act.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, nullptr);
    pqsignal(SIGINT, worker_sigint);  // cancel_run interrupts the current step of the cancelled run
    BackgroundWorkerUnblockSignals();
}

// ------------------------------------------------------------------ the executor's hooks

const char *take_failure_reason() {
    if (!step_self_terminated) return nullptr;
    step_self_terminated = 0;
    return "the step tried to terminate its own worker (pg_terminate_backend(pg_backend_pid()))";
}

const exec::StepHooks worker_hooks = {crashes::mark, crashes::unmark, take_failure_reason};

void slot_release(int, Datum) {
    if (my_slot != nullptr) {
        pg_atomic_write_u32(&my_slot->idle, 0);
        pg_atomic_write_u64(&my_slot->run_id, 0);
        my_slot->latch = nullptr;
        my_slot->pid = 0;
        my_slot = nullptr;
    }
}

void take_slot(int slot_no, Oid dboid) {
    shared::State *st = shared::state();
    if (st == nullptr || slot_no < 0 || slot_no >= st->nslots) elog(FATAL, "pipeline_worker: invalid worker slot");
    my_slot = &st->slots[slot_no];
    pg_atomic_write_u32(&my_slot->dboid, dboid);
    my_slot->pid = MyProcPid;
    my_slot->latch = MyLatch;
    before_shmem_exit(slot_release, 0);
    shared::register_claimer();
}

void set_idle(bool idle) {
    pg_atomic_write_u32(&my_slot->idle, idle ? 1 : 0);
    pg_memory_barrier();
}

// ------------------------------------------------------------------ the loop

// A worker sent to a database listed in pipeline_worker.databases that turns out to have no extension (or lost
// it) leaves: the launcher sends one again when CREATE EXTENSION commits there. (Under pipeline_worker.database
// the workers wait in the database, as they always did.)
bool leave_without_extension = false;

// A timer worker (started by the launcher while every worker of the database is inside a step): one round of the
// timer, then it exits. Its slot reads as leaving (retire) from the start.
bool timer_only = false;

uint32 extension_seq_seen = 0;  // the database's extension_seq before the last look at the catalog

void leave_database(const char *why) {
    if (shared::DbState *d = shared::db()) {
        pg_atomic_write_u64(&d->probed_at, static_cast<uint64>(GetCurrentTimestamp()));
        pg_atomic_write_u32(&d->extension, shared::kExtAbsent);
        pg_memory_barrier();
        // A CREATE EXTENSION that committed after the look wrote "present" before this wrote "absent": the launcher
        // would not send a worker for 30 s (kReprobeMs). Its count moved: "present" again. (Under '*' a database
        // created a moment before CREATE EXTENSION gets such a look: a run there waited ~1 s, once in six in
        // databases.sh, 2026-12-07.)
        if (pg_atomic_read_u32(&d->extension_seq) != extension_seq_seen)
            pg_atomic_write_u32(&d->extension, shared::kExtPresent);
        if (my_slot != nullptr) pg_atomic_write_u32(&my_slot->left_clean, 1);  // (for the launcher: not a crash loop)
        shared::wake_launcher();
    }
    ereport(DEBUG1, (errmsg("pipeline_worker: worker leaves database %u: %s", MyDatabaseId, why)));
    proc_exit(0);
}

// The launcher wants this slot elsewhere (another database needs it, the database is no longer served, or is
// being dropped): claim nothing more, finish what is in flight, leave.
bool retiring() { return pg_atomic_read_u32(&my_slot->retire) != 0; }

// Until CREATE EXTENSION pipeline_worker has been run in the database (quietly, polling).
void wait_for_extension() {
    for (;;) {
        ResetLatch(MyLatch);
        set_idle(true);
        if (retiring() && !timer_only) proc_exit(0);
        if (shared::DbState *d = shared::db()) extension_seq_seen = pg_atomic_read_u32(&d->extension_seq);
        pg_memory_barrier();
        if (extension_ready()) {
            if (shared::DbState *d = shared::db()) pg_atomic_write_u32(&d->extension, shared::kExtPresent);
            return;
        }
        if (leave_without_extension) leave_database("no CREATE EXTENSION pipeline_worker there");
        if (timer_only) proc_exit(0);
        pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION pipeline_worker");
        wait_latch(kExtensionPollMs, httpq::configure);
    }
}

struct LoopState {
    int slot_no;
    MemoryContext iter_ctx;
    TimestampTz last_sweep = 0;
    TimestampTz last_vacuum = 0;
    TimestampTz last_expire = 0;
    TimestampTz last_count = 0;
    bool recheck_extension = false;
    bool settled = false;  // runs that crashed their workers are dealt with before the first claim
    TimestampTz read_only_checked = 0;
};

// A paused worker leaves -- for a new session (setting_gone: the entry no longer says read-only, and the launcher
// starts the next session at once), or retired while the database stays read-only. Runs it claimed (HTTP answers it
// could not record) are swept once the database is writable.
[[noreturn]] void leave_read_only(bool setting_gone) {
    if (shared::DbState *d = shared::db()) {
        if (setting_gone) {
            read_only_leaving();
            pg_atomic_write_u32(&d->wanted, 1);
        }
        if (httpq::pending() > 0) pg_atomic_write_u32(&d->recovery_needed, 1);
    }
    hand_back_held_parents();
    proc_exit(0);
}

// While the database's transactions are read-only by default (worker/read_only.hpp): nothing written -- no settling,
// no chores, no claims; HTTP requests in flight keep their answers for when it resumes. A worker whose read-only
// default came from an ALTER DATABASE / ALTER ROLE setting that is gone leaves, for a new session with the settings of
// now -- HTTP answers it could not record go with it: their runs are recovered, as after a crash.
void wait_read_only(LoopState *ls) {
    pgstat_report_activity(STATE_IDLE, "paused: default_transaction_read_only is on");
    // (as good as idle: the launcher may send it to a database with work -- unless HTTP answers wait for it to resume)
    set_idle(httpq::pending() == 0);
    TimestampTz now = GetCurrentTimestamp();
    if (!renew_read_only_note()) ls->read_only_checked = 0;  // (forgotten: look at the settings now)
    if (TimestampDifferenceExceeds(ls->read_only_checked, now, kReadOnlyRecheckMs)) {
        ls->read_only_checked = now;
        if (read_only_setting_gone()) {
            ereport(LOG, (errmsg("pipeline_worker: worker %d leaves for a new session: the setting that made its "
                                 "transactions read-only is gone", ls->slot_no)));
            leave_read_only(true);
        }
        note_read_only();
    }
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kReadOnlyPollMs, PG_WAIT_EXTENSION);
}

// An error outside a run, in PG_CATCH: reported -- unless DROP EXTENSION committed under the worker (its tables
// or functions vanished mid-claim), which is no error: the worker just goes back to waiting.
void report_unless_dropped(MemoryContext ctx) {
    MemoryContextSwitchTo(ctx);
    ErrorData *edata = CopyErrorData();
    FlushErrorState();
    AbortCurrentTransaction();
    bool vanished = edata->sqlerrcode == ERRCODE_UNDEFINED_TABLE || edata->sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
                    edata->sqlerrcode == ERRCODE_UNDEFINED_OBJECT || edata->sqlerrcode == ERRCODE_INTERNAL_ERROR;
    PG_TRY();
    {
        if (vanished && !extension_ready()) {
            ereport(DEBUG1, (errmsg("pipeline_worker: extension dropped while claiming: %s", edata->message)));
        } else {
            ThrowErrorData(edata);  // an ERROR: caught below, reported as it was raised
        }
    }
    PG_CATCH();
    {
        EmitErrorReport();
        FlushErrorState();
        AbortCurrentTransaction();
    }
    PG_END_TRY();
}

// One round of work. Returns how many runs and answers it handled, -1 after an error or while the extension is
// missing. Errors outside a run (claim, recovery) are reported and cleaned up here.
int work_once(LoopState *ls) {
    volatile int handled = 0;
    PG_TRY();
    {
        httpq::drive();
        httpq::check_cancels();
        // Only after sleeping or an error: a busy worker does not pay a transaction per batch for this.
        if (ls->recheck_extension) {
            if (shared::DbState *d = shared::db()) extension_seq_seen = pg_atomic_read_u32(&d->extension_seq);
            pg_memory_barrier();
        }
        if (ls->recheck_extension && !extension_ready()) {
            // dropped while we served: go back to waiting (and settle crash counts again once it is back: run ids
            // start over)
            if (leave_without_extension) leave_database("DROP EXTENSION pipeline_worker");
            ls->settled = false;
            pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION pipeline_worker");
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kExtensionPollMs, PG_WAIT_EXTENSION);
            handled = -1;
        } else if (read_only_now(ls->slot_no)) {
            wait_read_only(ls);
            handled = -1;
        } else {
            ls->recheck_extension = false;
            if (!ls->settled) {
                pgstat_report_activity(STATE_RUNNING, "checking runs that ended their workers abnormally");
                crashes::settle();
                ls->settled = true;
            }
            bool lead = shared::leads_database(ls->slot_no);  // the periodic chores: one worker per database
            maybe_recover(&ls->last_sweep, lead);
            maybe_expire(&ls->last_expire, lead);
            maybe_vacuum(&ls->last_vacuum, lead);
            maybe_count(&ls->last_count, lead);
            // Idle only now, about to look for work (the latch was reset before the chores: a wake-up from here on is
            // not lost). Idle during the chores, the lead -- the first slot a wake-up tries -- took the wake-ups of
            // runs committed meanwhile while the others slept on, for as long as a retention round or a VACUUM took.
            set_idle(httpq::pending() < httpq::capacity());
            wake_held_parents();  // parents a commit found held elsewhere, when their retry is due
            if (httpq::has_answered()) handled += serve_answers(ls->iter_ctx);
            handled += serve_once(ls->iter_ctx);
            if (handled == 0) handled += help_with_tasks(ls->iter_ctx);  // another worker's map tasks
        }
    }
    PG_CATCH();
    {
        report_unless_dropped(ls->iter_ctx);
        MemoryContextReset(ls->iter_ctx);
        pg_usleep(100000L);
        handled = -1;
        ls->recheck_extension = true;
    }
    PG_END_TRY();
    return handled;
}

// Nothing to do: sleep until woken (work, a due retry, an HTTP socket or timer), with no transaction open.
void sleep_idle(LoopState *ls, WaitEventSet *waits) {
    // (the lead's sweep comes every recovery_interval_ms: below a second too -- until 2026-12-07 its 1 s sleep held a
    // shorter setting at a second; acceptance walk-through)
    long longest = shared::leads_database(ls->slot_no) ? std::min<long>(kIdleTimeoutMs, guc::recovery_interval_ms)
                                                       : kIdleTimeoutOtherMs;
    // (a due moment this worker would not take -- disabled, leaving -- kept every worker awake: 100 % of both cores
    // with pipeline_worker.enabled = off until 2026-12-04, test/scripts/workers.sh)
    long timeout = takes_due_moment() ? shared::idle_timeout_ms(longest) : longest;
    int in_flight = httpq::pending();
    if (in_flight > 0 && in_flight >= httpq::capacity()) timeout = std::min(kIdleTimeoutMs, longest);  // no room
    long http_timeout = httpq::timeout_ms();
    if (http_timeout >= 0 && http_timeout < timeout) timeout = http_timeout;
    long parents_timeout = held_parents_timeout_ms();
    if (parents_timeout >= 0 && parents_timeout < timeout) timeout = parents_timeout;
    // (due while another worker's timer round runs: that one's; look again in a moment rather than spin)
    if (timeout == 0 && shared::timer_busy(GetCurrentTimestamp())) timeout = 1;
    if (timeout == 0 || httpq::has_answered()) return;  // a retry or an HTTP timer is due
    pgstat_report_stat(true);  // going idle: flush what is pending
    if (in_flight > 0) {
        char activity[64];
        snprintf(activity, sizeof(activity), "waiting for %d HTTP request(s)", in_flight);
        pgstat_report_activity(STATE_IDLE, activity);
    } else {
        pgstat_report_activity(STATE_IDLE, "waiting for runs");
    }
    WaitEvent ev;
    int nev = WaitEventSetWait(waits, timeout, &ev, 1, PG_WAIT_EXTENSION);
    if (nev == 0 && in_flight == 0) ls->recheck_extension = true;  // quiet: cheap moment to notice DROP EXTENSION
}

// A worker frees and re-allocates the same memory in every iteration (batch contexts, executor state, the
// step contexts built as jsonb). glibc would give freed memory at the top of the heap, and every block of 128 kB
// or more, back to the kernel each time, and the next iteration would fault it in again (page faults and
// page clearing were ~10 % of the machine's CPU in a W1 drain). Keep it: a worker's peak is a few MB.
void keep_freed_memory() {
    (void)mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
    (void)mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
}

}  // namespace

void worker_main(Datum arg) {
    keep_freed_memory();
    LoopState ls;
    ls.slot_no = DatumGetInt32(arg);
    install_signals();
    Oid dboid;
    memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(dboid));
    leave_without_extension = MyBgworkerEntry->bgw_extra[sizeof(dboid)] != 0;
    timer_only = MyBgworkerEntry->bgw_extra[sizeof(dboid) + 1] != 0;
    take_slot(ls.slot_no, dboid);
    // DROP / RENAME / TEMPLATE of this database started after the launcher sent us: do not get in its way
    if (shared::DbState *d = shared::db(dboid);
        d != nullptr && static_cast<TimestampTz>(pg_atomic_read_u64(&d->evict_until)) > GetCurrentTimestamp())
        proc_exit(0);
    BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
    pgstat_report_appname("pipeline_worker");
    exec::set_hooks(&worker_hooks);
    store::defer_held_parents(defer_parent_wake);  // (a batch's transaction waits for no parent row)
    crashes::attach(ls.slot_no);
    ls.iter_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker iteration", ALLOCSET_DEFAULT_SIZES);

    if (timer_only) {  // (before the HTTP client and the wait set: it needs neither)
        wait_for_extension();
        set_idle(false);
        // (as a worker's round: not while disabled, nor in a database read-only by default -- noted there, so that
        // the launcher sends no more until the note ends; review, 2026-12-07)
        if (guc::enabled && !read_only_now(ls.slot_no)) run_timer_if_due();
        // (a round that failed -- logged -- is tried again by the workers between their steps, and by the launcher's
        // next timer worker only after a back-off: not a process a second while it keeps failing)
        if (!timer_may_run() && my_slot != nullptr) pg_atomic_write_u32(&my_slot->timer_failed, 1);
        pgstat_report_activity(STATE_IDLE, nullptr);
        proc_exit(0);
    }
    // One wait set for the worker's whole life: its latch, postmaster death, and the HTTP client's epoll set.
    httpq::configure();
    WaitEventSet *waits = CreateWaitEventSet(TopMemoryContext, 3);
    AddWaitEventToSet(waits, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, nullptr);
    AddWaitEventToSet(waits, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, nullptr, nullptr);
    AddWaitEventToSet(waits, WL_SOCKET_READABLE, httpq::fd(), nullptr, nullptr);

    wait_for_extension();
    ereport(DEBUG1, (errmsg("pipeline_worker: worker %d serving database %u", ls.slot_no, dboid)));
    for (;;) {
        // Reset the latch before reading the signals' flags and before announcing idleness (work_once, after the
        // chores) and looking for work: a signal or wake-up that arrives after finds the latch set, so none is lost.
        // (Reset after the flags were read, a SIGHUP or SIGTERM arriving in between waited for the next wake-up, up
        // to 10 s.) A worker whose HTTP requests fill its room is not idle.
        ResetLatch(MyLatch);
        absorb_interrupts(httpq::configure);
        if (retiring()) {
            claims_stopped = true;
            // Nothing in flight: the slot is free for the launcher. (Paused read-only, answers could not be recorded:
            // they go, and their runs are recovered, as after a crash.)
            if (httpq::pending() > 0 && read_only_paused() && DefaultXactReadOnly) {
                ereport(LOG, (errmsg("pipeline_worker: worker %d leaves its database while paused, with %d HTTP "
                                     "request(s) not recorded: their runs are recovered once it is writable",
                                     ls.slot_no, httpq::pending())));
                leave_read_only(false);
            }
            if (httpq::pending() == 0) {
                // Runs left queued that no other worker of this database sees -- also runs committed meanwhile, whose
                // wake-up may have come to this worker just before it was asked to leave (until 2026-12-03 it told
                // the launcher only if its last round had handled work, and such a run waited for the next visit).
                // Also when its next finished run passes its retention: the launcher sends a worker back then
                // (until 2026-12-04 an idle database waited for a visit -- 16 s when busy ones kept every worker).
                shared::DbState *d = shared::db();
                // (several leaving at once each look: workers_in would count the others, leaving too)
                if (d != nullptr && shared::staying_workers_in(MyDatabaseId) == 0) {
                    TimestampTz expiry;
                    // (also parked runs a freed slot may let go: a wish noted while this worker was busy, with no
                    // worker left to act on it, waited for the next visit until 2026-12-05)
                    bool queued = runs_queued(&expiry);
                    if (queued || lanes::unpark_wanted() || lanes::fresh_start_pending())
                        pg_atomic_write_u32(&d->wanted, 1);  // (the launcher looks when this worker has exited)
                    // (runs expiring one after the other are taken together: a visit every kExpiryGapMs at most;
                    // runs past their retention that a skipped round left: at once, as far as that goes)
                    TimestampTz soonest = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), kExpiryGapMs);
                    if (retention_skipped()) expiry = soonest;
                    if (expiry != 0 && expiry < soonest) expiry = soonest;
                    pg_atomic_write_u64(&d->expiry_due, static_cast<uint64>(expiry));
                }
                hand_back_held_parents();  // (parents whose rows are still held: the next worker tries them)
                proc_exit(0);
            }
        }
        int handled = work_once(&ls);
        if (handled == 0) sleep_idle(&ls, waits);
        set_idle(false);
    }
}

}  // namespace pw::worker

void pw_worker_main(Datum arg) { pw::worker::worker_main(arg); }
