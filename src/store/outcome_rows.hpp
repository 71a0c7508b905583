// The buffered outcome of a run (writes.cpp), shared with held_outcomes.cpp. Internal to src/store.
#pragma once

#include "core/status.hpp"
#include "pg/pg.hpp"

namespace pw::store {

struct RunRow {
    int64 id;
    char *pipeline;
    int claims;
    TimestampTz claimed_at;
    core::RunStatus status;
    Jsonb *result;
    char *error;
    TimestampTz at;
    TimestampTz wake_at;  // not_before: a retry's back-off, a waiting run's wake-up (0: none)
    char *waiting_for;
    ItemPointerData tid;  // the row version its claim locked, if unchanged since (else invalid: found by id)
    bool lock_released;   // a commit since the claim released the run's row lock (a worker's run): the run ends, and
                          // another transaction may hold the row -- see held_outcomes.hpp
};

// writes.cpp's buffers of the current transaction: outcomes, and those of runs that end failed or cancelled (their
// open step rows are closed); allocated in writes_context().
List **pending_run_rows();
List **pending_close_rows();
MemoryContext writes_context();

}  // namespace pw::store
