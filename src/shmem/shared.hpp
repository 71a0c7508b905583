// Shared memory of the extension (present only with shared_preload_libraries).
#pragma once

#include "pg/pg.hpp"


namespace pw {


namespace shared {

constexpr int kCancelRing = 64;

struct Slot {
    pg_atomic_uint32 idle;     // 1 while waiting for work
    pg_atomic_uint64 run_id;   // run being executed, 0 if none
    pg_atomic_uint64 runs_done;
    pg_atomic_uint64 batches;  // claims that returned runs
    int pid;                   // 0 when the slot is free
    Latch *latch;
};

struct State {
    int nslots;
    Latch *launcher_latch;
    pg_atomic_uint32 recovery_needed;  // set when a worker died: the next idle worker sweeps at once
    pg_atomic_uint64 pipelines_generation;  // bumped when a transaction that changed pipelines commits
    pg_atomic_uint64 claim_hint;  // just past the highest run id claimed: where hinted claims start scanning
    pg_atomic_uint64 next_retry_due;   // earliest not_before of a scheduled retry (TimestampTz), 0: none
    pg_atomic_uint32 cancel_next;
    pg_atomic_uint64 cancels[kCancelRing];  // recently cancelled run ids
    ConditionVariable run_done_cv;          // broadcast when a transaction that finished runs commits
    Slot slots[FLEXIBLE_ARRAY_MEMBER];
};

// A session (ordinary backend) executing a run with execute_run: one entry per backend (PGPROC number), so that
// cancel_run can find and interrupt it. signal_pending tells that backend's SIGINT handler that the signal came
// from cancel_run: honoured only while a step of a cancelled run executes, never as a stray cancel.
struct SessionExec {
    pg_atomic_uint64 run_id;  // run whose step is executing now, 0 if none
    pg_atomic_uint32 signal_pending;
    int pid;
};

State *state();  // nullptr when the library was not preloaded
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

// Set the latches of up to n idle workers (n <= 0: none). Safe without shared memory.
void wake_workers(int n);
void broadcast_run_done();
void bump_pipelines_generation();
void note_retry_due(TimestampTz due);
// The timer is due (a delayed run, a schedule, a rate window): true for the one caller that takes it.
bool take_due();
// Moves the claim hint back to the start of priority level `priority` if it is past it (0 with priority 0:
// to the head of the queue). Keys as store::queue_key.
void lower_claim_hint(int priority);
void reset_claim_hint();  // the next claim starts at the head of the queue
int idle_workers();
// Milliseconds an idle worker may sleep, at most max_ms, so that it wakes when a retry becomes due.
long idle_timeout_ms(long max_ms);

}  // namespace shared
}  // namespace pw
