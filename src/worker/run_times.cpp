#include "worker/run_times.hpp"

#include "shmem/gucs.hpp"

namespace pw::worker {

namespace {

constexpr int kEagerClaimMax = 4;
constexpr double kFastBatchMs = 2.0;  // a batch expected to finish within this is not shown as running first
// A run of a pipeline not seen lately, or seen to take this long, may keep the runs claimed after it waiting: the
// batch ends with it. (Not 2 ms, as for showing claims: with more workers than cores a fast run preempted midway
// takes milliseconds now and then, and the batches of a fast pipeline would be cut at every such run.)
constexpr double kLongRunMs = 50.0;

double avg_run_ms = -1;  // unknown until the first run
// At most this many runs in the next claim: a batch cut by keep_until_slow locked rows it gave back, so the claims after
// it are sized from what was kept, doubling again with every batch kept whole (many pipelines new to a worker -- more
// than its table keeps, or a worker just started -- would otherwise lock 64 runs to keep one, again and again).
int kept_cap = kMaxBatch;

// The longest run of each pipeline seen lately (decaying by a tenth a run): a pipeline is known fast once its runs
// have finished within kFastBatchMs for a while. By the average of the worker's runs alone (until 2026-12-05), a
// slow run of another pipeline after fast ones showed as pending -- no started_at, no worker_pid -- for its whole
// first step, and a one-step run never showed as running at all.
struct PipelineTime {
    int64 pipeline_id;
    double max_ms;  // < 0: a free place
};
constexpr int kPipelineTimes = 1024;  // (16 KiB)
PipelineTime pipeline_times[kPipelineTimes];
bool pipeline_times_ready = false;

PipelineTime *pipeline_time(int64 pipeline_id, bool add) {
    if (!pipeline_times_ready) {
        for (PipelineTime &t : pipeline_times) t.max_ms = -1;
        pipeline_times_ready = true;
    }
    uint64 k = static_cast<uint64>(pipeline_id) * UINT64CONST(0x9E3779B97F4A7C15);
    uint32 h = static_cast<uint32>(k >> 40) % kPipelineTimes;
    for (int probe = 0; probe < 8; probe++) {
        PipelineTime &t = pipeline_times[(h + probe) % kPipelineTimes];
        if (t.max_ms >= 0 && t.pipeline_id == pipeline_id) return &t;
        if (t.max_ms < 0) {
            if (!add) return nullptr;
            t.pipeline_id = pipeline_id;
            t.max_ms = 0;
            return &t;
        }
    }
    if (!add) return nullptr;
    PipelineTime &t = pipeline_times[h];  // (full around here: the home place is taken over)
    t.pipeline_id = pipeline_id;
    t.max_ms = 0;
    return &t;
}

bool known_fast(int64 pipeline_id) {
    const PipelineTime *t = pipeline_time(pipeline_id, false);
    return t != nullptr && t->max_ms < kFastBatchMs;
}

}  // namespace

int batch_size() {
    int max = guc::claim_batch < 1 ? 1 : (guc::claim_batch > kMaxBatch ? kMaxBatch : guc::claim_batch);
    if (avg_run_ms < 0) return 1;
    double budget = guc::commit_interval_ms > 0 ? guc::commit_interval_ms : 1;
    int n = avg_run_ms <= 0.001 ? max : static_cast<int>(budget / avg_run_ms);
    if (n > kept_cap) n = kept_cap;
    return n < 1 ? 1 : (n > max ? max : n);
}

void note_run_time(int64 pipeline_id, TimestampTz start) {
    double ms = static_cast<double>(GetCurrentTimestamp() - start) / 1000.0;
    avg_run_ms = avg_run_ms < 0 ? ms : 0.8 * avg_run_ms + 0.2 * ms;
    PipelineTime *t = pipeline_time(pipeline_id, true);
    double decayed = 0.9 * t->max_ms;
    t->max_ms = ms > decayed ? ms : decayed;
}

void note_batch_kept(int kept, int claimed) {
    if (kept < claimed) kept_cap = 2 * kept;
    else if (kept_cap < kMaxBatch) kept_cap = 2 * kept_cap < kMaxBatch ? 2 * kept_cap : kMaxBatch;
}

int keep_until_slow(const store::ClaimedRun *runs, int n) {
    for (int i = 0; i < n; i++) {
        const PipelineTime *t = pipeline_time(runs[i].pipeline_id, false);
        if (t == nullptr || t->max_ms >= kLongRunMs) return i + 1;
    }
    return n;
}

bool show_claims_first(const store::ClaimedRun *runs, int n) {
    for (int i = 0; i < n; i++)
        if (!known_fast(runs[i].pipeline_id)) return true;
    bool fast_runs = avg_run_ms >= 0 && avg_run_ms * n < kFastBatchMs;
    return n <= kEagerClaimMax && !fast_runs;
}

}  // namespace pw::worker
