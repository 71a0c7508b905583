// The rows a map step's tasks shared across workers need (exec/shared_tasks.cpp): a helper's guard that the run is
// still executed by the worker that shared it, the step rows a helper builds the tasks' context from, and the
// tasks' rows the owner reads back. SPI connected.
#pragma once

#include "pg/pg.hpp"
#include "store/run_rows.hpp"

namespace pw::store {

// Whether the run is still running under the claim (pid, start, claim count) that shared its tasks; lock: locked FOR
// SHARE if so, held until commit -- a recovery sweep, a release or an outcome of the run waits for this transaction,
// so that whoever executes the run next sees the tasks it committed. false: the claim is over (roll back).
bool lock_if_claimed(int64 run_id, int pid, TimestampTz started, int claims, bool lock = true);
// Before a commit in the middle of a run: ERROR 40001 unless the claim (of this backend, `claims` its count) still
// holds the run -- recorded (running, this backend's), held by this transaction without being recorded yet (pending,
// its count one below), or cancelled under it (the executor records the cancel). Locks the row FOR SHARE until the
// commit. SPI connected.
void require_claim_for_commit(int64 run_id, int claims);
// The owner, back from waiting for its helpers: ERROR 40001 unless the run is still this backend's claim.
void require_claimed(int64 run_id, int claims);


// The rows of tasks [lo, hi) of step pos (0-based), ordered by task and attempt; error set on failed rows.
struct TaskRecord {
    int task, attempt;
    char *status;
    Jsonb *output;
    char *error;
    TimestampTz started;
};
int read_task_rows(int64 run_id, int pos, int lo, int hi, TaskRecord **out, MemoryContext dest);
// The step rows (task NULL) of these positions (0-based); task is set to the row's position (0-based).
int read_step_attempts(int64 run_id, const int *positions, int k, TaskRecord **out, MemoryContext dest);

}  // namespace pw::store
