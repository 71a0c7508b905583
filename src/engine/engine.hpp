// The engine: claiming runs, executing their steps, recovering orphans. Postgres-style C++ (palloc'd data,
// no RAII across calls that may ereport). Callers hold a transaction with an active snapshot.
#pragma once

#include "pg/pg.hpp"
#include "worker/shared.hpp"

namespace pw::engine {

struct Step {
    char *name;
    char *function;  // schema-qualified name, NULL for HTTP steps
    Oid fn_oid;      // resolved lazily, re-resolved when the function was dropped and re-created
    bool is_http;
    int max_attempts;
    int retry_delay_ms;
    int timeout_ms;  // 0: none
    // HTTP steps
    char *url;
    const char *method;
    int nheaders;
    char **header_names;
    char **header_values;  // secret values are filled in from pipeline_secrets by load_pipeline
    bool *header_secret;
    bool follow_redirects;
};

struct Pipeline {
    char *name;
    int64 id;
    Oid owner;
    int nsteps;
    Step *steps;
};

// Prepares sql once (kept in *cache) and executes it, as the tables' owner or as the current user
// (row-level security applies). SPI must be connected. Returns the SPI result code.
int run_as_owner(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                 bool read_only);
int run_as_caller(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                  bool read_only);

// Owner of the extension's tables: bookkeeping writes run as this role.
Oid tables_owner();

// What a worker is executing, in a file mapping that outlives the process (worker/crashes.cpp): set around each
// function step in a worker, NULL in sessions. run_id is written last when set and cleared first.
struct CrashMarker {
    uint64 magic;
    Oid database;
    int32 position;  // 1-based
    int32 attempt;
    int32 pad;
    int64 run_id;    // 0: not inside a step
};
extern volatile CrashMarker *crash_marker;
// True in this extension's workers (not in sessions, nor in other extensions' background workers).
extern bool in_pw_worker;
// A session (not a worker) is about to execute a step of run_id: registers it for cancel_run (and installs the
// session's guarded SIGINT handler once). Returns the entry to clear after the step, nullptr if unavailable.
shared::SessionExec *session_step_begin(int64 run_id);

// A run whose step made its worker end abnormally `crashes` times fails (step row and run), unless somebody
// executes it right now. Returns true if it was failed. SPI not connected; a transaction is open.
bool fail_crashed_run(int64 run_id, int position, int attempt, int crashes);
// True if the run exists and is pending or running.
bool run_unfinished(int64 run_id);

// Parses and validates a definition (pure C++ via the boundary); ERROR on invalid input.
// Function names are left as written. Result allocated in CurrentMemoryContext.
Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json);

// Pipeline `name` from the table (cached per backend while unchanged); NULL if it does not exist.
Pipeline *load_pipeline(const char *name);

// A claimed run, as returned by claim_runs.
struct ClaimedRun {
    int64 id;
    char *pipeline;
    int64 pipeline_id;
    Oid submitter;
    Jsonb *input;
    Jsonb *metadata;
    int claims;  // how often it was claimed, this claim included (> 1: it has history to resume from)
    TimestampTz claimed_at;
    bool persisted;  // the claim is recorded on the row (status running, worker_pid, ...)
};

// Claims up to max pending runs (FIFO, SKIP LOCKED) for this backend; submitter == InvalidOid claims any.
// Fills out[] (ascending ids, data copied into dest) and returns how many.
// mark_running: record the claim on the rows at once (claim_run()). Otherwise (the workers) the rows are only
// locked: a run that finishes in this transaction is written once, with its claim; one that is still
// unfinished when the transaction commits must be recorded with persist_claim() before that commit.
// Only runs with min_id <= id < below_id (the workers' claim hint; see worker.cpp). SKIP LOCKED does not skip
// rows this transaction already locked: two claims in one transaction must use disjoint ranges.
int claim_runs(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_id = 0,
               int64 below_id = PG_INT64_MAX);
void persist_claim(ClaimedRun *run);

// A run waiting for the answer of an HTTP step. The worker sends the request only after the commit that
// recorded the step's start, with no transaction open, and continues the run with the answer in a new one.
// Everything lives in ctx (deleted with free_http_call).
struct HttpCall {
    MemoryContext ctx;
    ClaimedRun run;  // deep copy
    int pos;         // 0-based position of the HTTP step
    char *step_name;
    int attempt;
    TimestampTz started;
    Jsonb **outputs;  // outputs of the steps before pos
    // the request
    char *url;
    const char *method;
    int nheaders;
    char **headers;  // "Name: value", Pipeline-Run-Id and Idempotency-Key included
    bool *header_secret;  // per header: a secret_headers value (not sent to another host after a redirect)
    char *body;      // NULL for GET/DELETE
    int body_len;
    int timeout_ms;
    bool follow_redirects;
    // the answer
    bool answered;
    bool ok;         // 2xx: resp is the step output
    bool cancelled;  // cancel_run while in flight
    char *resp;
    size_t resp_len;
    char *error;
    bool retryable;
    long retry_after_ms;
};

void free_http_call(HttpCall *call);

// How execute_claimed treats HTTP steps. Without it (SQL path: execute_run in a session) they are performed
// synchronously, inside the caller's transaction.
struct HttpIO {
    HttpCall *resume = nullptr;              // in: continue this parked run with its answer
    MemoryContext park_parent = nullptr;     // in: parent of a parked call's context
    HttpCall *parked = nullptr;              // out: the run stopped at an HTTP step (status "http")
};

// Of the runs of these answered calls, which are still claimed by this backend? Locks those rows (FOR UPDATE)
// and returns, per call, its run's status, or NULL if it does not exist.
void lock_http_runs(HttpCall **calls, int n, const char **status);

// A call whose run was cancelled while its request was in flight: record the attempt as failed.
void record_cancelled_call(HttpCall *call);

// Executes a run this backend claimed, each step in a subtransaction as the run's submitter. Returns the
// status it ends in ("succeeded", "failed", "cancelled", "pending" when a retry is scheduled, or "http"
// when it stopped at an HTTP step: io->parked).
// Step rows and the run's result are buffered: flush_writes() writes them, and must run before the
// transaction commits. between_steps (may be NULL) is called after each successful step with SPI
// disconnected; it may flush, commit and start a new transaction (the worker's commit policy).
typedef void (*BetweenSteps)(void *arg);
const char *execute_claimed(const ClaimedRun *run, BetweenSteps between_steps, void *arg, HttpIO *io = nullptr);

// SQL path: checks that this backend claimed run_id, executes it and flushes. ERROR if not claimed here.
const char *execute_run(int64 run_id);

void flush_writes();
void reset_writes();  // drop buffered writes (after an abort)

// Back to pending: runs of this backend's batch that an error left claimed but unfinished.
void release_runs(const int64 *ids, int n);

// Subtransactions started in the current transaction (the worker commits before there are 64).
extern int subxacts_in_xact;

// Marks a claimed run failed with an internal error (used by the worker when bookkeeping itself failed).
void fail_run(int64 run_id, const char *message);

// Puts runs whose claiming backend no longer exists back to pending; returns how many.
int64 recover_runs();

// Cancellation requests (shared memory; a no-op without it).
void request_cancel(int64 run_id);
bool cancel_requested(int64 run_id);
void clear_cancel(int64 run_id);

// Set by the engine while a step function runs; the worker's SIGTERM handler turns a step's
// pg_terminate_backend(pg_backend_pid()) into an error of that step instead of a crash loop.
extern volatile sig_atomic_t in_step_call;
extern volatile sig_atomic_t step_self_terminated;

// Counters for the commit callback: runs created / finished in this transaction.
extern int xact_runs_created;
extern bool xact_runs_finished;
extern bool xact_pipelines_changed;  // create/drop_pipeline: invalidate every backend's cache at commit

}  // namespace pw::engine
