// Which runs a worker claims next: from the hint the workers share (just past the highest run claimed) or from the
// head of the queue, and the hint moved past what was claimed.
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::worker {

// A run's place in the queue: its id under the 0.1 schema, its queue key (priority, id) under 0.2.
int64 queue_position(const store::ClaimedRun &r, int version);

// Claims up to `batch` runs in this transaction (SPI connected), in queue order; *version_out: the schema version
// they were claimed under. Returns how many.
int claim_batch(int batch, store::ClaimedRun *runs, MemoryContext ctx, int *version_out);

// The runs whose claims hold a place in a rate window go first among the batch's runs of their priority: the place is
// held until the run begins, and behind a slow run of the batch it would be held that long, the window idle. (Until
// 2026-12-07, a run at 1 per 500 ms waited 2 s behind a 2 s run claimed with it while a worker sat idle.) The batch is
// no longer in queue order after that.
void rate_places_first(store::ClaimedRun *runs, int n);

}  // namespace pw::worker
