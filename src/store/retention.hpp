// Retention: finished runs (succeeded, failed, cancelled) older than their pipeline's "retention" option, else
// pipeline_worker.retention, are deleted with their step rows -- by each database's lead worker in the background, in batches.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// Deletes up to max expired runs (oldest first) in the current transaction; returns how many it found (deleted, or
// left because another transaction held them: max means "look again now"), or -1 when another transaction holds
// the roll-ups' lock (the round is skipped, not waited for). SPI not connected.
int64 delete_expired_runs(int max);
// When the next finished run passes its retention (a moment after now), 0 when none will (nothing finished, or kept
// forever). In a transaction with a snapshot; SPI not connected. (Told to the launcher by the last worker leaving a
// database: it sends a worker back then.)
TimestampTz next_expiry();
// After a round that failed: the next one starts every range from its beginning (see retention.cpp).
void forget_expire_cursors();

// purge_runs: up to max finished runs older than older_than_us, of `pipeline` (NULL: any), whose pipeline owner the
// caller has the privileges of (all: admins). Returns how many. SPI not connected.
int64 purge_finished_runs(int64 older_than_us, const char *pipeline, bool all, int max);

}  // namespace pw::store
