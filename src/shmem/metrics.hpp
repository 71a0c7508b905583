// Counters for pipeline_worker.metrics(): per (database, pipeline name) in shared memory, so that a scrape costs
// the same whatever the table sizes. What a transaction counts is kept locally and added at commit (dropped at
// abort), like the rows it describes. Also the latest counts of unfinished runs (gauges), written by whoever
// counted them last (store/stats.cpp), with when and at what cost.
#pragma once

#include "pg/pg.hpp"

namespace pw::metrics {

enum Finish { kSucceeded, kFailed, kCancelled, kFinishes };
enum StepKind { kFunction, kHttp, kPipeline, kSleep, kWaitFor, kKinds };
enum HttpOutcome { kHttpSuccess, kHttpClientError, kHttpServerError, kHttpTimeout, kHttpNetworkError, kHttpCancelled,
                   kOutcomes };
constexpr int kBuckets = 11;  // run duration, seconds: + the implicit +Inf
extern const double kBucketBounds[kBuckets];
extern const char *const kFinishNames[kFinishes];
extern const char *const kKindNames[kKinds];
extern const char *const kOutcomeNames[kOutcomes];

// Counted by this transaction, published at its commit (module.cpp's transaction callback).
void runs_created(const char *pipeline, int n = 1);
void run_finished(const char *pipeline, Finish how, int64 duration_us);  // duration_us < 0: not observed
void step_done(const char *pipeline, StepKind kind, bool succeeded);
void http_done(const char *pipeline, HttpOutcome outcome);
void at_commit();
void at_abort();
// A subtransaction rolled back: the runs it counted as created are not.
void at_subabort(SubTransactionId sub);
bool any_in_txn();  // counts noted in this transaction, not yet published

// Counts of unfinished runs of one pipeline at one moment.
struct Gauges {
    int64 pending = 0, scheduled = 0, running = 0, waiting = 0;
    TimestampTz oldest_pending = 0;  // created_at of the oldest pending run, 0: none
};

// Publishes one database's gauges as counted at `at` (pipelines not listed count as zero), unless a later count
// was published meanwhile. cost_us: what counting took (the lead worker counts less often when it is expensive).
// created_before: runs_created_in() read before the count (runs created since are not in it).
void gauges_publish(Oid dboid, const char *const *pipelines, const Gauges *g, int n, TimestampTz at, int64 cost_us,
                    uint64 created_before);
// Runs created in the database so far, by the counters.
uint64 runs_created_in(Oid dboid);
// When they were last published for dboid and what counting cost (0, 0: never).
// unfinished: how many runs that count found (pending, scheduled, running, waiting).
// created_since: runs created in the database since that count, by the counters.
void gauges_age(Oid dboid, TimestampTz *at, int64 *cost_us, int64 *unfinished = nullptr, int64 *created_since = nullptr);

// metrics() / metric_samples() were called (by any database); whether that happened within the last ms
// milliseconds. The lead workers count the gauges only while someone reads them.
void note_scrape();
bool scraped_within(long ms);

// A copy of one entry, for reading.
struct Snapshot {
    Oid dboid;
    char pipeline[256];
    uint64 created;
    uint64 finished[kFinishes];
    uint64 steps[kKinds][2];  // [kind][0 failed, 1 succeeded]
    uint64 http[kOutcomes];
    uint64 buckets[kBuckets];  // not cumulative
    uint64 duration_count;
    uint64 duration_sum_us;
    bool has_gauges;  // published in the database's latest count
    Gauges gauges;
};
// Copies of every entry (palloc'd), sorted by database and pipeline.
int snapshot(Snapshot **out);

void shmem_request();
void shmem_startup();

}  // namespace pw::metrics
