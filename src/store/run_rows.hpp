// Reading and changing single runs outside the buffered writes: the run a session executes, the step history a
// resumed run continues from, locking runs whose HTTP answers came back, failing runs (internal errors, runs
// that crash their worker).
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::store {

// A run's row. SPI connected.
struct RunRecord {
    ClaimedRun run;      // as claim_runs would return it (claims: as stored)
    char *status;
    int worker_pid;      // 0 when NULL
    TimestampTz worker_started_at;  // 0 when NULL
};
// false if the run does not exist. Data copied into dest.
bool read_run(int64 run_id, RunRecord *out, MemoryContext dest);

// The recorded attempts of a run's steps, ordered by position and attempt. SPI connected.
struct StepRecord {
    int pos;  // 0-based
    int attempt;
    char *status;
    Jsonb *output;  // NULL when the column is NULL
    TimestampTz started;
    int task;  // a map task's index; -1 for the step's own row
};
// Returns how many (*out palloc'd in dest). steps_only: without map tasks' rows.
int read_step_history(int64 run_id, StepRecord **out, MemoryContext dest, bool steps_only = false);

// Locks the runs (FOR UPDATE, in id order) and returns, per id, its status -- "taken" when another backend
// claimed it since -- or NULL when it does not exist (strings in the caller's context). SPI not connected.
// skip_held: a run another transaction keeps locked is not waited for; its status is kRunHeld. claims (optional,
// per id): the claim the caller holds; a run claimed again since is "taken" too.
void lock_runs(const int64 *ids, int n, const char **status, bool skip_held = false, const int *claims = nullptr);
extern const char *const kRunHeld;

// Marks a claimed run failed with an internal error (the worker, when bookkeeping itself failed).
void fail_run(int64 run_id, const char *message);

// A run whose step made its worker end abnormally `ends` times fails (step row and run), unless somebody executes it
// right now; `faults` of them were faults of its own (the rest kills). Returns true if it was failed. SPI not
// connected; a transaction is open.
bool fail_crashed_run(int64 run_id, int position, int attempt, int ends, int faults);
// True if the run exists and is pending or running.
bool run_unfinished(int64 run_id);

}  // namespace pw::store
