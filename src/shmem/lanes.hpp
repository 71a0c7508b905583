// Concurrency and rate limits (pipeline options "concurrency", "concurrency_per_key", "rate_limit",
// "rate_limit_per_key"), counted in shared memory per lane: a pipeline, or a pipeline's concurrency key.
//
// A run holds its lanes' slots from its claim until it stops executing here (finished, waiting for a retry,
// released) -- released when the transaction recording that commits, so a slot is never counted free while the
// run still shows as running. A backend's slots die with it: its exit releases them, and a crash (SIGKILL,
// immediate stop) reinitialises shared memory. That is what makes the limits exact: liveness is the server's.
//
// A run that finds its lane full is parked (runs.parked) rather than left in the queue, so that a limited
// backlog never sits in front of other work; the lane remembers that it has parked runs, and when it has room
// again (a slot released, a rate window moving on) the workers put them back (store::unpark_runs).
#pragma once

#include "pg/pg.hpp"

namespace pw::lanes {

struct Limits {
    int concurrency = 0;  // 0: none
    int rate_runs = 0;    // 0: none
    int rate_ms = 0;
    bool any() const { return concurrency > 0 || rate_runs > 0; }
};

// Which lane a blocked run waits on: the value of runs.parked.
constexpr int kParkedPipeline = 1;
constexpr int kParkedKey = 2;
constexpr int kParkedPaused = 3;
// Not a parked kind: admit's answer for a worker's run whose lane has room but parked runs before it.
constexpr int kBehindParked = -1;

struct Request {
    int64 run_id;
    int64 pipeline_id;
    Limits pipeline;
    bool has_key;   // the run has a concurrency key (per-key limits apply only then)
    uint64 key_hash;  // hashtextextended(concurrency_key, 0)
    Limits per_key;
    bool persisted;  // the claim is written on the row already (claim_run)
    int64 filter_hash;  // hashtextextended(concurrency_key, pipeline_id): how the claim's filter names the key lane
    uint64 position;    // the run's queue position (store::queue_key): parked runs of its lanes before it go first
};

// The lanes that are full now, as the claim's filter takes them: pipelines (pipeline-wide limits) and key lanes
// (filter hashes). Returns false when there are none (no limits in use: the common case costs one read).
// from: the queue position the claim starts at. The runs it filters out stay queued behind the claim hint; the
// lane's next release moves the hint back to the lowest such position.
// all_pipelines false: not the pipeline lanes whose backlog claims park (park_backlogs): their runs are for the claim
// to lock and park.
bool full_lanes(uint64 from, int64 *pipelines, int *npipelines, int64 *keys, int *nkeys, int max, bool all_pipelines);
// These full pipeline lanes made a claim that filtered them slow: their queued runs are too many to step over at
// every claim. Until their parked runs are all back, claims do not filter them but lock and park them (a commit
// per slot to put runs back, instead of a walk over the backlog per claim). True if one was not marked yet.
bool park_backlogs(const int64 *pipelines, int n);
// A claim starting at queue position from left runs of these lanes queued (one run per lane and claim), locked by
// this transaction: once it ends, the lanes' next release moves the claim hint back to from, as for full_lanes --
// and the queue's known end moves up to `upto` (past the claim's last run) at once: a claim that skipped them locked
// may have put it below them (shared::queue_extended).
void passed_over(int64 pipeline_id, bool pipeline_lane, bool key_lane, uint64 key_hash, uint64 from, uint64 upto);

// The extension's instance in this database (pipeline_worker.runs' oid), set whenever the schema is looked up:
// lanes of a dropped and re-created extension are distinct.
void set_instance(Oid runs_table);

// Takes a slot in the run's lanes, or returns the parked kind (kParkedPipeline/kParkedKey) of the lane that has
// no room, or whose parked runs before req.position go first -- kBehindParked for those unless req.persisted: the
// run stays queued (0: admitted). No limit: admitted without touching shared memory.
int admit(const Request &req);
// The run begins executing now: its rate windows count it. False (and *wait_ms until a window has room) when a
// window filled up since the claim: the caller puts the run back, due then.
bool begin(int64 run_id, int *wait_ms);
// The claim is written on the row in this transaction (it survives the commit as status running).
void persisted(int64 run_id);
// The run's claim (a worker's) holds a place in a rate window until the run begins.
bool holds_rate_place(int64 run_id);
// The run stops executing here when this transaction commits (finished, pending again).
void release_at_commit(int64 run_id);

// The runs this backend holds slots for (up to max); returns how many.
int held_runs(int64 *out, int max);
// Gives a run's slots back now (the run is not this backend's any more: cancelled, deleted).
void release_now(int64 run_id);

// The pipeline's limits changed in this transaction: at commit its lanes forget the limits they knew (the next
// admission brings the new ones), so that the claims' filter does not hold back runs a raised limit admits.
void note_limits_changed(int64 pipeline_id);

// Runs were parked on this lane in this transaction, the first at queue position `position`; at commit the lane
// learns it (and that its unparks must start no higher than there).
void note_parked(int64 pipeline_id, int kind, uint64 key_hash, uint64 position);

// Lanes with parked runs and room for some, to be put back by the workers.
struct Unpark {
    int64 pipeline_id;
    int kind;
    uint64 key_hash;
    int room;
    bool more;   // the lane had room for more than `room` (the cap per look): a full put-back asks for another look
    uint64 seq;  // parked generation seen; unpark_done clears only this one
    uint64 from; // no parked run of the lane lies below this queue position: the unpark starts here
};
// Fills up to max lanes that may take parked runs back; returns how many.
int lanes_to_unpark(Unpark *out, int max);
// found < room: the lane has no parked runs left (unless parked again since seq) -- once this transaction
// commits. An abort wants the unpark again (and gives back a fresh start it took). next_from: the queue position
// after the last run put back; at commit, unless runs were parked since seq, the lane's next unpark starts there
// (the runs put back leave dead entries in the parked index, which an unpark from the start would step over).
void unpark_done(const Unpark &u, int found, uint64 next_from);
// Any put-back of the lane (skipping rows or not, whatever the isolation level), for the order of its runs
// (shmem/lane_order.cpp): once this transaction commits, the lane's queued runs past next_from wait for its parked
// ones -- or none do, when it found fewer than room or could not tell (rows skipped, a transaction snapshot).
void put_back_done(const Unpark &u, int found, uint64 next_from, bool skipped_rows);
// A subtransaction rolled back: the put-backs made in it are undone (lanes::at_subabort).
void order_subabort(SubTransactionId sub);
// The earliest moment a rate-limited lane with parked runs gets room (0: none).
TimestampTz next_rate_opening();
// At a due moment (the timer's): the rate windows that have room again bring the claim hint back to the runs claims
// left queued behind them, as a release does -- a claim from the hint would not see them, and one from the head may
// be put off (worker/claiming.cpp).
void reopen_windows();
// True once per database after shared memory was (re)initialised, or the database's entry in it was (a worker
// then puts back every run parked by a limit): runs parked before know no lane now.
bool take_fresh_start();
// Whether take_fresh_start would return true now (it may not, another worker taking it first).
bool fresh_start_pending();
// Something of this database may be unparkable now (a slot freed, parked runs noted). Rate windows moving on are
// the timer's.
bool unpark_wanted();
// A database whose extension is still at 0.1 parks nothing: its wish (set when its entry began) is dropped.
void forget_unpark_wish();

// Transaction end and backend exit (module.cpp, shared.cpp).
void at_commit();
void at_abort();
// This transaction took, gave back or noted something of the lanes (PREPARE TRANSACTION is refused then).
bool any_in_txn();
// A subtransaction rolled back (module.cpp): the slots taken in it go back, the releases asked in it are withdrawn.
void at_subabort(SubTransactionId sub);
void shmem_request();
void shmem_startup();

}  // namespace pw::lanes
