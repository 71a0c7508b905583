// Cancellation requests: run ids in a ring in shared memory, read by whoever executes the run (a worker between
// and inside steps, a session's SIGINT handler). A no-op without shared memory (library not preloaded).
#pragma once

#include "pg/pg.hpp"

namespace pw::shared {

void request_cancel(int64 run_id);
// from_handler: called in a signal handler (no use of this backend's last answer, which the handler could tear).
bool cancel_requested(int64 run_id, bool from_handler = false);
void clear_cancel(int64 run_id);
// Every request of the server (the extension is created or updated in a database: its run ids start again).
void forget_all_cancels();
// Interrupts whoever executes run_id now: the worker running it (SIGINT), a session executing one of its steps
// (a marked SIGINT), or -- the run may be waiting for an HTTP answer in a worker -- every worker, whose SIGINT
// handlers interrupt only a step of a run with a cancel request and check their requests in flight.
// broadcast: with no worker or session found executing it, every worker of the database is signalled (each checks
// whether it is executing the run); false: nothing is done then (the run has no executor to interrupt).
void interrupt_executor(int64 run_id, bool broadcast = true);

// A cancel_run that wrote 'cancelled' on the run's row itself: its request (made before, to stop an executor) is
// withdrawn if that write is rolled back -- the transaction or the subtransaction it was made in -- so the run, pending
// again, is not cancelled by the next one to execute it. Kept in this backend until the transaction ends.
void cancel_written(int64 run_id);
void cancels_at_commit();
void cancels_at_abort();
void cancels_at_subabort(SubTransactionId sub);

}  // namespace pw::shared
