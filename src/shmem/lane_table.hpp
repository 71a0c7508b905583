// The lanes' shared table (shmem/lanes.cpp's state in shared memory): one entry per lane -- a pipeline, or a
// pipeline's concurrency key -- with its slots, its rate window, what it has parked and where claims and unparks
// start. Every field is read and written under Header::lock (skip_floor, atomic, under the shared lock too).
// Internal to shmem/lanes*.cpp; the rest of the extension goes through shmem/lanes.hpp.
#pragma once

#include "shmem/lanes.hpp"

extern "C" {
#include "storage/lwlock.h"
#include "utils/hsearch.h"
}

namespace pw::lanes::table {

constexpr int kMaxLanes = 8192;
// A rate window is kept as kBuckets counters of width ceil(per_ms / (kBuckets - 1)): a bucket that overlaps the
// window at all counts in full, so the limit is never exceeded (a start may wait up to one bucket width longer).
constexpr int kBuckets = 32;

struct Tag {
    Oid db;
    Oid instance;  // pipeline_worker.runs' oid: a re-created extension (ids start over) shares no lane
    int32 per_key;
    int32 pad;
    int64 pipeline_id;
    uint64 key_hash;
};

struct Lane {
    Tag tag;  // hash key: first
    int running;
    int reserved;       // admitted runs of a rate-limited lane not begun yet: they have their place in the window
    Limits limits;      // as of the last admission
    int64 width_us;     // rate bucket width (0: no rate limit seen)
    uint64 parked_seq;  // bumped when runs were parked here (after their commit)
    uint64 cleared_seq; // parked_seq when an unpark found none left
    uint64 unpark_from; // no parked run of this lane lies below this queue position (unparks start here)
    bool park_backlog;  // pipeline lanes: its queued backlog is too long to filter -- claims park it instead
    int64 filter_hash;  // key lanes: Request::filter_hash
    // The lowest queue position from which a claim passed over this lane's queued runs (full: filtered out; one
    // run per lane and claim: the others left queued) since the lane last gave a slot back. Those runs are behind
    // the claim hint; the next release moves the hint back to here (UINT64_MAX: none passed over).
    pg_atomic_uint64 skip_floor;
    // The order of the lane's runs (shmem/lane_order.cpp): queued runs past order_from wait for the parked ones
    // before them (UINT64_MAX: none); claims under way that found the lane full and are parking its runs, and the
    // lowest position they park, heeded until parking_until.
    uint64 order_from;
    int parkers;
    uint64 parking_from;
    TimestampTz parking_until;
    int64 bucket[kBuckets];
    int32 count[kBuckets];
};

struct Header {
    LWLock *lock;
    uint64 park_seq;  // last Lane::parked_seq handed out (under lock): unique across forgotten and re-entered lanes
    TimestampTz last_sweep;  // (under lock) when a full table last looked for lanes to forget (table::enter)
};

// The shared table (set up by lanes::shmem_startup; nullptr without shared_preload_libraries) and the extension's
// instance in this backend's database (lanes::set_instance).
extern Header *g_header;
extern Oid current_instance;
extern HTAB *g_lanes;

// The lane's hash key in this backend's database and instance.
Tag make_tag(int64 pipeline_id, bool per_key, uint64 key_hash);

// The width of a rate bucket for these limits (0: no rate limit).
int64 bucket_width(const Limits &l);
// Starts counted in the window ending now.
int rate_count(const Lane *lane, TimestampTz now);

// When the window will have room for one more start (now if it has) besides `reserved` runs admitted and not begun;
// 0 when starts leaving the window are not enough (a reservation must end first: its release wakes the workers).
TimestampTz rate_opening(const Lane *lane, TimestampTz now, int reserved = 0);
// How many more runs the lane admits now (concurrency and rate window).
int room(const Lane *lane, TimestampTz now);
// A run begins now: its rate window counts it. Returns the bucket it is counted in (for uncount_start).
int64 count_start(Lane *lane, TimestampTz now);
// A start counted in bucket b did not happen (its claim rolled back): taken back while the window still counts it.
void uncount_start(Lane *lane, int64 b);

// The lane, entered empty if new; nullptr when the table is full.
Lane *enter(const Tag &tag);
// The same, with the limits of the admission at hand (a changed rate limit starts a new window).
Lane *find_or_enter(const Tag &tag, const Limits &limits);
// The lane has parked runs not known to be all back.
bool has_parked(const Lane *lane);

// (Under the lock, shared or exclusive: the floor itself is atomic.)
void lower_skip_floor(Lane *lane, uint64 from);
// Removes a lane that remembers nothing (no slot taken, no parked runs, an empty rate window).
void maybe_forget(Lane *lane, TimestampTz now);

}  // namespace pw::lanes::table
