// A function map step's tasks in parallel across workers. The worker executing the run (the owner) puts the tasks no
// attempt was made of yet on the task board (shmem/task_board.hpp) when idle workers are there, wakes them, and
// takes chunks of the tasks itself like any helper; then it commits and waits -- no transaction open -- until every
// helper has left, reads the tasks' rows back and goes on (a task a helper failed, or that a helper that died had
// taken, is dealt with by the map step's own loop). A helper executes its chunks (attempt 1 each) in transactions
// of its own, each task in its subtransaction as the run's submitter like any function step, and commits a chunk
// only while the claim that shared it still holds (store::lock_if_claimed): a run recovered, released, cancelled
// or finished meanwhile rolls the chunk back, so that every task's effects commit once, with its row.
#pragma once

#include "exec/context.hpp"
#include "exec/executor.hpp"
#include "shmem/task_board.hpp"

namespace pw::exec {

// How one task's attempt went, as a map step's loop sees it.
enum class TaskEnd {
    Done,      // succeeded (recorded)
    Out,       // left for later: its request is out, or there is no room for one
    Deferred,  // failed with attempts left: tried again after the back-off
    Stop,      // the run stops here (the map step's outcome says how)
    Failed,    // (shared steps) failed for good here, recorded as its row only: no more chunks are handed out, the
               // steps other workers execute finish and are recorded, then the owner fails the run (read back)
};
typedef TaskEnd (*RunTask)(void *map, int task);

// ---------------------------------------------------------------- the owner (exec/map_step.cpp)

// Whether tasks [lo, hi) of step `step` are worth sharing now: a function map step, executed by a worker that can
// pause, at least two tasks, and an idle worker in the database.
bool worth_sharing(const store::Step *step, const HttpIO *io, int lo, int hi);

struct Shared {
    bool shared = false;     // the tasks were put on the board (else nothing happened: run them alone)
    bool stopped = false;    // run_task said Stop (the helpers' chunks roll back by their guard)
    int final_failure = -1;  // a task failed with no attempts left (its row says why): a helper's, or the owner's
                             // (run_task said Failed)
    int units = 0;           // (shared steps) every unit once the helpers left: those shared, then those they added
    int unit_pos[board::kUnits] = {}, unit_attempt[board::kUnits] = {};
};
// Shares tasks [lo, hi) of step pos, running chunks of them with run_task(map, i) until none is left, then waits
// for the helpers. claims: the owner's claim count (the helpers' guard). The transaction is committed and a new one
// begun when anything was shared (SPI connected again on return).
Shared share_tasks(RunState *r, int pos, int lo, int hi, int claims, HttpIO *io, void *arg, RunTask run_task,
                   void *map);

// Independent function steps of a graph (exec/executor.cpp): the same board, each step a unit (its position and
// attempt). Whether the ready steps are worth sharing: a worker that can pause, an idle worker, and steps not known
// to be fast (all but the longest would take this worker over kShareStepsUs, by the durations this process saw).
constexpr int64 kShareStepsUs = 5000;
bool worth_sharing_steps(const RunState *r, const int *positions, int k, const HttpIO *io);
// Whether function step pos is known here to take under kShareStepsUs (then what other branches started is not worth
// a commit before it: it goes out after the step, at the end of the walk).
bool known_fast_step(const RunState *r, int pos);
// Shares k steps (run_unit(units, u) runs unit u here); as share_tasks.
Shared share_steps(RunState *r, const int *positions, const int *attempts, int k, int claims, HttpIO *io, void *arg,
                   RunTask run_unit, void *units);
// A function step's attempt took `us` here (what worth_sharing_steps judges by).
void note_step_time(int64 pipeline_id, int pos, int64 us);

// ---------------------------------------------------------------- a helper (worker/helping.cpp)

struct Helping;  // what a helper knows of the run it helps: its state, the map's elements
// The run the ticket names, read as far as its tasks need (SPI connected, transaction open). nullptr: it cannot be
// helped (gone, claimed by someone else since, its pipeline changed).
Helping *start_helping(const board::Ticket &t, MemoryContext ctx);
// Shared steps, once the units handed out are all taken: a function step of the run that became ready meanwhile
// (every dependency succeeded or skipped, as committed now; never tried; no "if"), put up on the entry for this
// helper (board::add_unit) -- so that it starts now, not when the owner's own step has ended. Its unit's index (the
// ticket knows it now), -1: none. Transaction open, SPI connected; what it reads back lives in ctx.
int extend_help(Helping *h, board::Ticket *t, MemoryContext ctx);
// Executes tasks [from, to) (attempt 1 each) -- or, for shared steps, units [from, to) --, their rows buffered; stops early at a cancel or at a task failing for
// good (noted on the board). Returns how many ran; -1: the claim that shared them is over -- roll back.
int help_with(Helping *h, const board::Ticket &t, int from, int to, MemoryContext ctx);

}  // namespace pw::exec
