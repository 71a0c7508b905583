// Runs that crash their worker. A step that kills its server process (a segfault in a C function, the
// out-of-memory killer) makes PostgreSQL restart every process; the run, never finished, would be claimed again
// and crash the server again, forever. Each worker therefore keeps, in a small file mapping under the data
// directory (pipeline_worker/slot_N), the run/step/attempt it is executing: stores to the mapping survive the
// process. After a restart the launcher -- before it starts any worker -- counts the runs named there
// (pipeline_worker/crashes_DB_RUN), and the workers, before their first claim, fail a run that ended its worker
// abnormally in a row at the same place (step, attempt, map task): kMaxCrashes times by a fault of its own (a
// signal such as SIGSEGV, SIGBUS or SIGABRT, which the worker's handler notes in the marker before it dies), or
// kMaxKills times in all (SIGKILL cannot be caught: an operator's kill or the out-of-memory killer's). Until
// 2026-12-07 three SIGKILLs of the worker executing a run failed it, although the durable-execution contract says a
// run whose worker is killed is completed (acceptance walk-through). A crash somewhere else starts the count again,
// so that kills of the workers sharing a map's tasks -- each in another task -- do not add up to a crashing run
// (until 2026-12-05 any three did). A worker's own clean exit (SIGTERM, FATAL) clears its marker: only crashes count.
#pragma once

#include "pg/pg.hpp"
#include "shmem/shared.hpp"

namespace pw::worker::crashes {

constexpr int kMaxCrashes = 3;  // faults of the worker's own (a signal it caught)
constexpr int kMaxKills = 10;   // abnormal ends of any kind, SIGKILL included

// What a worker is executing, in a file mapping that outlives the process: run_id is written last when set and
// cleared first.
struct CrashMarker {
    uint64 magic;
    Oid database;
    int32 position;  // 1-based
    int32 attempt;
    int32 task;      // a map task's index + 1; 0: the step itself
    int64 run_id;    // 0: not inside a step
    int32 fault;     // the signal of a fault the worker caught while inside the step (SIGSEGV, ...); 0: none
    int32 unused;
};

// Launcher, at its start: count the markers of slots with no live worker, and clear them.
void collect(shared::State *st);
// Worker, at its start: map its marker and clear it at every exit but its own crash --
// including SIGQUIT, which the postmaster sends to all the others when one process crashed (and on an immediate
// stop): they were not the cause.
void attach(int slot_no);
// Worker, before its first claim (in no transaction): fail the runs that reached kMaxCrashes (unless somebody holds
// or executes them: they are failed at a later start), forget the counts of runs that are finished. ERROR on
// failure (call again later).
void settle();
// Worker, around each step function call (the executor's hooks): the step being executed / none.
void mark(int64 run_id, int position, int attempt, int task);
void unmark();

}  // namespace pw::worker::crashes
