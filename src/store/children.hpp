// Child runs of "pipeline" steps: who may start them, creating one, reading it back, waking its parent, and the
// descendants a cancel_run of the parent cancels.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// May `role` submit runs to `pipeline` (owned by `owner`): its owner's privileges, an admin, or a grantee. SPI
// connected.
bool may_submit(const char *pipeline, Oid owner, Oid role);

struct ChildPipeline {
    int64 id;
    Oid owner;
    bool paused;
};
// The pipeline a child run goes to, if `submitter` may submit to it; else NULL with *why set. SPI connected.
const ChildPipeline *child_pipeline(const char *pipeline, Oid submitter, const char **why);

// How many ancestors the run has (0 for a run nobody started from a "pipeline" step). SPI connected.
int run_depth(int64 run_id);

// A new pending child run of parent_id, as `submitter`; metadata is the parent's plus parent_run_id and
// parent_step. Wakes workers at commit. SPI connected.
int64 create_child_run(const char *pipeline, const ChildPipeline *p, Oid submitter, Jsonb *input, Jsonb *metadata,
                       int64 parent_id, const char *parent_step);

// Locks the parent's row before it looks at its children: a child finishing meanwhile either committed before (the
// look sees it) or waits for this transaction, and then finds the parent waiting and wakes it. SPI connected.
void lock_parent(int64 run_id);
// The child's status (NULL if it no longer exists), result and error, copied into dest, seen by a new snapshot.
// SPI connected.
const char *read_child(int64 child_id, Jsonb **result, char **error, MemoryContext dest);

// These runs, parents of runs that just finished, become pending if they wait: they look at their child again. SPI
// connected. A parent another transaction holds is not waited for: in a worker (defer_held_parents) it is handed to
// `defer`, for try_wake_held_parent after the commit; in a session, to the database's workers at its commit
// (notes::wake_parent_at_commit) -- waited for only when no worker serves the database, or too many were handed over.
void wake_parents(const int64 *parent_ids, int n);
void defer_held_parents(void (*defer)(int64 id));
// Wakes the parent if it waits, once its row is free, without waiting for it: false when another transaction still
// holds the row (try again later), true otherwise (woken, not waiting, or gone). SPI connected.
bool try_wake_held_parent(int64 id);

// Whether wake_parents hands a parent whose row is held elsewhere to the workers (in a worker, or in a session while
// workers serve the database) rather than waiting for the row.
bool parents_go_to_workers();
// The parent of child run_id (0: none, or the 0.1 schema): cancel_run wakes it once the child is cancelled. With
// lock, its row locked as a child's wake-up locks it: cancel_run where no worker serves the database takes it before
// the child's row (wake_parents would wait for it there, and a parent failing -- or cancelled -- in a session locks
// its own row, then waits for a waiting child's: the same order). SPI connected.
int64 parent_of(int64 child_id, bool lock);

// Unfinished descendants of run_id (children, their children, ...), deepest last; *n set. SPI connected.
int64 *unfinished_descendants(int64 run_id, int *n);

// Cancels the unfinished descendants of run_id (each asked to stop, as cancel_run does; error = why), closing the
// waits they were in. cancel_run of a run, and a run that failed (a graph's other branch may have a child under way:
// nobody would take its result). signal_at_commit: their executors are told when this transaction commits (a worker's
// flush, whose transaction may still roll back), else at once (cancel_run). wait_for_waiting false: a waiting child
// held elsewhere is recorded (store/cancel_requests) rather than waited for. SPI connected.
void cancel_descendants(int64 run_id, const char *why, bool signal_at_commit = false, bool wait_for_waiting = true);
// The lead worker, about once a second while records may exist (store/cancel_requests): the recorded runs no other
// transaction holds now are cancelled (with the runs they started since), those still held get their cancel request
// back in shared memory if it left it. 0.2 schema, in a READ COMMITTED transaction; connects SPI itself.
void cancel_recorded_runs();
// The waiting step rows (sleeps, event waits, children) of these cancelled runs (int8[]) end with them. SPI connected.
void close_waits(Datum run_ids);
// Waiting child steps of these runs whose child run succeeded: recorded succeeded, with the child's result (before a
// run that ends failed or cancelled closes its other rows). SPI connected.
void keep_succeeded_children(Datum run_ids);

}  // namespace pw::store
