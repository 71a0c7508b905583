// How long this worker's runs take, as it saw them: the batch size (claimed runs wait for their worker, so batches
// only pay off for fast runs) and whether a batch's claims are shown at once (status running) or only with their
// outcome. Per process, in memory; nothing shared.
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::worker {

constexpr int kMaxBatch = 64;  // runs claimed at once, at most

// The size of the next batch: about commit_interval_ms of runs by the moving average of this worker's run durations,
// at most claim_batch (and 64); 1 until a run was seen, and for slow runs.
int batch_size();
// A run of pipeline_id took from `start` until now (its execution only: commit waits and pauses taken out).
void note_run_time(int64 pipeline_id, TimestampTz start);
// Whether n claimed runs of these pipelines are shown as running before they execute (status running, started_at,
// worker_pid, in an asynchronously committed transaction): a small batch (a short queue, or slow runs) not known to
// finish within ~2 ms, and any batch with a run of a pipeline whose runs this worker has not seen finish within ~2 ms
// lately. Otherwise the runs are only locked, and written once with their outcome -- they finish before anyone could
// look, and the extra transaction would only add latency.
bool show_claims_first(const store::ClaimedRun *runs, int n);
// How many of a claimed batch's n runs (in the order they will be executed) one worker should keep: up to and
// including the first run of a pipeline this worker has not seen lately, or has seen take 50 ms or more (decaying by
// a tenth a run) -- the runs after it would wait for
// it, while other workers may be idle (until 2026-12-07 a batch sized by earlier fast runs took 2 one-second runs of
// a new pipeline and executed them one after the other, with idle workers; acceptance walk-through).
int keep_until_slow(const store::ClaimedRun *runs, int n);
// A claimed batch of `claimed` runs of which this worker kept `kept`: a cut one caps the next claims at twice what was
// kept, the cap doubling back (up to 64) with every batch kept whole.
void note_batch_kept(int kept, int claimed);

}  // namespace pw::worker
