// The 0.2 queue: priorities, delayed runs (run_at, retry back-off) brought in by the timer, and runs parked by a
// limit or a pause. A database still at 0.1 (the library updated, ALTER EXTENSION ... UPDATE not run yet) keeps
// the 0.1 statements of claims.cpp; schema_version() tells which apply.
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::store {

// 1: the 0.1 schema; 2: 0.2 or later. Catalog cache lookups only (cheap, transactional). Needs a transaction.
int schema_version();

// A run's place in the queue as one ordered number: (32767 - priority) << 47 | id, so that "higher priority first,
// then lower id" is ascending order (the workers' claim hint is such a key).
constexpr int kIdBits = 47;
inline int64 queue_key(int priority, int64 id) {
    return (static_cast<int64>(32767 - priority) << kIdBits) | (id & ((int64(1) << kIdBits) - 1));
}
inline int key_priority(int64 key) { return 32767 - static_cast<int>(key >> kIdBits); }
// A queue key as the (- priority, id) pair the statements compare rows with.
inline void split_key(int64 key, Datum *neg_priority, Datum *id) {
    *neg_priority = Int32GetDatum(-key_priority(key));
    *id = Int64GetDatum(key & ((int64(1) << kIdBits) - 1));
}

// SQL: what a run woken into the queue (UPDATE pipeline_worker.runs r SET status = 'pending', ...) gets as `parked`:
// 3 if its pipeline is paused -- claimed only once resumed. (Until 2026-12-05 a run woken from a sleep, an event wait or
// its children's wait was claimed while its pipeline was paused.) The pipeline's row is locked FOR SHARE, SKIP LOCKED:
// a pause committing meanwhile waits for this transaction and then parks the woken run as any pending one; one that
// holds the row (a pause or resume in flight, alter_pipeline) is not waited for: the run is parked, and if the
// pipeline turns out not paused, the lead worker's next look puts it back (unpark_resumed).
#define PW_PARKED_IF_PAUSED                                                                                         \
    " parked = CASE WHEN EXISTS (SELECT 1 FROM pipeline_worker.pipelines p WHERE p.id = r.pipeline_id"             \
    " AND NOT p.paused FOR SHARE OF p SKIP LOCKED) THEN r.parked ELSE 3 END"

// After a wake statement (RETURNING priority, id, parked): note_requeued, and the lead worker is told to look when it
// parked runs as paused.
void note_woken();
// Runs parked as paused (parked = 3) whose pipeline is not paused: back in the queue. The lead worker, once a second,
// when a wake parked runs since its last look (one that met a pause or resume in flight parked its run:
// PW_PARKED_IF_PAUSED). SPI not connected; the caller's transaction. Returns how many.
int64 unpark_resumed();

// The last SPI statement put runs back in the queue and returned each one's priority and id (columns 1 and 2): at
// commit, the claim hint moves back to the first of them (notes::runs_queued_at) rather than to the head.
void note_requeued();
// The same rows' queue keys: [*from, *upto) spans them all (false: no row had an id).
bool requeued_range(uint64 *from, uint64 *upto);
// The last SPI statement row-locked runs and returned, for each, its priority, id and whether it is queued (columns
// 1-3): at commit the queue's known end moves past the queued ones (notes::queued_runs_locked).
void note_locked_queued();

// claim_runs for the 0.2 schema (same contract), in queue order. Runs whose pipeline or key is at a limit are
// parked instead of claimed; a lane admits at most one run per claim (the others stay queued for other workers).
int claim_queued(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_key,
                 int64 below_key);

// A session's slots (claim_run) for runs that are no longer running under it -- cancelled, retried, deleted with
// the extension -- are given back. SPI not connected. (Holding nothing -- no limits used -- it does nothing.)
void release_stale_slots();

// How many runs with limits the last claim_queued took (the workers keep their batches small then: a batch holds
// its runs' slots until it commits).
int limited_in_last_claim();
// Whether the last claim_queued's scan reached the end of its range: it found fewer rows than it asked for and
// filtered no lane out (nothing else there could be claimed by its snapshot -- for a worker's claim, which filters no
// submitter). *last_key: the highest queue key among the rows it found, whatever became of them (0: none).
bool last_claim_exhausted(int64 *last_key);

// Whether a run is in the queue now (pending, not delayed, not parked): a worker leaving its database tells the
// launcher it has work only then. SPI connected.
bool any_queued();

// How many runs claim_queued parked since the last call (the queue behind them may hold claimable runs).
int take_parked_count();

// Moves runs whose not_before has come into the queue; returns how many. SPI not connected.
int64 promote_due_runs();
// The earliest not_before of a waiting run (0: none). SPI connected.
TimestampTz next_due_run();

}  // namespace pw::store
