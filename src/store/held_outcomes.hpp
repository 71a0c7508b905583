// Outcomes of runs that ended while another transaction held their row: a user's cancel_run or SELECT ... FOR UPDATE
// of the run, not yet committed. A worker's run whose row lock a commit released (its claim shown running before it
// started, or its steps spanning a commit) has its outcome written by an UPDATE that would wait for that transaction
// -- the worker, and the rest of its batch, with it, for as long as the transaction lasts. Instead the outcome is set
// aside: everything else of the worker's transaction commits (the steps' rows and effects: the run stays running,
// its steps done, still this worker's), and a later transaction of the same worker records the outcome once the row
// is free -- unless the run is no longer this worker's then (the holder's cancel_run committed: it wrote the run
// cancelled itself). The run keeps its concurrency slots meanwhile; its HTTP answers still to come are recorded after
// the outcome, its batch's put-back after an error leaves it alone, and a retiring worker stays until it is recorded.
// Only succeeded and cancelled outcomes are set aside (see ended() in the .cpp). A worker that exits first (SIGTERM,
// a crash) leaves the run to recovery, which resumes it from its step history: a succeeded run runs no step again; a
// cancelled one whose cancel_run rolled back runs its interrupted step again.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// flush_writes, before the outcomes' UPDATE (SPI connected): the ended runs whose row lock was released and whose row
// another transaction holds now leave the transaction's outcomes for the set-aside list (kept if it commits).
void set_aside_held_outcomes();
// When the set-aside outcomes are to be tried again (0: none waiting).
TimestampTz held_outcomes_due();
// Whether the run's outcome is set aside (committed, not recorded yet) in this backend.
bool outcome_held(int64 run_id);
// In a transaction of the worker's own (SPI not connected): the set-aside outcomes whose rows are free now are
// buffered again -- written by that transaction's flush -- if their runs are still this backend's; dropped if not
// (at its commit). The others wait for the next try. Returns how many were buffered again.
int take_back_held_outcomes();
// Transaction end (module.cpp): what this transaction set aside is kept, what it took back is forgotten -- or, at
// an abort, the other way round.
void held_outcomes_at_end(bool committed);

}  // namespace pw::store
