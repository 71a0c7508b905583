// A run being executed (its pipeline, outputs so far) and the context object each step receives:
// {run_id, pipeline, step, position, attempt, input, metadata, prev, results}.
#pragma once

#include "pg/pg.hpp"
#include "store/pipelines.hpp"
#include "store/run_rows.hpp"

namespace pw::exec {

struct RunState {
    int64 id;
    char *pipeline_name;
    Oid submitter;
    Jsonb *input;
    Jsonb *metadata;
    store::Pipeline *pipeline;
    Jsonb **outputs;    // per position (0-based); valid where done
    bool *done;         // per position: succeeded or skipped
    int *last_attempt;  // per position: highest attempt recorded
    bool *interrupted;  // per position: an HTTP attempt whose row is still running (re-sent as the same attempt)
    TimestampTz *waiting_since;  // per position: a sleep, event wait or child run under way since then (row: waiting)
    Jsonb **waiting_note;        // per position: that row's output ({"child_run_id": ...} for a child run)
    // A map step's task being executed: its index (-1: none) and element; its context gains "item" and "index".
    int task;
    Jsonb *item;
    // Steps waiting in this execution (several branches may): the run waits until the earliest wake-up, or an event.
    bool waits;
    // Child runs started in this transaction (they become claimable at its commit), and whether the run committed
    // after a step noted its wait: the run then goes back to the queue rather than waiting (a wake-up -- an event, a
    // child's finish -- may have come while it was still running, and would be lost), and looks again.
    bool started_children;
    bool committed_after_wait;
    // The longest back-off of the map tasks the last map step looked at left for later (-1: none): the run's retry,
    // or in a graph the walk's, waits for it (exec/retry_holds.hpp).
    long map_retry_ms;
    TimestampTz wait_until;  // earliest wake-up (0: none, only an event)
    const char *wait_event;  // the event waited for; "*" when several steps wait for different ones
    // The run's step history when it was read (runs claimed before): a map step finds its tasks' rows here.
    store::StepRecord *history;
    int nhistory;
};

// How one attempt of a step ended.
struct StepResult {
    Jsonb *output = nullptr;       // succeeded (JSON null for SQL NULL)
    ErrorData *edata = nullptr;    // a function step failed
    const char *error = nullptr;   // an HTTP step failed ("cancelled": its run was cancelled in flight)
    bool retryable = false;        // (HTTP)
    long retry_after_ms = 0;       // (HTTP) Retry-After
    bool parked = false;           // an HTTP request will be sent after the commit (worker)
    bool waiting = false;          // a sleep, event wait or child run goes on (noted in RunState::waits)
    bool succeeded() const { return edata == nullptr && error == nullptr && !parked && !waiting; }
};

// A run's state before its first step (nothing done yet), in run_ctx.
RunState *new_run_state(const store::ClaimedRun *claimed, store::Pipeline *p, MemoryContext run_ctx);

Jsonb *build_context(const RunState *r, int pos, int attempt);
// A step waits until wake_at (0: none) or `event` (NULL: none): noted for the run's outcome.
void note_wait(RunState *r, TimestampTz wake_at, const char *event);
// The step's "prev": the run's input for a root, its dependency's output, or {name: output} of its dependencies.
Jsonb *step_prev(const RunState *r, int pos);
// The run's result: the output of the one step nothing depends on, or {name: output} of several.
Jsonb *run_result(const RunState *r);
Jsonb *json_null();
// A JSON array of the given values (NULL: JSON null).
Jsonb *json_array(Jsonb *const *items, int n);

}  // namespace pw::exec
