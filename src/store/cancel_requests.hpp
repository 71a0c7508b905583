// The durable word of a cancel that cascaded to a run another transaction held (pipeline_worker.cancel_requests).
// cancel_run of a parent -- or a parent failing -- cancels the unfinished descendants whose rows it can lock; a
// descendant held elsewhere (a worker executing it under its lazy claim, a session's lock) is told through shared
// memory (shmem/cancels), which a crash or an immediate stop forgets, and 4,096 newer requests push out. The cancel's
// transaction also records the run here. The lead worker (store::cancel_recorded_runs, about once a second) cancels
// the recorded runs no transaction holds any more and gives those still held their request back; a claim of a
// recorded run asks for its cancel again, so right after a restart it is cancelled before its first step instead of
// executed. Claims look only while the database may have records (shared::DbState::cancel_records_*), so a server that
// never cascaded to a held run pays nothing.
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::store {

// Whether claims in this database must look for records (cheap: two reads of shared memory).
bool cancel_records_possible();
// These runs are to be cancelled (held by another transaction when a cancel cascaded to them), with `error` as the
// cancel's error: recorded with this transaction -- rolled back, the record goes too. 0.2 schema, SPI connected.
void record_cancel_requests(const int64 *run_ids, int n, const char *error);
// The unfinished runs with a record: those this transaction locked now (FOR UPDATE SKIP LOCKED; with their status and
// their record's error) and those another transaction holds. Allocated in CurrentMemoryContext. 0.2 schema, SPI
// connected.
struct RecordedRun {
    int64 id;
    bool running;
    const char *error;
};
int lock_recorded_runs(RecordedRun **locked, int64 **held, int *nheld);
// The records of these runs go: cancelled now -- or retried (retry_run: a record met or outrun before must not cancel
// the retried run at its claim). 0.2 schema, SPI connected.
void drop_cancel_requests(const int64 *run_ids, int n);
// Of these runs just claimed, those with a record get a cancel request: their executor cancels them before their
// first step. Only while the database may have records. 0.2 schema, SPI connected.
void apply_cancel_requests(const ClaimedRun *runs, int n);
// Whether the lead worker's sweep is due: records may exist, or the last sweep was a minute ago.
bool cancel_sweep_due();
// The lead worker, after store::cancel_recorded_runs: records of finished or deleted runs go; with none left, claims
// stop looking until the next record. 0.2 schema, in a READ COMMITTED transaction (each statement's snapshot taken
// after the look at the sequence); connects SPI itself.
void sweep_cancel_requests();

}  // namespace pw::store
