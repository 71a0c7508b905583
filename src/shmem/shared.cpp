#include "shmem/shared.hpp"

#include "shmem/lanes.hpp"
#include "shmem/task_board.hpp"
#include "shmem/metrics.hpp"

namespace pw::shared {

namespace {

State *g_state = nullptr;
SessionExec *g_sessions = nullptr;  // MaxBackends entries

struct Claimer {
    pg_atomic_uint32 pid;
    pg_atomic_uint64 started;  // TimestampTz
};
Claimer *g_claimers = nullptr;  // MaxBackends entries, by pgprocno
bool registered = false;
uint64 timer_lease = 0;  // the lease this backend holds (begin_timer), 0: none
bool timer_exit_hook = false;
shmem_request_hook_type prev_request_hook = nullptr;
shmem_startup_hook_type prev_startup_hook = nullptr;

int slot_count() { return max_worker_processes > 0 ? max_worker_processes : 1; }

// A slot's latch, read once: a worker leaving sets it to NULL at any moment (worker_main's slot_release), and a
// second read between the test and SetLatch could see that.
Latch *latch_of(Slot *s) { return *static_cast<Latch *volatile *>(&s->latch); }

Size state_size() { return add_size(offsetof(State, slots), mul_size(sizeof(Slot), slot_count())); }

Size sessions_size() { return mul_size(sizeof(SessionExec), MaxBackends); }

Size claimers_size() { return mul_size(sizeof(Claimer), MaxBackends); }

void request_hook() {
    if (prev_request_hook) prev_request_hook();
    RequestAddinShmemSpace(MAXALIGN(state_size()));
    RequestAddinShmemSpace(MAXALIGN(sessions_size()));
    RequestAddinShmemSpace(MAXALIGN(claimers_size()));
    lanes::shmem_request();
    board::shmem_request();
    metrics::shmem_request();
}

void startup_hook() {
    if (prev_startup_hook) prev_startup_hook();
    bool found = false;
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    g_state = static_cast<State *>(ShmemInitStruct("pipeline_worker", state_size(), &found));
    if (!found) {
        memset(g_state, 0, state_size());
        g_state->nslots = slot_count();
        pg_atomic_init_u32(&g_state->cancel_next, 0);
        pg_atomic_init_u64(&g_state->pipelines_generation, 1);
        pg_atomic_init_u64(&g_state->enabled_since, 0);
        pg_atomic_init_u64(&g_state->disabled_since, 0);
        for (int i = 0; i < kCancelRing; i++) pg_atomic_init_u64(&g_state->cancels[i], 0);
        for (int i = 0; i < kCancelFilter; i++) pg_atomic_init_u32(&g_state->cancel_counts[i], 0);
        pg_atomic_init_u32(&g_state->cancel_epoch, 0);
        ConditionVariableInit(&g_state->run_done_cv);
        for (int i = 0; i < kMaxDatabases; i++) {
            DbState *d = &g_state->dbs[i];
            pg_atomic_init_u32(&d->dboid, 0);
            pg_atomic_init_u32(&d->extension, kExtUnknown);
            pg_atomic_init_u32(&d->extension_seq, 0);
            pg_atomic_init_u32(&d->wanted, 0);
            pg_atomic_init_u32(&d->recovery_needed, 0);
            pg_atomic_init_u64(&d->claim_hint, 0);
            pg_atomic_init_u64(&d->claim_top, 0);
            d->hint_lowerings = 0;
            d->queue_end = 0;
            d->queue_end_until = 0;
            d->queue_additions = 0;
            d->queue_forgets = 0;
            SpinLockInit(&d->hint_lock);
            pg_atomic_init_u64(&d->next_retry_due, 0);
            pg_atomic_init_u64(&d->head_walks_after, 0);
            pg_atomic_init_u64(&d->timer_until, 0);
            pg_atomic_init_u64(&d->last_claim, 0);
            pg_atomic_init_u64(&d->evict_until, 0);
            pg_atomic_init_u64(&d->probed_at, 0);
            pg_atomic_init_u64(&d->read_only_until, 0);
            pg_atomic_init_u64(&d->expiry_due, 0);
            SpinLockInit(&d->parent_wakes_lock);
            pg_atomic_init_u32(&d->nparent_wakes, 0);
            pg_atomic_init_u32(&d->reorders, 0);
            pg_atomic_init_u32(&d->fresh_lanes, 1);
            pg_atomic_init_u64(&d->put_back_skip_until, 0);
            pg_atomic_init_u32(&d->unpark_wanted, 1);
            pg_atomic_init_u32(&d->wake_parked, 1);
            pg_atomic_init_u64(&d->cancel_records_seq, 1);
            pg_atomic_init_u64(&d->cancel_records_swept, 0);
            SpinLockInit(&d->reorder_lock);
            d->reorder_from = UINT64_MAX;
        }
        for (int i = 0; i < g_state->nslots; i++) {
            pg_atomic_init_u32(&g_state->slots[i].idle, 0);
            pg_atomic_init_u64(&g_state->slots[i].run_id, 0);
            pg_atomic_init_u64(&g_state->slots[i].woken_at, 0);
            pg_atomic_init_u64(&g_state->slots[i].runs_done, 0);
            pg_atomic_init_u64(&g_state->slots[i].batches, 0);
            pg_atomic_init_u32(&g_state->slots[i].dboid, 0);
            pg_atomic_init_u32(&g_state->slots[i].retire, 0);
            pg_atomic_init_u32(&g_state->slots[i].left_clean, 0);
            pg_atomic_init_u32(&g_state->slots[i].timer_failed, 0);
        }
    }
    g_sessions = static_cast<SessionExec *>(ShmemInitStruct("pipeline_worker sessions", sessions_size(), &found));
    if (!found) {
        for (int i = 0; i < MaxBackends; i++) {
            pg_atomic_init_u64(&g_sessions[i].run_id, 0);
            pg_atomic_init_u32(&g_sessions[i].signal_pending, 0);
            pg_atomic_init_u32(&g_sessions[i].dboid, 0);
            g_sessions[i].pid = 0;
        }
    }
    g_claimers = static_cast<Claimer *>(ShmemInitStruct("pipeline_worker claimers", claimers_size(), &found));
    if (!found) {
        for (int i = 0; i < MaxBackends; i++) {
            pg_atomic_init_u32(&g_claimers[i].pid, 0);
            pg_atomic_init_u64(&g_claimers[i].started, 0);
        }
    }
    lanes::shmem_startup();
    board::shmem_startup();
    metrics::shmem_startup();
    LWLockRelease(AddinShmemInitLock);
}

}  // namespace

State *state() { return g_state; }

namespace {
int my_db_index = -1;  // where this backend found its database last (checked on every use)
}  // namespace

DbState *db(Oid dboid) {
    if (g_state == nullptr) return nullptr;
    if (!OidIsValid(dboid)) dboid = MyDatabaseId;
    if (!OidIsValid(dboid)) return nullptr;
    bool mine = dboid == MyDatabaseId;
    if (mine && my_db_index >= 0 && pg_atomic_read_u32(&g_state->dbs[my_db_index].dboid) == dboid)
        return &g_state->dbs[my_db_index];
    for (int i = 0; i < kMaxDatabases; i++)
        if (pg_atomic_read_u32(&g_state->dbs[i].dboid) == dboid) {
            if (mine) my_db_index = i;
            return &g_state->dbs[i];
        }
    return nullptr;
}

DbState *attach_db(Oid dboid) {
    if (DbState *d = db(dboid)) return d;
    if (g_state == nullptr) return nullptr;
    for (int i = 0; i < kMaxDatabases; i++) {
        DbState *d = &g_state->dbs[i];
        if (pg_atomic_read_u32(&d->dboid) != 0) continue;
        pg_atomic_write_u32(&d->extension, kExtUnknown);
        pg_atomic_write_u32(&d->wanted, 0);
        pg_atomic_write_u32(&d->recovery_needed, 1);  // its first worker sweeps (runs of a previous life)
        pg_atomic_write_u32(&d->fresh_lanes, 1);      // ... and puts back the runs parked by limits before
        pg_atomic_write_u64(&d->put_back_skip_until, 0);
        pg_atomic_write_u32(&d->unpark_wanted, 1);
        pg_atomic_write_u32(&d->wake_parked, 1);
        pg_atomic_write_u64(&d->cancel_records_seq, 1);  // ... and claims look for recorded cancels until a sweep
        pg_atomic_write_u64(&d->cancel_records_swept, 0);  // finds none (the requests in shared memory are gone)
        pg_atomic_write_u64(&d->claim_hint, 0);
        pg_atomic_write_u64(&d->claim_top, 0);
        SpinLockAcquire(&d->hint_lock);
        d->queue_end = 0;  // (not known: the database's runs are new to this entry)
        d->queue_forgets++;
        SpinLockRelease(&d->hint_lock);
        pg_atomic_write_u64(&d->next_retry_due, 1);  // ... and runs the timer (delayed runs, schedules)
        pg_atomic_write_u64(&d->head_walks_after, 0);
        pg_atomic_write_u64(&d->timer_until, 0);
        pg_atomic_write_u64(&d->last_claim, 0);
        pg_atomic_write_u64(&d->evict_until, 0);
        pg_atomic_write_u64(&d->probed_at, 0);
        pg_atomic_write_u64(&d->read_only_until, 0);
        pg_atomic_write_u64(&d->expiry_due, 0);
        SpinLockAcquire(&d->parent_wakes_lock);
        pg_atomic_write_u32(&d->nparent_wakes, 0);
        SpinLockRelease(&d->parent_wakes_lock);
        SpinLockAcquire(&d->reorder_lock);
        pg_atomic_write_u32(&d->reorders, 0);
        d->reorder_from = UINT64_MAX;
        SpinLockRelease(&d->reorder_lock);
        pg_write_barrier();
        pg_atomic_write_u32(&d->dboid, dboid);
        return d;
    }
    return nullptr;
}

void detach_db(DbState *d) {
    if (d != nullptr) pg_atomic_write_u32(&d->dboid, 0);
}

int workers_in(Oid dboid) {
    if (g_state == nullptr) return 0;
    int n = 0;
    for (int i = 0; i < g_state->nslots; i++) n += pg_atomic_read_u32(&g_state->slots[i].dboid) == dboid;
    return n;
}

int staying_workers_in(Oid dboid) {
    if (g_state == nullptr) return 0;
    int n = 0;
    for (int i = 0; i < g_state->nslots; i++)
        n += pg_atomic_read_u32(&g_state->slots[i].dboid) == dboid && pg_atomic_read_u32(&g_state->slots[i].retire) == 0;
    return n;
}

bool offer_parent_wake(int64 id, TransactionId xid) {
    DbState *d = db();
    if (d == nullptr || id <= 0) return false;
    bool taken = false;
    SpinLockAcquire(&d->parent_wakes_lock);
    uint32 n = pg_atomic_read_u32(&d->nparent_wakes);
    for (uint32 i = 0; i < n && !taken; i++)
        if (d->parent_wakes[i].id == id && d->parent_wakes[i].xid == xid) taken = true;  // (already there)
    if (!taken && n < static_cast<uint32>(kParentWakes)) {
        d->parent_wakes[n] = ParentWake{id, xid};
        pg_atomic_write_u32(&d->nparent_wakes, n + 1);
        taken = true;
    }
    SpinLockRelease(&d->parent_wakes_lock);
    return taken;
}

int take_parent_wakes(ParentWake *out) {
    DbState *d = db();
    if (d == nullptr || pg_atomic_read_u32(&d->nparent_wakes) == 0) return 0;
    SpinLockAcquire(&d->parent_wakes_lock);
    int n = static_cast<int>(pg_atomic_read_u32(&d->nparent_wakes));
    for (int i = 0; i < n; i++) out[i] = d->parent_wakes[i];
    pg_atomic_write_u32(&d->nparent_wakes, 0);
    SpinLockRelease(&d->parent_wakes_lock);
    return n;
}

bool parent_wakes_waiting(const DbState *d) {
    return pg_atomic_read_u32(const_cast<pg_atomic_uint32 *>(&d->nparent_wakes)) != 0;
}

void signal_workers_in(Oid dboid, bool terminate) {
    if (g_state == nullptr) return;
    for (int i = 0; i < g_state->nslots; i++) {
        Slot *s = &g_state->slots[i];
        if (pg_atomic_read_u32(&s->dboid) != dboid) continue;
        if (terminate) {
            if (s->pid != 0) (void)kill(s->pid, SIGTERM);
        } else {
            pg_atomic_write_u32(&s->retire, 1);
            if (Latch *latch = latch_of(s)) SetLatch(latch);
        }
    }
}

void wake_launcher() {
    if (g_state != nullptr && g_state->launcher_latch != nullptr) SetLatch(g_state->launcher_latch);
}

void note_extension_present() {
    // (No entry yet: a database the launcher has not seen -- created a moment ago, under '*'. Its next pass reads
    // pg_database and finds it; woken now, that pass is now, not up to a second later. CREATE EXTENSION is rare.)
    if (DbState *d = db()) {
        pg_atomic_fetch_add_u32(&d->extension_seq, 1);
        pg_atomic_write_u32(&d->extension, kExtPresent);
    }
    wake_launcher();
}

SessionExec *my_session() {
    if (g_sessions == nullptr || IsBackgroundWorker || MyProc == nullptr || MyProc->pgprocno >= MaxBackends) return nullptr;
    return &g_sessions[MyProc->pgprocno];
}

SessionExec *session_executing(int64 run_id) {
    if (g_sessions == nullptr) return nullptr;
    for (int i = 0; i < MaxBackends; i++) {
        SessionExec *e = &g_sessions[i];
        // (run ids are per database: until 2026-12-04 a session of another database executing a run with the same
        // id was signalled instead, and the one cancelled ran its step to the end)
        if (pg_atomic_read_u64(&e->run_id) != static_cast<uint64>(run_id) ||
            pg_atomic_read_u32(&e->dboid) != MyDatabaseId)
            continue;
        // only the live backend that owns this entry (never a recycled pid); a stale entry: look on
        PGPROC *proc = e->pid != 0 ? BackendPidGetProc(e->pid) : nullptr;
        if (proc != nullptr && proc->pgprocno == i) return e;
    }
    return nullptr;
}

void register_claimer() {
    if (registered || g_claimers == nullptr || MyProc == nullptr || MyProc->pgprocno >= MaxBackends) return;
    Claimer *c = &g_claimers[MyProc->pgprocno];
    pg_atomic_write_u64(&c->started, static_cast<uint64>(MyStartTimestamp));
    pg_write_barrier();
    pg_atomic_write_u32(&c->pid, static_cast<uint32>(MyProcPid));
    registered = true;
}

bool claimer_alive(int pid, TimestampTz started) {
    if (pid <= 0) return false;
    PGPROC *proc = BackendPidGetProc(pid);
    if (proc == nullptr) return false;
    if (g_claimers == nullptr || proc->pgprocno >= MaxBackends) return true;  // alive; its start cannot be told
    Claimer *c = &g_claimers[proc->pgprocno];
    if (static_cast<int>(pg_atomic_read_u32(&c->pid)) != pid) return false;  // that pid is another, newer backend
    pg_read_barrier();
    return static_cast<TimestampTz>(pg_atomic_read_u64(&c->started)) == started;
}

void install_hooks() {
    prev_request_hook = shmem_request_hook;
    shmem_request_hook = request_hook;
    prev_startup_hook = shmem_startup_hook;
    shmem_startup_hook = startup_hook;
}

int wake_workers(int n) { return wake_workers_in(MyDatabaseId, n); }

int wake_workers_in(Oid dboid, int n) {
    if (g_state == nullptr || n <= 0) return 0;
    bool any = false;
    int woken = 0;
    for (int i = 0; i < g_state->nslots && n > 0; i++) {
        Slot *s = &g_state->slots[i];
        if (pg_atomic_read_u32(&s->dboid) != dboid) continue;
        // A leaving worker claims nothing more, nor takes a due moment: woken, it would do nothing, and the wake-up
        // would be lost for the workers that stay (until 2026-12-04 it took one while HTTP requests kept it).
        if (pg_atomic_read_u32(&s->retire) != 0) continue;
        any = true;
        Latch *latch = latch_of(s);
        if (s->pid != 0 && latch != nullptr && pg_atomic_read_u32(&s->idle) == 1) {
            // claim the wake-up so that concurrent committers wake different workers
            uint32 expected = 1;
            if (pg_atomic_compare_exchange_u32(&s->idle, &expected, 0)) {
                pg_atomic_write_u64(&s->woken_at, static_cast<uint64>(GetCurrentTimestamp()));
                SetLatch(latch);
                n--;
                woken++;
            }
        }
    }
    if (!any) {
        // nobody serves the database now: the launcher sends a worker (if the database is served at all)
        DbState *d = db(dboid);
        if (d != nullptr && pg_atomic_exchange_u32(&d->wanted, 1) == 0) wake_launcher();
    }
    return woken;
}

void bump_pipelines_generation() {
    if (g_state != nullptr) pg_atomic_fetch_add_u64(&g_state->pipelines_generation, 1);
}

void broadcast_run_done() {
    if (g_state != nullptr) ConditionVariableBroadcast(&g_state->run_done_cv);
}

int idle_workers() {
    if (g_state == nullptr) return 0;
    int n = 0;
    for (int i = 0; i < g_state->nslots; i++)
        if (g_state->slots[i].pid != 0 && pg_atomic_read_u32(&g_state->slots[i].dboid) == MyDatabaseId &&
            pg_atomic_read_u32(&g_state->slots[i].idle) == 1 && pg_atomic_read_u32(&g_state->slots[i].retire) == 0)
            n++;  // (a leaving worker takes no work handed over)
    return n;
}

int free_workers() {
    if (g_state == nullptr) return 0;
    // (not every worker executing no run: one between the runs of its batch, the lead in its chores, one whose HTTP
    // requests fill its capacity would not come -- sharing for them cost two commits and the batch's unstarted runs
    // for nothing; review, 2026-12-08)
    constexpr int64 kWokenFreeUs = 20 * 1000;
    TimestampTz now = GetCurrentTimestamp();
    int n = 0;
    for (int i = 0; i < g_state->nslots; i++) {
        Slot *s = &g_state->slots[i];
        if (s->pid == 0 || pg_atomic_read_u32(&s->dboid) != MyDatabaseId || pg_atomic_read_u32(&s->retire) != 0)
            continue;
        if (pg_atomic_read_u32(&s->idle) == 1 ||
            (pg_atomic_read_u64(&s->run_id) == 0 &&
             now - static_cast<TimestampTz>(pg_atomic_read_u64(&s->woken_at)) < kWokenFreeUs))
            n++;
    }
    return n;
}

bool leads_database(int slot_no) {
    if (g_state == nullptr || slot_no < 0 || slot_no >= g_state->nslots) return false;
    // (not a leaving worker: the one that stays leads, sweeps and keeps the short idle timeout)
    if (pg_atomic_read_u32(&g_state->slots[slot_no].retire) != 0) return false;
    uint32 mine = pg_atomic_read_u32(&g_state->slots[slot_no].dboid);
    for (int i = 0; i < slot_no; i++)
        if (pg_atomic_read_u32(&g_state->slots[i].dboid) == mine && g_state->slots[i].pid != 0 &&
            pg_atomic_read_u32(&g_state->slots[i].retire) == 0)
            return false;
    return true;
}

void note_retry_due(TimestampTz due) {
    DbState *d = db();
    if (d == nullptr) return;
    uint64 cur = pg_atomic_read_u64(&d->next_retry_due);
    while (cur == 0 || static_cast<TimestampTz>(cur) > due) {
        if (pg_atomic_compare_exchange_u64(&d->next_retry_due, &cur, static_cast<uint64>(due))) {
            // earlier than what the idle workers sleep for: one of them wakes and sleeps until this one -- or, none
            // idle, the launcher looks, which starts a timer worker if every worker is still inside a step then
            if (wake_workers(1) == 0) wake_launcher();
            break;
        }
    }
}

bool take_due() {
    DbState *d = db();
    if (d == nullptr) return false;
    uint64 due = pg_atomic_read_u64(&d->next_retry_due);
    if (due == 0 || static_cast<TimestampTz>(due) > GetCurrentTimestamp()) return false;
    return pg_atomic_compare_exchange_u64(&d->next_retry_due, &due, 0);
}

bool is_due() {
    DbState *d = db();
    uint64 due = d == nullptr ? 0 : pg_atomic_read_u64(&d->next_retry_due);
    return due != 0 && static_cast<TimestampTz>(due) <= GetCurrentTimestamp();
}

namespace {
// Terminated in a round (pg_terminate_backend ends a worker with FATAL, past the round's PG_CATCH): the next round
// need not wait for the lease to run out. The round rolled back, and the due moment it took (take_due) is due again:
// until 2026-12-05 nothing set it again, and delayed runs, back-offs, sleeps and schedules waited for some other
// commit to note a due time (test/scripts/timestamps.sh).
void end_timer_at_exit(int, Datum) {
    bool in_round = timer_lease != 0;
    end_timer();
    if (in_round) note_retry_due(GetCurrentTimestamp());
}
}  // namespace

void note_disabled() {
    if (g_state == nullptr) return;
    uint64 now = static_cast<uint64>(GetCurrentTimestamp());
    uint64 seen = pg_atomic_read_u64(&g_state->disabled_since);
    // (only the first to see it since it was last seen on: disabled_since not after enabled_since)
    while (seen <= pg_atomic_read_u64(&g_state->enabled_since) && seen < now &&
           !pg_atomic_compare_exchange_u64(&g_state->disabled_since, &seen, now)) {
    }
}

void note_enabled() {
    if (g_state == nullptr) return;
    uint64 now = static_cast<uint64>(GetCurrentTimestamp());
    uint64 seen = pg_atomic_read_u64(&g_state->enabled_since);
    // (only the first to see it since it was last seen off: enabled_since before disabled_since -- a server started
    // with it off has the launcher's start noted as off; never off since the start, both 0: nothing to note)
    while (seen < pg_atomic_read_u64(&g_state->disabled_since) && seen < now &&
           !pg_atomic_compare_exchange_u64(&g_state->enabled_since, &seen, now)) {
    }
}

bool timer_off_period(TimestampTz *from, TimestampTz *until) {
    if (g_state == nullptr) return false;
    TimestampTz on = static_cast<TimestampTz>(pg_atomic_read_u64(&g_state->enabled_since));
    TimestampTz off = static_cast<TimestampTz>(pg_atomic_read_u64(&g_state->disabled_since));
    if (on <= off) return false;  // (never off since the start -- both 0 --, or off now)
    *from = off;
    *until = on;
    return true;
}

bool begin_timer() {
    DbState *d = db();
    if (d == nullptr) return true;
    TimestampTz now = GetCurrentTimestamp();
    uint64 until = pg_atomic_read_u64(&d->timer_until);
    if (until != 0 && static_cast<TimestampTz>(until) > now) return false;
    uint64 lease = static_cast<uint64>(now + kTimerLeaseUs);
    if (!pg_atomic_compare_exchange_u64(&d->timer_until, &until, lease)) return false;
    if (!timer_exit_hook) {
        before_shmem_exit(end_timer_at_exit, 0);
        timer_exit_hook = true;
    }
    timer_lease = lease;
    return true;
}

void end_timer() {
    // (only the lease this worker holds: after a round longer than the lease, another worker's may have followed)
    uint64 mine = timer_lease;
    timer_lease = 0;
    if (mine == 0) return;
    if (DbState *d = db()) (void)pg_atomic_compare_exchange_u64(&d->timer_until, &mine, 0);
}

bool timer_busy(TimestampTz now) {
    DbState *d = db();
    return d != nullptr && static_cast<TimestampTz>(pg_atomic_read_u64(&d->timer_until)) > now;
}

long idle_timeout_ms(long max_ms) {
    DbState *d = db();
    if (d == nullptr) return max_ms;
    uint64 due = pg_atomic_read_u64(&d->next_retry_due);
    if (due == 0) return max_ms;
    TimestampTz now = GetCurrentTimestamp();
    if (static_cast<TimestampTz>(due) <= now) return 0;  // due now: the caller looks for work (take_due)
    long ms = static_cast<long>((static_cast<TimestampTz>(due) - now + 999) / 1000);
    return ms < max_ms ? ms : max_ms;
}

}  // namespace pw::shared
