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

// pipeline_stats' roll-ups (0.2 schema): counts the finished runs of the minutes no open transaction can still add
// one to (each minute once, within the last hour) into finished_minutes. Runs in its own transaction. Returns how
// many minutes it sealed.
int seal_finished_minutes();
// A run finished at `finished_at` (SQL) is deleted or reopened: its minute and later ones are counted again. SPI
// connected; the caller's transaction.
void unseal_from(Datum finished_at);

}  // namespace pw::store
