// Step rows, run outcomes and claims, buffered and written with one statement each just before the transaction
// commits (flush_writes). They still commit atomically with the steps' effects: every step's subtransaction is
// released into the same top-level transaction.
#pragma once

#include "core/status.hpp"
#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::store {

// The attempt of step `pos` (0-based) of run_id ended (or, status running, an HTTP request is about to leave).
// upsert: the attempt's row may exist already (HTTP steps, waits). task: a map task's index (-1: the step itself).
void buffer_step(int64 run_id, int pos, int attempt, const char *name, core::StepStatus status, Jsonb *output,
                 const char *error, TimestampTz started, bool upsert = false, int task = -1);
// The same for an attempt whose run moved on while it was out (an HTTP answer, or its cancellation, recorded after
// the run failed or was cancelled): its row is written only if absent or still the row of this issuance (same
// started_at). After a retry_run and a new claim the same attempt may have been issued again; that newer row wins.
void buffer_late_step(int64 run_id, int pos, int attempt, const char *name, core::StepStatus status, Jsonb *output,
                      const char *error, TimestampTz started, int task = -1);
// The run's outcome: succeeded, failed or cancelled, or pending again for a retry after delay_ms.
void buffer_run(const ClaimedRun *run, core::RunStatus status, Jsonb *result, const char *error, int delay_ms = 0);
// The run waits (a sleep or an event wait): no worker, no slot, until wake_at (0: none) or, if event is not NULL,
// until send_event() sends that event.
void buffer_wait(const ClaimedRun *run, TimestampTz wake_at, const char *event);
// Records the claim of a run that stays unfinished past this transaction's commit (status running).
void persist_claim(ClaimedRun *run);

// Writes everything buffered (SPI not connected); must run before the transaction commits.
void flush_writes();
// Drops the buffer (after an abort).
void reset_writes();

}  // namespace pw::store
