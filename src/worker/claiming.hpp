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

}  // namespace pw::worker
