// A worker's work, one iteration at a time: claim a batch and execute it under the commit policy, record the
// answers of HTTP steps and continue their runs (the upkeep between claims: upkeep.hpp). Each call opens and
// commits its own transactions and leaves none open.
#pragma once

#include "pg/pg.hpp"
#include "shmem/shared.hpp"

namespace pw::worker {

// This worker's slot in shared memory (set by worker_main before serving).
extern shared::Slot *my_slot;

// Set when the worker is leaving: serve_once claims nothing more (answers of HTTP calls in flight still land).
extern bool claims_stopped;

// Whether this worker would take the database's due moment now (serve_once): not when disabled, leaving, or put off
// after a failed timer round. One that would not must not wake for it: it would wake again at once, and spin.
bool takes_due_moment();

// Whether CREATE EXTENSION pipeline_worker has been run in this database (a short transaction).
bool extension_ready();
// Whether runs are queued in this database now, and (*expiry) when its next finished run passes its retention (0:
// none) -- a short transaction; false and 0 when that fails, reported.
bool runs_queued(TimestampTz *expiry);
// A transaction of the worker's own (now() and pg_stat_activity: its start; an active snapshot; READ COMMITTED
// whatever the database's default when read_committed), and its commit (buffered writes flushed, requests parked in
// it sent, statistics reported).
void begin_work_txn(bool read_committed = false);
void commit_work_txn();
// In the PG_CATCH of a transaction of the worker's own (any of them): back to memory context ctx, the error
// reported and cleared, the transaction rolled back. The worker goes on.
void abort_work_txn(MemoryContext ctx);
// Claims a batch and executes it. Returns the number of runs claimed.
int serve_once(MemoryContext iter_ctx);
// Records answered HTTP calls and continues their runs. Returns the number of answers handled.
int serve_answers(MemoryContext iter_ctx);

}  // namespace pw::worker
