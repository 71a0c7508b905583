// The launcher: connected to no database, it keeps pipeline_worker.workers dynamic workers where the work is --
// one database (pipeline_worker.database) or several (pipeline_worker.databases) -- restarting the ones that exit,
// asking extra ones to leave, moving them when the settings or the work change. Where they should be is decided
// by core/placement.cpp; this file finds the databases, tells what each is doing, and starts and retires workers.
#include <algorithm>
#include <climits>
#include <new>
#include <vector>

#include "core/placement.hpp"
#include "pg/boundary.hpp"
#include "shmem/gucs.hpp"
#include "shmem/shared.hpp"
#include "worker/crashes.hpp"
#include "worker/interrupts.hpp"
#include "worker/launcher.hpp"
#include "worker/read_only.hpp"

extern "C" {
PGDLLEXPORT void pw_launcher_main(Datum arg);
}

namespace pw::worker {

namespace {

constexpr long kRestartBackoffMs = 1000;  // minimum time between two starts of one slot
constexpr long kBusyMs = 150;             // a database that claimed runs this recently is busy (or executes one now)
constexpr long kTenureMs = 1000;          // with more busy databases than workers: how long one keeps its worker
constexpr int64 kMaxWaitRank = 1000000000;  // ranks of waits (ms, about 11 days) and tenures (s) stop growing there
constexpr long kVisitMs = 4000;           // with fewer workers than databases: an idle one without a worker gets one
                                          // after this, for its upkeep (recovery sweep, retention) -- then keeps it
                                          // until another needs it -- if a worker is free of busy databases
constexpr long kStarveMs = 16000;         // ... and after this, also from a busy one (its turn, as a busy database)
constexpr long kReprobeMs = 30000;        // a listed database without the extension is looked at again after this
constexpr long kTimerLateMs = 300;        // a due moment no worker took this long (each inside a step): a timer
                                          // worker takes it (see describe)
constexpr long kTimerEveryMs = 1000;      // ... at most one per database this often
constexpr long kTimerFailedMs = 30000;    // ... and after rounds that failed in a row: 1 s, 2 s, 4 s ... up to this

struct LauncherSlot {
    BackgroundWorkerHandle *handle;
    TimestampTz last_start;
    bool asked_out;  // its last worker left because the launcher asked it to (moved): it may start again at once
    bool timer;      // a timer worker (start_timer): not one of pipeline_worker.workers
};

// The launcher's own notes on a database entry (same index as State::dbs).
struct DbNotes {
    TimestampTz busy_until;    // work was committed there, or a claim found runs
    TimestampTz served_since;  // when it got its first worker (0: it has none)
    TimestampTz unserved_since;  // when it lost its last worker (0: it has one, or never had one yet)
    TimestampTz lost_served_since;  // ... and since when it had been served then (0: none)
    TimestampTz hold_until;    // a worker there exited right after starting: wait before the next
    TimestampTz timer_started;  // when its last timer worker was started
    int timer_failures;         // how many of its last timer workers' rounds failed, in a row
    bool warned_missing;
};

struct Database {
    Oid oid;
    bool waits;  // its workers wait there for CREATE EXTENSION (pipeline_worker.database) instead of leaving
};

// The databases to serve now, from pg_database (heap scan of the shared catalog: the launcher has no database).
// Under pipeline_worker.databases a listed name that does not exist is logged once per change of the setting.
int find_databases(Database *out, int max, bool *warned_missing) {
    const char *list = guc::databases != nullptr ? guc::databases : "";
    bool legacy = list[0] == '\0';
    bool all = strcmp(list, "*") == 0;
    List *names = NIL;
    if (!legacy && !all) {
        char *copy = pstrdup(list);
        if (!SplitGUCList(copy, ',', &names)) names = NIL;  // the check hook refused such a value already
    }
    bool *seen = static_cast<bool *>(palloc0(sizeof(bool) * (list_length(names) + 1)));
    int n = 0;
    SetCurrentStatementStartTimestamp();
    StartTransactionCommand();
    Relation rel = table_open(DatabaseRelationId, AccessShareLock);
    TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
    HeapTuple tup;
    while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr && n < max) {
        Form_pg_database db = (Form_pg_database)GETSTRUCT(tup);
        const char *name = NameStr(db->datname);
        bool take = false;
        if (legacy) {
            take = strcmp(name, guc::database) == 0;
        } else if (all) {
            take = db->datallowconn && !db->datistemplate;
        } else {
            int i = 0;
            ListCell *lc;
            foreach (lc, names) {
                if (strcmp(name, static_cast<const char *>(lfirst(lc))) == 0) {
                    take = true;
                    seen[i] = true;
                }
                i++;
            }
        }
        if (take) out[n++] = Database{db->oid, legacy};
    }
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    CommitTransactionCommand();
    if (!*warned_missing) {
        if (legacy && n == 0)
            ereport(LOG, (errmsg("pipeline_worker: database \"%s\" does not exist yet; workers start when it does",
                                 guc::database)));
        int i = 0;
        ListCell *lc;
        foreach (lc, names) {
            if (!seen[i++])
                ereport(LOG, (errmsg("pipeline_worker: database \"%s\" listed in pipeline_worker.databases does not "
                                     "exist; it is served once it does",
                                     static_cast<const char *>(lfirst(lc)))));
        }
        *warned_missing = true;
    }
    return n;
}

bool start_worker(int slot, const Database &db, bool timer, BackgroundWorkerHandle **handle) {
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
    memcpy(w.bgw_extra, &db.oid, sizeof(db.oid));
    w.bgw_extra[sizeof(db.oid)] = db.waits ? 0 : 1;  // 1: leave when the extension is not there
    w.bgw_extra[sizeof(db.oid) + 1] = timer ? 1 : 0;  // 1: a timer worker (worker_main)
    return RegisterDynamicBackgroundWorker(&w, handle);
}

TimestampTz ts(const pg_atomic_uint64 *v) { return static_cast<TimestampTz>(pg_atomic_read_u64(const_cast<pg_atomic_uint64 *>(v))); }

bool after(TimestampTz now, TimestampTz t, long ms) { return t != 0 && !TimestampDifferenceExceeds(t, now, ms); }

// A reload: default_transaction_read_only may have changed in the configuration files -- the databases' read-only
// notes are forgotten, and a worker sent to one finds out again (worker/read_only.hpp).
void forget_notes() { forget_read_only_notes(InvalidOid); }

class Launcher {
  public:
    explicit Launcher(shared::State *st) : st_(st), nslots_(st->nslots) {
        slots_ = static_cast<LauncherSlot *>(MemoryContextAllocZero(TopMemoryContext, sizeof(LauncherSlot) * nslots_));
        iter_ = AllocSetContextCreate(TopMemoryContext, "pipeline_worker launcher", ALLOCSET_DEFAULT_SIZES);
    }

    void run() {
        for (;;) {
            absorb_interrupts(forget_notes);
            if (strcmp(list_seen_, guc::databases) != 0 || strcmp(db_seen_, guc::database) != 0) {
                strlcpy(list_seen_, guc::databases, sizeof(list_seen_));
                strlcpy(db_seen_, guc::database, sizeof(db_seen_));
                warned_missing_ = false;
            }
            MemoryContext old = MemoryContextSwitchTo(iter_);
            timeout_ = 1000;
            reap();
            place();
            MemoryContextSwitchTo(old);
            MemoryContextReset(iter_);
            wait_latch(timeout_, forget_notes);
        }
    }

  private:
    // Workers that exited: their slot is free. One that was not asked to leave may have left runs claimed: its
    // database sweeps at once.
    void reap() {
        TimestampTz now = GetCurrentTimestamp();
        for (int i = 0; i < nslots_; i++) {
            shared::Slot *s = &st_->slots[i];
            if (slots_[i].handle == nullptr) {
                if (s->pid == 0) pg_atomic_write_u32(&s->dboid, 0);  // a previous launcher's worker, gone
                continue;
            }
            pid_t pid;
            if (GetBackgroundWorkerPid(slots_[i].handle, &pid) != BGWH_STOPPED) continue;
            pfree(slots_[i].handle);
            slots_[i].handle = nullptr;
            if (slots_[i].timer) {  // (it holds no run, and exits after its round whatever happens)
                slots_[i].timer = false;
                slots_[i].asked_out = true;
                // Its round failed (and was logged): the next timer worker there waits, longer after each failure in
                // a row (describe).
                if (shared::DbState *d = shared::db(pg_atomic_read_u32(&s->dboid))) {
                    DbNotes &n = notes_[d - st_->dbs];
                    n.timer_failures = pg_atomic_read_u32(&s->timer_failed) != 0 ? n.timer_failures + 1 : 0;
                }
                pg_atomic_write_u32(&s->timer_failed, 0);
                // (dboid first: never a moment with the database's oid and no retire mark -- a worker leaving then
                // would count the slot as staying)
                pg_atomic_write_u32(&s->dboid, 0);
                pg_memory_barrier();
                pg_atomic_write_u32(&s->retire, 0);
                pg_atomic_write_u32(&s->left_clean, 0);
                continue;
            }
            Oid dboid = pg_atomic_read_u32(&s->dboid);
            // (Left because the extension is not there -- a worker sent to look at a new database --, as the worker
            // noted in its slot: a clean exit, and the database is not served again before the extension is
            // created, whose commit must find it served at once. Until 2026-12-07 this counted as an exit right
            // after the start: CREATE EXTENSION in a database created a moment before waited up to 1 s more.)
            bool left_clean = pg_atomic_read_u32(&s->left_clean) != 0;
            bool asked = pg_atomic_read_u32(&s->retire) != 0 || left_clean;
            if (left_clean) probe_back_at_ = now;
            slots_[i].asked_out = asked;
            pg_atomic_write_u32(&s->retire, 0);
            pg_atomic_write_u32(&s->left_clean, 0);
            pg_atomic_write_u32(&s->dboid, 0);
            shared::DbState *d = shared::db(dboid);
            if (d == nullptr || asked) continue;
            if (pg_atomic_read_u32(&d->extension) != shared::kExtAbsent) {
                pg_atomic_write_u32(&d->recovery_needed, 1);
                shared::wake_workers_in(dboid, 1);
            }
            // an exit right after the start (a crash loop, a database that refuses connections): not at once again
            if (after(now, slots_[i].last_start, kRestartBackoffMs)) notes_[d - st_->dbs].hold_until = now + kRestartBackoffMs * 1000;
        }
    }

    // Whether a worker of the database is executing a run right now.
    bool executing_in(Oid dboid) const {
        for (int i = 0; i < nslots_; i++)
            if (slots_[i].handle != nullptr && !slots_[i].timer && pg_atomic_read_u32(&st_->slots[i].dboid) == dboid &&
                pg_atomic_read_u64(&st_->slots[i].run_id) != 0)
                return true;
        return false;
    }

    // Whether every worker of the database (one at least) is executing a run: none can take a due moment soon.
    bool all_executing(Oid dboid) const {
        int n = 0;
        for (int i = 0; i < nslots_; i++) {
            if (slots_[i].handle == nullptr || slots_[i].timer || pg_atomic_read_u32(&st_->slots[i].dboid) != dboid ||
                pg_atomic_read_u32(&st_->slots[i].retire) != 0)
                continue;
            if (pg_atomic_read_u64(&st_->slots[i].run_id) == 0) return false;
            n++;
        }
        return n > 0;
    }

    // Whether a timer worker of the database (InvalidOid: of any) is under way.
    bool timer_in(Oid dboid) const {
        for (int i = 0; i < nslots_; i++)
            if (slots_[i].handle != nullptr && slots_[i].timer &&
                (dboid == InvalidOid || pg_atomic_read_u32(&st_->slots[i].dboid) == dboid))
                return true;
        return false;
    }

    int workers_here(Oid dboid, bool count_leaving) const {
        int n = 0;
        for (int i = 0; i < nslots_; i++)
            if (slots_[i].handle != nullptr && (count_leaving || !slots_[i].timer) &&
                pg_atomic_read_u32(&st_->slots[i].dboid) == dboid &&
                (count_leaving || pg_atomic_read_u32(&st_->slots[i].retire) == 0))
                n++;
        return n;
    }

    // Which databases to serve, what each is doing, where the workers should be; then start and retire workers.
    void place() {
        TimestampTz now = GetCurrentTimestamp();
        Database *found = static_cast<Database *>(palloc(sizeof(Database) * shared::kMaxDatabases));
        int nfound = find_databases(found, shared::kMaxDatabases, &warned_missing_);
        if (nfound == shared::kMaxDatabases && !warned_full_) {
            ereport(WARNING, (errmsg("pipeline_worker: serving at most %d databases", shared::kMaxDatabases)));
            warned_full_ = true;
        }
        // entries: one per database served; entries of databases no longer served are given back once empty
        bool wanted[shared::kMaxDatabases] = {};
        bool waits[shared::kMaxDatabases] = {};
        for (int i = 0; i < nfound; i++) {
            shared::DbState *d = shared::attach_db(found[i].oid);
            if (d == nullptr) continue;
            wanted[d - st_->dbs] = true;
            waits[d - st_->dbs] = found[i].waits;
        }
        int ndb = 0;
        int index[shared::kMaxDatabases];
        core::placement::Database input[shared::kMaxDatabases];
        for (int k = 0; k < shared::kMaxDatabases; k++) {
            if (pg_atomic_read_u32(&st_->dbs[k].dboid) == 0) continue;
            if (describe(k, now, wanted[k], waits[k], &input[ndb])) index[ndb++] = k;
        }
        apply(input, index, ndb, waits, now);
        for (int j = 0; j < ndb; j++)
            if (timer_due_[index[j]]) start_timer(index[j], waits[index[j]], now);
    }

    // Database entry k (in use): whether it is served, noting its workers' coming and going; if so (true), what it is
    // doing for core::placement (*out). Entries no longer served are given back once empty, or emptied.
    bool describe(int k, TimestampTz now, bool wanted_k, bool waits_k, core::placement::Database *out) {
        shared::DbState *d = &st_->dbs[k];
        Oid dboid = pg_atomic_read_u32(&d->dboid);
        DbNotes &n = notes_[k];
        int current = workers_here(dboid, false);
        if (current == 0) {
            if (n.served_since != 0 || n.unserved_since == 0) {
                n.lost_served_since = n.served_since;
                n.unserved_since = now;
            }
            n.served_since = 0;
        } else {
            // (Back within kTenureMs after a worker sent to look at a database left it for want of the extension --
            // the worker it lost went there, most likely: it keeps its tenure. Until 2026-12-07 its tenure began
            // again, and so did that of the busy database that had taken the other worker meanwhile; CREATE
            // EXTENSION in the new database a moment later found neither willing to yield for a second, and its
            // first run waited ~1 s, in CI's databases.sh.)
            if (n.served_since == 0)
                n.served_since = n.lost_served_since != 0 && probe_back_at_ >= n.unserved_since &&
                                         after(now, n.unserved_since, kTenureMs)
                                     ? n.lost_served_since
                                     : now;
            n.unserved_since = 0;
            n.lost_served_since = 0;
        }
        bool evicting = ts(&d->evict_until) > now;
        uint32 ext = pg_atomic_read_u32(&d->extension);
        if (ext == shared::kExtAbsent && waits_k) ext = shared::kExtUnknown;  // pipeline_worker.database: wait there
        if (ext == shared::kExtAbsent && !after(now, ts(&d->probed_at), kReprobeMs)) {
            pg_atomic_write_u32(&d->extension, shared::kExtUnknown);  // look again, now and then
            ext = shared::kExtUnknown;
        }
        bool serve = wanted_k && !evicting && ext != shared::kExtAbsent;
        if (!serve) {
            if (workers_here(dboid, true) == 0 && !wanted_k) {
                shared::detach_db(d);
                n = DbNotes{};
                return false;
            }
            retire(dboid, current);  // everything there leaves
            return false;
        }
        if (pg_atomic_read_u32(&d->wanted) != 0) n.busy_until = now + kBusyMs * 1000;  // until a worker claims there
        TimestampTz due = ts(&d->next_retry_due);
        // When runs there pass their retention (noted by the last worker to leave): a worker goes then, and
        // keeps the database active until its first round expired them (upkeep.cpp clears the note).
        TimestampTz expiry = ts(&d->expiry_due);
        // (Busy: its workers claimed in the last kBusyMs or execute a run now; one without workers is busy when
        // runs were committed there or its last worker left runs queued (wanted). Until 2026-12-03 a claim kept
        // a database busy for 2 s, workers or not: three databases each given one run at once on two workers
        // took turns for 2 s.)
        // (pipeline_worker.enabled = off: nothing is claimed, no timer fires, nothing expires -- queued runs, due
        // moments and retention do not make a database active, nor an idle one due for a visit. Until 2026-12-04
        // they did, for good (the workers, disabled, never take them): with more databases than workers, a worker
        // was moved every second.)
        // (Its transactions read-only by default: its workers write nothing -- no claim, sweep, timer or retention --
        // so none of that makes it active either, while their note lasts (worker/read_only.hpp).)
        bool read_only = ts(&d->read_only_until) > now;
        bool on = guc::enabled && !read_only;
        bool active = ext == shared::kExtUnknown || (on && n.busy_until > now) ||
                      (current > 0 && ((on && after(now, ts(&d->last_claim), kBusyMs)) || executing_in(dboid))) ||
                      (!read_only && pg_atomic_read_u32(&d->recovery_needed) != 0) || (on && due != 0 && due <= now) ||
                      (on && expiry != 0 && expiry <= now) || (on && current == 0 && shared::parent_wakes_waiting(d));
        // Idle without a worker for kVisitMs: due for a visit (its first worker sweeps and expires at once), from
        // a worker no busy database needs; for kStarveMs: it takes its turn among the busy ones too. Until
        // 2026-12-03 idle databases took turns every second instead -- a worker restarted every second on an
        // idle server, and a run committed in a database without one waited up to 3 s for the slot's restart.
        bool visit_due = on && current == 0 && n.unserved_since != 0 && !after(now, n.unserved_since, kVisitMs);
        if (on && current == 0 && n.unserved_since != 0 && !after(now, n.unserved_since, kStarveMs)) {
            // Its turn is noted as a retention moment due now: the database stays active until its worker's first
            // round clears it (upkeep.cpp). Until 2026-12-04 it went idle as soon as the worker started, and a busy
            // database waiting for that worker had it retired before its first round: the visit did nothing.
            active = true;
            if (expiry == 0 || expiry > now) {
                pg_atomic_write_u64(&d->expiry_due, static_cast<uint64>(now));
                expiry = now;
            }
        }
        if (on && current == 0 && n.unserved_since != 0 && !visit_due) {
            long ms = static_cast<long>((n.unserved_since - now) / 1000) + kVisitMs + 1;
            if (ms < timeout_) timeout_ = ms;
        }
        timer_due_[k] = false;
        if (on && current > 0 && due != 0 && all_executing(dboid)) {
            // Every worker there is inside a step: the timer's round (due runs, schedules) waits for one of them to
            // finish it. A due moment none took within kTimerLateMs is taken by a timer worker, started for that
            // round alone, beside pipeline_worker.workers. (Until 2026-12-07 a schedule fired late by up to the
            // length of the steps: 7 s with one worker and 8 s steps.)
            // (a round that keeps failing -- a schedule a trigger refuses, say -- is the workers' to retry between
            // their steps, once a second each; timer workers try it again 1 s, 2 s, 4 s ... kTimerFailedMs apart)
            long every = std::min(kTimerFailedMs, kTimerEveryMs << std::min(std::max(n.timer_failures - 1, 0), 5));
            TimestampTz at = std::max<TimestampTz>(due + kTimerLateMs * 1000,
                                                   n.timer_started == 0 ? 0 : n.timer_started + every * 1000);
            if (at <= now) {
                timer_due_[k] = !timer_in(dboid);  // (one under way: its exit wakes the launcher)
            } else {
                long ms = static_cast<long>((at - now) / 1000) + 1;
                if (ms < timeout_) timeout_ = ms;
            }
        }
        if (current == 0 && due > now) {  // nobody there to keep the timer: the launcher does
            long ms = static_cast<long>((due - now) / 1000) + 1;
            if (ms < timeout_) timeout_ = ms;
        }
        if (current == 0 && expiry > now) {  // ... nor retention
            long ms = static_cast<long>((expiry - now) / 1000) + 1;
            if (ms < timeout_) timeout_ = ms;
        }
        // Busy databases take turns (more of them than workers): one served longer than kTenureMs yields to one
        // without a worker, the one waiting longest first (until 2026-12-04 those waiting were equals, and the
        // first in the list won: a busy database whose worker had just left for another took it back at once,
        // and the other -- a third busy one, or one whose retention was due -- waited until the first drained).
        // Idle ones (dealt after every busy one has its worker) keep the workers they have, except that one due
        // for a visit goes before one served longer than kTenureMs.
        bool tenured = current > 0 && !after(now, n.served_since, kTenureMs);
        int rank = 0;
        if (active && current == 0) {
            // (in milliseconds: in tenths of a second, a busy database whose worker had just been moved to one
            // waiting for less than a tenth tied with it, and took its worker back by its place in the list; each
            // database served longer than kTenureMs in turn gave a worker up and took it back, and a database
            // created with the extension a moment before waited 1-2 s; acceptance walk-through, 2026-12-07)
            int64 waited_ms = std::max<int64>((now - n.unserved_since) / 1000, 0);  // (a clock set back: 0)
            rank = -static_cast<int>(std::min<int64>(waited_ms, kMaxWaitRank));
        } else if (active) {
            rank = tenured ? 2 + static_cast<int>(std::min<int64>((now - n.served_since) / USECS_PER_SEC, kMaxWaitRank))
                           : INT_MIN;
        } else {
            rank = current == 0 ? (visit_due ? 1 : 3) : tenured ? 2 : 0;
        }
        *out = core::placement::Database{active, current, rank};
        return true;
    }

    // Where the workers should be (core::placement), then make room (retire) and fill it (start).
    void apply(const core::placement::Database *input, const int *index, int ndb, const bool *waits, TimestampTz now) {
        int total = guc::workers < 0 ? 0 : (guc::workers > nslots_ ? nslots_ : guc::workers);
        int target[shared::kMaxDatabases];
        pg::CppError err = pg::cpp_call([&] {
            std::vector<int> t = core::placement::targets(std::vector<core::placement::Database>(input, input + ndb),
                                                          total, guc::max_workers_per_database);
            std::copy(t.begin(), t.end(), target);
        });
        pg::raise_if_failed(err, "placing the workers failed");
        // A busy database left without a worker gets one as soon as another stops being busy (its claims age past
        // kBusyMs, its run ends): look again soon rather than at the next second.
        for (int j = 0; j < ndb; j++)
            if (input[j].active && target[j] == 0 && timeout_ > 100) timeout_ = 100;
        // first make room (retire), then fill it (start)
        for (int j = 0; j < ndb; j++) {
            Oid dboid = pg_atomic_read_u32(&st_->dbs[index[j]].dboid);
            if (input[j].current > target[j]) retire(dboid, input[j].current - target[j]);
        }
        int occupied = 0;
        for (int i = 0; i < nslots_; i++) occupied += slots_[i].handle != nullptr && !slots_[i].timer;
        for (int j = 0; j < ndb && occupied < total; j++) {
            int k = index[j];
            if (notes_[k].hold_until > now) {
                timeout_ = 100;
                continue;
            }
            Database db{static_cast<Oid>(pg_atomic_read_u32(&st_->dbs[k].dboid)), waits[k]};
            for (int need = target[j] - input[j].current; need > 0 && occupied < total; need--) {
                if (!start_one(db, now)) break;
                occupied++;
            }
        }
    }

    // Asks n workers of the database to leave, idle ones first.
    void retire(Oid dboid, int n) {
        for (int pass = 0; pass < 2 && n > 0; pass++)
            for (int i = 0; i < nslots_ && n > 0; i++) {
                shared::Slot *s = &st_->slots[i];
                if (slots_[i].handle == nullptr || pg_atomic_read_u32(&s->dboid) != dboid ||
                    pg_atomic_read_u32(&s->retire) != 0)
                    continue;
                if (pass == 0 && pg_atomic_read_u32(&s->idle) == 0) continue;
                pg_atomic_write_u32(&s->retire, 1);
                if (s->latch != nullptr) SetLatch(s->latch);
                n--;
            }
    }

    // Starts a worker for db in the lowest free slot that may start now. False when none may.
    bool start_one(const Database &db, TimestampTz now, bool timer = false) {
        for (int i = 0; i < nslots_; i++) {
            if (slots_[i].handle != nullptr) continue;
            int old_pid = st_->slots[i].pid;  // a previous launcher's worker, stopping (see launcher_main)
            if (old_pid != 0 && kill(old_pid, 0) == 0) {
                timeout_ = 100;
                continue;
            }
            if (!slots_[i].asked_out && after(now, slots_[i].last_start, kRestartBackoffMs)) {  // (a crash loop)
                timeout_ = 100;
                continue;
            }
            TimestampTz last_start = slots_[i].last_start;
            slots_[i].last_start = now;
            // (a timer worker's slot reads as leaving: no wake-up nor run goes to it, and workers that leave do not
            // count it as staying)
            pg_atomic_write_u32(&st_->slots[i].retire, timer ? 1 : 0);
            pg_atomic_write_u32(&st_->slots[i].left_clean, 0);
            pg_atomic_write_u32(&st_->slots[i].timer_failed, 0);
            pg_atomic_write_u32(&st_->slots[i].dboid, db.oid);
            if (start_worker(i, db, timer, &slots_[i].handle)) {
                slots_[i].timer = timer;
                if (!timer) warned_no_slot_ = false;
                return true;
            }
            slots_[i].handle = nullptr;
            pg_atomic_write_u32(&st_->slots[i].dboid, 0);
            pg_atomic_write_u32(&st_->slots[i].retire, 0);
            // (No background worker slot: for a timer worker, the round waits for a worker, as before; for a worker,
            // while a timer worker holds the last one for a few milliseconds, its exit wakes the launcher. Neither
            // is a crash loop, nor worth a warning.)
            if (timer || timer_in(InvalidOid)) {
                slots_[i].last_start = last_start;
                if (!timer) timeout_ = 100;
                return false;
            }
            if (!warned_no_slot_)
                ereport(WARNING, (errmsg("pipeline_worker: could not start worker %d: no free background worker slot", i),
                                  errhint("Raise max_worker_processes (it must exceed pipeline_worker.workers plus other workers).")));
            warned_no_slot_ = true;
            timeout_ = 5000;
            return false;
        }
        return false;
    }

    // A timer worker for database entry k (see describe): one round of the timer, then it exits.
    void start_timer(int k, bool waits, TimestampTz now) {
        notes_[k].timer_started = now;
        Database db{static_cast<Oid>(pg_atomic_read_u32(&st_->dbs[k].dboid)), waits};
        (void)start_one(db, now, true);
    }

    shared::State *st_;
    int nslots_;
    LauncherSlot *slots_;
    MemoryContext iter_;
    DbNotes notes_[shared::kMaxDatabases] = {};
    bool timer_due_[shared::kMaxDatabases] = {};
    long timeout_ = 1000;
    TimestampTz probe_back_at_ = 0;  // when a worker last left a database for want of the extension
    bool warned_missing_ = false, warned_no_slot_ = false, warned_full_ = false;
    char list_seen_[1024] = "";
    char db_seen_[NAMEDATALEN] = "";
};

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
    if (!guc::enabled) shared::note_disabled();  // (started off: a time off, which its first 'on' ends)
    crashes::collect(st);  // before any worker starts (see crashes.hpp)
    // Workers of a previous launcher (it exited alone): this launcher has no handles for them. They are asked to
    // stop, and their slots are started again once they are gone -- never two workers on one slot.
    for (int i = 0; i < st->nslots; i++) {
        int pid = st->slots[i].pid;
        if (pid != 0 && pid != MyProcPid) (void)kill(pid, SIGTERM);
    }
    // Not a C++ object on the stack: ereport(FATAL) leaves through proc_exit, and the loop never returns.
    Launcher *launcher = new (MemoryContextAlloc(TopMemoryContext, sizeof(Launcher))) Launcher(st);
    launcher->run();
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
