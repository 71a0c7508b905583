// The database's upkeep, between claims: sweeps for runs whose claimer is gone, the metrics gauges, retention.
// Each call opens and commits its own transactions and leaves none open.
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// Puts runs of exited claimers back to pending when asked, and (periodic) every recovery_interval_ms.
void maybe_recover(TimestampTz *last_sweep, bool periodic);
// Counts the unfinished runs for metrics() (mine: this worker does it, the database's lead), every 5 s or less
// often, while metrics are being read.
void maybe_count(TimestampTz *last, bool mine);
// Deletes finished runs past their retention (mine: this worker does it, the database's lead), at most once a second.
void maybe_expire(TimestampTz *last, bool mine);
// The last retention round was skipped (a session held the roll-ups' lock): expired runs may be left now.
bool retention_skipped();
// VACUUMs runs and run_steps when they hold enough dead rows (mine: the database's lead), at most once per
// pipeline_worker.vacuum_interval_ms; autovacuum's passes come at most once per autovacuum_naptime.
void maybe_vacuum(TimestampTz *last, bool mine);

}  // namespace pw::worker
