// A worker's claim of queued runs without a statement: the claim statement's index scan of runs_ready_idx and its
// FOR UPDATE SKIP LOCKED, done with the index and table access methods (as the statement's executor does, without
// its plan start-up, its expressions, its projection and the tuple formed per row for SPI). Same answer, same
// snapshot rules, same locks; only for the plain case -- no lanes filtered, READ COMMITTED, not read-only -- and
// only where the statement would do nothing more: the run table is a plain table, the tables' owner may read and
// lock it, no row-level security applies to it, and runs_ready_idx is the index the schema defines. Otherwise the
// caller runs its statement.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// One claimed row: the claim statement's 12 columns in its order (id, pipeline, submitted_by, input, metadata,
// claims + 1, pipeline_id, priority, concurrency_key IS NOT NULL, hashtextextended(concurrency_key, 0),
// hashtextextended(concurrency_key, pipeline_id), ctid), in CurrentMemoryContext.
struct ClaimRow {
    Datum v[12];
    bool isnull[12];
};

// Claims up to max pending runs in [min_key, below_key) of the queue (store/queue.hpp's keys), locked FOR UPDATE,
// skipping rows other transactions hold; in queue order. -1: not taken this way (see above), the caller runs the
// statement.
int direct_claim(int max, Oid submitter, int64 min_key, int64 below_key, ClaimRow *rows);

}  // namespace pw::store
