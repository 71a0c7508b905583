// Counting the unfinished runs of this database by pipeline (pending, scheduled, running, waiting, the oldest
// pending), for metrics()' gauges: counted as the extension's owner (every pipeline, whatever the caller may see)
// and published in shared memory (shmem/metrics.hpp) with what counting cost.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// Counts now and publishes. Inside a transaction with a snapshot; SPI not connected.
void refresh_gauges();
// Whether a caller should count now rather than use the published gauges: counting is cheap (the last count found
// at most 10,000 unfinished runs) or the published ones are older than max_age_ms.
bool gauges_stale(long max_age_ms);

}  // namespace pw::store
