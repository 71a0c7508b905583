// The engine: claiming runs, executing their steps, recovering orphans. Postgres-style C++ (palloc'd data,
// no RAII across calls that may ereport). Callers hold a transaction with an active snapshot.
#pragma once

#include "pg/pg.hpp"

namespace pw::engine {

struct Step {
    char *name;
    char *function;  // schema-qualified name, NULL for HTTP steps
    Oid fn_oid;      // resolved lazily, re-resolved when the function was dropped and re-created
    bool is_http;
    int max_attempts;
    int retry_delay_ms;
    int timeout_ms;  // 0: none
};

struct Pipeline {
    char *name;
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

// Parses and validates a definition (pure C++ via the boundary); ERROR on invalid input.
// Function names are left as written. Result allocated in CurrentMemoryContext.
Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json);

// Pipeline `name` from the table (cached per backend while unchanged); NULL if it does not exist.
Pipeline *load_pipeline(const char *name);

// Claims up to max pending runs (FIFO, SKIP LOCKED) for this backend; submitter == InvalidOid claims any.
// Writes the ids (ascending) into ids and returns how many.
int claim_runs(int max, Oid submitter, int64 *ids);

// Executes a run this backend claimed; returns the status it ends in ("succeeded", "failed", "cancelled",
// or "pending" when a retry is scheduled). Each step runs in a subtransaction as the run's submitter.
// between_steps (may be NULL) is called after each successful step with SPI disconnected; it may commit
// and start a new transaction (the worker's commit policy). ERROR if this backend did not claim the run.
typedef void (*BetweenSteps)(void *arg);
const char *execute_run(int64 run_id, BetweenSteps between_steps, void *arg);

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

}  // namespace pw::engine
