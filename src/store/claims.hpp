// Claiming runs (FIFO, SKIP LOCKED) and giving them back: release, recovery of runs whose claimer is gone.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// A claimed run, as returned by claim_runs.
struct ClaimedRun {
    int64 id;
    char *pipeline;
    int64 pipeline_id;
    int priority = 0;  // (0.1 schema: always 0)
    Oid submitter;
    Jsonb *input;
    Jsonb *metadata;
    int claims;  // how often it was claimed, this claim included (> 1: it has history to resume from)
    TimestampTz claimed_at;  // its started_at; 0: put back before it began (the row's started_at stays)
    bool persisted;  // the claim is recorded on the row (status running, worker_pid, ...)
    // The row version the claim locked (0.2 workers' claims; invalid otherwise): the outcome's UPDATE finds the row
    // by it, without a probe of runs_pkey -- checking the id, and by id after all if this transaction changed the row.
    ItemPointerData tid = {};
};

// Claims up to max pending runs (0.2: by priority, then FIFO; 0.1: FIFO; SKIP LOCKED) for this backend; submitter == InvalidOid claims any.
// Fills out[] (ascending ids, data copied into dest) and returns how many. SPI connected.
// mark_running: record the claim on the rows at once (claim_run()). Otherwise (the workers) the rows are only
// locked: a run that finishes in this transaction is written once, with its claim; one that is still
// unfinished when the transaction commits must be recorded with persist_claim() (store/writes.hpp) first.
// Only runs with min_id <= id < below_id (the workers' claim hint; see worker/serve.cpp) -- with the 0.2 schema,
// these are queue keys (store/queue.hpp), not ids. SKIP LOCKED does not
// skip rows this transaction already locked: two claims in one transaction must use disjoint ranges.
int claim_runs(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_id = 0,
               int64 below_id = PG_INT64_MAX);

// Back to pending: runs of this backend's batch that an error left claimed but unfinished. SPI not connected.
void release_runs(const int64 *ids, int n);

// Puts runs whose claiming backend no longer exists back to pending; returns how many. SPI not connected.
int64 recover_runs();

}  // namespace pw::store
