// Shared memory of the extension (present only with shared_preload_libraries).
#pragma once

#include "pg/pg.hpp"


namespace pw {


namespace shared {

// Recent cancel requests (4,096: every run the workers can hold at once, with room), and counters of how many ring
// entries hash to each of kCancelFilter buckets: a zero answers "not cancelled" with one read (shmem/cancels.cpp).
constexpr int kCancelRing = 4096;
constexpr int kCancelFilter = 65536;
constexpr int kMaxDatabases = 64;  // databases served at once (pipeline_worker.databases)
constexpr int kParentWakes = 32;   // parents a session left to the workers to wake, per database, at once

struct Slot {
    pg_atomic_uint32 idle;     // 1 while waiting for work
    pg_atomic_uint64 run_id;   // run being executed, 0 if none
    pg_atomic_uint64 woken_at;  // when a wake-up last took it from idle (wake_workers_in): free_workers() counts it briefly
    pg_atomic_uint64 runs_done;
    pg_atomic_uint64 batches;  // claims that returned runs
    pg_atomic_uint32 dboid;    // database of the worker started on this slot (set by the launcher before it
                               // starts, cleared once it has exited): 0 when no worker is there or coming
    pg_atomic_uint32 retire;   // the launcher wants the slot elsewhere: finish the batch, then exit
    pg_atomic_uint32 left_clean;  // the worker left because the database has no extension (cleared at each start)
    pg_atomic_uint32 timer_failed;  // a timer worker's round failed (cleared at each start; the launcher backs off)
    int pid;                   // 0 when the slot is free
    Latch *latch;
};

// What the extension knows of one served database. Entries are taken and given back by the launcher only;
// everyone else finds theirs by database oid (nullptr: the database is not served).
enum : uint32 { kExtUnknown = 0, kExtPresent = 1, kExtAbsent = 2 };
// A parent run to wake once transaction xid (the session's that finished its child) has ended; InvalidTransactionId:
// at once.
struct ParentWake {
    int64 id;
    TransactionId xid;
};

struct DbState {
    pg_atomic_uint32 dboid;            // 0: a free entry
    pg_atomic_uint32 extension;        // kExt*: whether CREATE EXTENSION pipeline_worker was run there
    pg_atomic_uint32 extension_seq;    // bumped by each CREATE EXTENSION's commit there (see worker_main's
                                       // leave_database: a worker that looked just before must not mark it absent)
    pg_atomic_uint32 wanted;           // work may wait with no worker to see it (committed while none served the
                                       // database, or left by a worker that was moved): cleared by the next claim
    pg_atomic_uint32 recovery_needed;  // a worker of this database died: the next idle one sweeps at once
    pg_atomic_uint64 claim_hint;       // where hinted claims start: just past the highest queue key claimed, or lower
                                       // where runs were committed or put back behind it since (moved back)
    pg_atomic_uint64 claim_top;        // just past the highest queue key claimed (claim_hint without the moves back)
    slock_t hint_lock;                 // claim_hint's writes, and hint_lowerings: a move back and a claim's move up
                                       // are each one step (raise_claim_hint)
    uint64 hint_lowerings;             // times the hint was moved back (under hint_lock, with the move)
    uint64 queue_end;                  // (under hint_lock) no run past this queue key can be claimed, as far as a
                                       // claim that reached the end of the queue saw since: 0 not known
    TimestampTz queue_end_until;       // (under hint_lock) queue_end is trusted until then
    uint64 queue_additions;            // (under hint_lock) commits that made runs claimable (queue_extended) ...
    uint64 queue_forgets;              // ... of them at positions not said (the end is not known after them)
    uint64 added_upto[16];             // (under hint_lock) where the last 16 additions ended, by queue_additions % 16
    pg_atomic_uint64 head_walks_after; // a look behind the hint (worker::claim_batch) waits until then (TimestampTz)
    pg_atomic_uint64 next_retry_due;   // the timer: earliest due moment (TimestampTz), 0: none
    pg_atomic_uint64 timer_until;      // a worker's timer round runs, at the latest until then (begin_timer)
    pg_atomic_uint64 last_claim;       // when a claim last found runs (TimestampTz): the database is busy
    pg_atomic_uint64 evict_until;      // DROP / RENAME / TEMPLATE in progress: no worker enters before then
    pg_atomic_uint64 probed_at;        // when the extension was last found absent
    pg_atomic_uint64 read_only_until;  // its workers found its transactions read-only by default (worker/read_only):
                                       // nothing makes it active until then (TimestampTz; 5 min ahead, renewed while
                                       // they pause; 0 once a setting may have changed)
    pg_atomic_uint64 expiry_due;       // written by the last worker to leave: when its next finished run passes its
                                       // retention (TimestampTz), 0: none -- the launcher sends a worker then
    pg_atomic_uint32 reorders;         // transactions committing runs that may sit below the claim hint: between
                                       // their runs becoming visible and their hint reset, claims start lower
    slock_t reorder_lock;              // protects reorder_from, and reorders' changes
    uint64 reorder_from;               // the lowest queue position those transactions put runs at (0: unknown)
    pg_atomic_uint32 fresh_lanes;      // 1 from the entry's start until a worker put back the runs parked by a limit
                                       // in an earlier life of shared memory (lanes::take_fresh_start)
    pg_atomic_uint64 put_back_skip_until;  // until then put-backs skip locked rows without waiting (TimestampTz;
                                           // store/put_back.cpp: a user's transaction held a parked run's row)
    pg_atomic_uint32 wake_parked;      // 1: a wake parked runs as paused -- the lead worker's next look puts back those
                                       // of pipelines not paused (store::unpark_resumed)
    pg_atomic_uint64 cancel_records_seq;    // bumped when a transaction that recorded cancels of held runs commits
    pg_atomic_uint64 cancel_records_swept;  // cancel_records_seq when a sweep found no record left: claims look for
                                            // records (store/cancel_requests) while the two differ
    pg_atomic_uint32 unpark_wanted;    // 1: a slot freed (or runs were parked with room) in a lane that has parked
                                       // runs -- the next look (lanes::lanes_to_unpark) puts them back. Per database:
                                       // a worker puts back only its own database's runs
    // Parents whose row a session found held when it finished (or cancelled) their child: a worker of the database
    // wakes them once that session's transaction has ended (offer/take_parent_wakes). Under parent_wakes_lock.
    slock_t parent_wakes_lock;
    pg_atomic_uint32 nparent_wakes;  // (written under the lock; read without it for a quick look)
    ParentWake parent_wakes[kParentWakes];
};

struct State {
    int nslots;
    Latch *launcher_latch;
    pg_atomic_uint64 pipelines_generation;  // bumped when a transaction that changed pipelines commits
    pg_atomic_uint64 enabled_since;   // when a process first saw pipeline_worker.enabled turn on after disabled_since
    pg_atomic_uint64 disabled_since;  // ... and turn off after enabled_since (both 0: never off since the start)
    pg_atomic_uint32 cancel_next;
    pg_atomic_uint64 cancels[kCancelRing];  // recently cancelled runs (cancel_key: database and run id)
    pg_atomic_uint32 cancel_epoch;  // bumped after every change of the ring (a backend's last answer is valid until then)
    pg_atomic_uint32 cancel_counts[kCancelFilter];
    ConditionVariable run_done_cv;          // broadcast when a transaction that finished runs commits
    DbState dbs[kMaxDatabases];
    Slot slots[FLEXIBLE_ARRAY_MEMBER];
};

// A session (ordinary backend) executing a run with execute_run: one entry per backend (PGPROC number), so that
// cancel_run can find and interrupt it. signal_pending tells that backend's SIGINT handler that the signal came
// from cancel_run: honoured only while a step of a cancelled run executes, never as a stray cancel.
struct SessionExec {
    pg_atomic_uint64 run_id;  // run whose step is executing now, 0 if none
    pg_atomic_uint32 signal_pending;
    pg_atomic_uint32 dboid;   // the database of run_id (run ids are per database)
    int pid;
};

State *state();  // nullptr when the library was not preloaded
// The entry of database db (this backend's by default); nullptr when it is not served or without shared memory.
DbState *db(Oid dboid = InvalidOid);
// Launcher only: the entry of dboid, taken if needed (nullptr when all are taken); giving one back.
DbState *attach_db(Oid dboid);
void detach_db(DbState *d);
// Slots whose worker is in database dboid (started or starting).
int workers_in(Oid dboid);
// Workers serving dboid that were not asked to leave.
int staying_workers_in(Oid dboid);
// A session hands a parent run it could not wake (another transaction held its row) to the workers of this
// database, to be woken once transaction xid has ended: false when the database's list is full (or the database is
// not served), and the session must wake it itself. The workers take them all (up to kParentWakes) into *out.
bool offer_parent_wake(int64 id, TransactionId xid);
int take_parent_wakes(ParentWake *out);
// Whether parents handed over wait in the list (for the launcher: the database needs a worker).
bool parent_wakes_waiting(const DbState *d);
// Every worker of database dboid: asked to leave at its next batch boundary (retire), or terminated (SIGTERM).
void signal_workers_in(Oid dboid, bool terminate);
// The extension was created (or updated) in this database: serve it now (called at commit).
void note_extension_present();
// This backend may claim runs: record (pid, start time) in its PGPROC's entry, for claimer_alive().
void register_claimer();
// Whether the backend that claimed a run as (pid, started) is alive: read from the process array and the claimers'
// registry in shared memory, never from a statistics snapshot (a snapshot taken moments earlier once let a
// recovery sweep put a live worker's claim back). Without shared memory: pg_stat's view.
bool claimer_alive(int pid, TimestampTz started);
// This backend's entry (nullptr without shared memory, in background workers, or beyond MaxBackends).
SessionExec *my_session();
// The entry of the session executing a step of run_id now, nullptr if none.
SessionExec *session_executing(int64 run_id);
void install_hooks();

// Set the latches of up to n idle workers of this database (n <= 0: none); with no worker there, tell the
// launcher that the database wants one. Safe without shared memory.
int wake_workers(int n);
int wake_workers_in(Oid dboid, int n);  // (how many it woke)
void wake_launcher();
void broadcast_run_done();
void bump_pipelines_generation();
void note_retry_due(TimestampTz due);
// The timer is due (a delayed run, a schedule, a rate window): true for the one caller that takes it.
bool take_due();
bool is_due();  // (without taking it)
// Timer rounds that promote due runs, one at a time per database: true if the caller may run one now (end_timer
// after it; rounds that only put parked runs back need no lease). Two at once locked each other's runs: a run one
// promoted, the other's promote (FOR UPDATE SKIP LOCKED; the row re-checked, no longer due) kept locked until its
// commit -- the claims skipped it, and it waited for the next round that moved the claim hint, up to a second
// (test/scripts/timestamps.sh). Given back at the backend's exit; a worker that crashed in a round (shared memory
// is started again then) or whose round outlasts it holds it for kTimerLeaseUs at most -- well past the longest wait a
// round has by design, the put-back's second for a parked run another transaction holds (store/put_back.cpp). (At 1 s
// until 2026-12-05: a round that waited that second could lose its lease, and a second due round start alongside.)
constexpr int64 kTimerLeaseUs = 5 * USECS_PER_SEC;
bool begin_timer();
void end_timer();  // (nothing if this backend holds no lease)
// pipeline_worker.enabled turned off / on in this process's reload (worker/interrupts), or found on by a due timer
// round (worker/timer: a process that never saw it off). The first process to see each change notes its moment (one
// that takes its reload later does not move it on).
void note_disabled();
void note_enabled();
// The last time pipeline_worker.enabled was off, [*from, *until) (a server started with it off: from the launcher's
// start); false if it has not been off since the start, or is off now. Schedule slots due then, as those before
// the server's start, were missed "while down" ("catch_up").
bool timer_off_period(TimestampTz *from, TimestampTz *until);
bool timer_busy(TimestampTz now);
int idle_workers();  // of this database
// Workers of this database that could help with another run's steps soon: idle ones, and those a wake-up took from
// idle within the last kWokenFreeUs and executing no run yet (a commit's wake-up makes idle workers busy for a moment
// before they find nothing to claim and look at the task board).
int free_workers();
// Whether slot slot_no is the lowest-numbered worker of its database (it does the periodic chores).
bool leads_database(int slot_no);
// Milliseconds an idle worker may sleep, at most max_ms, so that it wakes when a retry becomes due.
long idle_timeout_ms(long max_ms);

}  // namespace shared
}  // namespace pw
