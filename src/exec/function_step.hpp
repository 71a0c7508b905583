// One attempt of a function step: resolved, called in a subtransaction as the run's submitter under a
// security-restricted operation, with the step's timeout; its failure described and classified.
#pragma once

#include "exec/context.hpp"
#include "pg/pg.hpp"

namespace pw::exec {

// Runs attempt `attempt` of step `pos`. On success returns the output (copied into run_ctx; JSON null for SQL
// NULL) and leaves *edata NULL; on failure returns NULL with *edata (in run_ctx). The subtransaction's effects
// are kept (released into the current transaction) only on success. Re-raises a server shutdown. SPI connected.
Jsonb *run_function_step(const RunState *r, int pos, int attempt, MemoryContext run_ctx, ResourceOwner run_owner,
                         ErrorData **edata);

// The error message of a failed function step, and whether it may be retried (timeouts, a step terminating its
// own worker and unsupported features are told apart). Call it once after every failed function step: it
// consumes the flags that tell.
const char *function_step_error(const store::Step *step, ErrorData *edata, bool *retryable);

// Subtransactions the steps started in the current transaction (the worker commits before there are 64).
int subxacts_in_xact();
void reset_subxacts();

}  // namespace pw::exec
