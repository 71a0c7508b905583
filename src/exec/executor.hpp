// Executing a claimed run: each function step in a subtransaction as the run's submitter, HTTP steps parked for
// the worker (or performed at once in a session), the outcome buffered for the commit.
#pragma once

#include "exec/http_call.hpp"
#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::exec {

enum class Outcome {
    Succeeded,
    Failed,
    Cancelled,
    RetryScheduled,  // a step failed with attempts left: the run is pending again
    Parked,          // stopped at an HTTP step (io->parked)
    Waiting,         // a sleep or an event wait: the run is waiting
};
// "succeeded", "failed", "cancelled", "pending" (retry scheduled), "http" (parked), "waiting".
const char *outcome_text(Outcome o);

// Called after each successful step but the last, with SPI disconnected; may flush, commit and start a new
// transaction (the worker's commit policy): true when it committed.
typedef bool (*BetweenSteps)(void *arg);

// Executes a run this backend claimed. Step rows and the run's outcome are buffered (store/writes.hpp):
// flush_writes() must run before the transaction commits. The caller holds a transaction with an active
// snapshot; runs in CurrentMemoryContext.
Outcome execute_claimed(const store::ClaimedRun *run, BetweenSteps between_steps, void *arg, HttpIO *io = nullptr);

}  // namespace pw::exec
