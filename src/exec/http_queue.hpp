// The process's HTTP requests, Postgres side: owns the libcurl client (src/http), keeps the calls in flight
// and turns answers into HttpCall fields. Postgres-style code; the client is reached through pg::cpp_call.
#pragma once

#include "exec/http_call.hpp"

namespace pw::httpq {

// (Re)reads pipeline_worker.http_* (start-up, SIGHUP). Creates the client on first use.
void configure();
// Requests this process may have in flight: http_max_in_flight, bounded by the open-file limit.
int capacity();
// Queued (to be sent after the commit that records their start) plus in flight.
int pending();
bool in_flight(int64 run_id);
// Marks flags[task] for the tasks of map step pos (0-based) of run_id whose request this process holds (queued, in
// flight, or answered and not recorded yet), for tasks < n. Returns how many.
int tasks_in_flight(int64 run_id, int pos, bool *flags, int n);
// Requests of run_id this process holds (queued, in flight, answered and not recorded).
int calls_of_run(int64 run_id);
// The same for the steps (not map tasks) of run_id: flags[pos] for positions < n.
int steps_in_flight(int64 run_id, bool *flags, int n);

// Worker: queue a parked call; send_queued() after the commit, discard_queued() if it rolled back.
void queue(exec::HttpCall *call);
void send_queued();
void discard_queued();

// Waiting: fd() is readable when sockets are ready; drive() at the latest after timeout_ms() (-1: none).
int fd();
long timeout_ms();
void drive();
// Calls whose run got a cancel request: abort them; they come back from take_answered() as cancelled.
void check_cancels();
extern volatile sig_atomic_t cancel_signalled;  // set by the worker's SIGINT handler
bool has_answered();
// Answered calls (palloc'd array in the current context); *n set to their number.
exec::HttpCall **take_answered(int *n, int max);
// Locks the runs of answered calls (store::lock_runs, in the current transaction) and sets each call's status. The
// calls whose run another transaction holds are not waited for: they go back, to be answered again 50 ms later
// (their runs still count as this process's); the others move to the front of calls and status, in order. Returns
// how many are left there.
int lock_answered(exec::HttpCall **calls, const char **status, int n);

// SQL path: performs the call now and waits for it (interruptible).
void call_sync(exec::HttpCall *call);

}  // namespace pw::httpq
