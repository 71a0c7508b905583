#include "shmem/lane_table.hpp"

#include <algorithm>

#include "shmem/claim_hint.hpp"
#include "shmem/shared.hpp"

extern "C" {
#include "storage/shmem.h"
}

namespace pw::lanes::table {

Header *g_header = nullptr;
Oid current_instance = InvalidOid;
HTAB *g_lanes = nullptr;

Tag make_tag(int64 pipeline_id, bool per_key, uint64 key_hash) {
    Tag t;
    memset(&t, 0, sizeof(t));
    t.db = MyDatabaseId;
    t.instance = current_instance;
    t.per_key = per_key ? 1 : 0;
    t.pipeline_id = pipeline_id;
    t.key_hash = per_key ? key_hash : 0;
    return t;
}

int64 bucket_width(const Limits &l) {
    return l.rate_runs > 0 ? (int64(l.rate_ms) * 1000 + kBuckets - 2) / (kBuckets - 1) : 0;
}

// Starts counted in the window ending now.
int rate_count(const Lane *lane, TimestampTz now) {
    if (lane->width_us == 0) return 0;
    int64 cur = now / lane->width_us, lo = (now - int64(lane->limits.rate_ms) * 1000) / lane->width_us;
    int n = 0;
    for (int i = 0; i < kBuckets; i++)
        if (lane->bucket[i] >= lo && lane->bucket[i] <= cur) n += lane->count[i];
    return n;
}

// When the window will have room for one more start (now if it has) besides `reserved` runs admitted and not begun;
// 0 when starts leaving the window are not enough.
TimestampTz rate_opening(const Lane *lane, TimestampTz now, int reserved) {
    int n = rate_count(lane, now) + reserved;
    if (lane->width_us == 0 || n < lane->limits.rate_runs) return now;
    if (reserved >= lane->limits.rate_runs) return 0;
    int64 lo = (now - int64(lane->limits.rate_ms) * 1000) / lane->width_us;
    // oldest buckets leave the window first
    for (int64 b = lo;; b++) {
        for (int i = 0; i < kBuckets; i++)
            if (lane->bucket[i] == b) n -= lane->count[i];
        if (n < lane->limits.rate_runs) return (b + 1) * lane->width_us + int64(lane->limits.rate_ms) * 1000;
        if (b > now / lane->width_us) return now;  // (cannot happen: with every bucket gone, n = reserved < rate_runs)
    }
}

int room(const Lane *lane, TimestampTz now) {
    int r = INT_MAX;
    if (lane->limits.concurrency > 0) r = lane->limits.concurrency - lane->running;
    if (lane->limits.rate_runs > 0) {
        int rr = lane->limits.rate_runs - rate_count(lane, now) - lane->reserved;
        r = rr < r ? rr : r;
    }
    return r < 0 ? 0 : r;
}

int64 count_start(Lane *lane, TimestampTz now) {
    if (lane->width_us == 0) return 0;
    int64 b = now / lane->width_us;
    int i = static_cast<int>(b % kBuckets);
    if (lane->bucket[i] != b) {
        lane->bucket[i] = b;
        lane->count[i] = 0;
    }
    lane->count[i]++;
    return b;
}

void uncount_start(Lane *lane, int64 b) {
    int i = static_cast<int>(b % kBuckets);
    if (lane->width_us != 0 && lane->bucket[i] == b && lane->count[i] > 0) lane->count[i]--;
}

// The lane, entered empty if new; nullptr when the table is full.
// A full table (kMaxLanes): the lanes that remember nothing go. Lanes are forgotten when their last slot is given back
// -- but not while their rate window counts starts, and nothing came back for them later: every key ever given a
// rate_limit_per_key stayed. Until 2026-12-04 the table then grew into the server's spare shared memory and, that
// gone, could not take another lane: every run of a limited pipeline was parked, and no lane remembered it
// (test/scripts/lanes_full.sh: 13,000 keys). At most one sweep per kSweepGapUs: a table full of lanes in use is
// not swept again at every admission.
constexpr int64 kSweepGapUs = 100 * 1000;

bool make_room() {
    TimestampTz now = GetCurrentTimestamp();
    if (g_header->last_sweep != 0 && now - g_header->last_sweep >= 0 && now - g_header->last_sweep < kSweepGapUs)
        return false;
    g_header->last_sweep = now;
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, g_lanes);
    Lane *lane;
    while ((lane = static_cast<Lane *>(hash_seq_search(&seq))) != nullptr)
        maybe_forget(lane, now);  // (removing the element just returned is allowed during the scan)
    return hash_get_num_entries(g_lanes) < kMaxLanes;
}

Lane *enter(const Tag &tag) {
    bool found;
    Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &tag, HASH_FIND, nullptr));
    if (lane != nullptr) return lane;
    if (hash_get_num_entries(g_lanes) >= kMaxLanes && !make_room()) return nullptr;
    lane = static_cast<Lane *>(hash_search(g_lanes, &tag, HASH_ENTER_NULL, &found));
    if (lane != nullptr && !found) {
        memset(reinterpret_cast<char *>(lane) + sizeof(Tag), 0, sizeof(Lane) - sizeof(Tag));
        pg_atomic_init_u64(&lane->skip_floor, UINT64_MAX);
        lane->order_from = UINT64_MAX;
        for (int i = 0; i < kBuckets; i++) lane->bucket[i] = -1;
    }
    return lane;
}

Lane *find_or_enter(const Tag &tag, const Limits &limits) {
    Lane *lane = enter(tag);
    if (lane == nullptr) return nullptr;
    int64 width = bucket_width(limits);
    if (width != lane->width_us) {  // rate limit set or its period changed: the starts move to buckets of the new width
        int64 old_width = lane->width_us, old_bucket[kBuckets];
        int32 old_count[kBuckets];
        memcpy(old_bucket, lane->bucket, sizeof(old_bucket));
        memcpy(old_count, lane->count, sizeof(old_count));
        lane->width_us = width;
        for (int i = 0; i < kBuckets; i++) lane->bucket[i] = -1;
        // Each into the new bucket holding its old bucket's end, or now's if that end is still to come: never earlier
        // than it was counted, never in a bucket the window does not reach yet. (Until 2026-12-07 the window started
        // empty: 1 run per 20 s lengthened to 1 per 30 s let one start at once; review of the raised-limit fix.)
        int64 now_bucket = width != 0 ? GetCurrentTimestamp() / width : 0;
        for (int i = 0; old_width != 0 && width != 0 && i < kBuckets; i++) {
            if (old_bucket[i] < 0 || old_count[i] == 0) continue;
            int64 b = std::min(((old_bucket[i] + 1) * old_width - 1) / width, now_bucket);
            int j = static_cast<int>(b % kBuckets);
            if (lane->bucket[j] > b) continue;  // (a newer bucket there: this start is out of any window of it)
            if (lane->bucket[j] < b) {
                lane->bucket[j] = b;
                lane->count[j] = 0;
            }
            lane->count[j] += old_count[i];
        }
    }
    lane->limits = limits;
    return lane;
}

bool has_parked(const Lane *lane) { return lane->parked_seq != lane->cleared_seq; }

// (Under the lock, shared or exclusive: the floor itself is atomic.)
void lower_skip_floor(Lane *lane, uint64 from) {
    uint64 cur = pg_atomic_read_u64(&lane->skip_floor);
    while (cur > from && !pg_atomic_compare_exchange_u64(&lane->skip_floor, &cur, from)) {
    }
}

// Removes a lane that remembers nothing (no slot taken, no parked runs, an empty rate window).
// No start left in the span its buckets were made for (kBuckets - 1 widths: at least the rate window). Not
// rate_count(): an alter_pipeline resets the lane's limits until the next admission (rate_ms 0: only the current
// bucket counted), and a lane forgotten then lost its window's starts -- a limit raised from 1 to 2 let 3 starts
// into one window (until 2026-12-07; acceptance walk-through).
namespace {
bool window_empty(const Lane *lane, TimestampTz now) {
    if (lane->width_us == 0) return true;
    int64 lo = now / lane->width_us - (kBuckets - 1);
    for (int i = 0; i < kBuckets; i++)
        if (lane->bucket[i] >= lo && lane->count[i] > 0) return false;
    return true;
}
}  // namespace

void maybe_forget(Lane *lane, TimestampTz now) {
    if (lane->running == 0 && lane->parkers == 0 && !has_parked(lane) && window_empty(lane, now))
        hash_search(g_lanes, &lane->tag, HASH_REMOVE, nullptr);
}

}  // namespace pw::lanes::table

namespace pw::lanes {

using namespace table;

void shmem_request() {
    RequestAddinShmemSpace(MAXALIGN(sizeof(Header)));
    RequestAddinShmemSpace(hash_estimate_size(kMaxLanes, sizeof(Lane)));
    RequestNamedLWLockTranche("pipeline_worker lanes", 1);
}

void shmem_startup() {
    bool found;
    g_header = static_cast<Header *>(ShmemInitStruct("pipeline_worker lanes header", sizeof(Header), &found));
    if (!found) {
        g_header->lock = &(GetNamedLWLockTranche("pipeline_worker lanes"))->lock;
        g_header->park_seq = 0;
        g_header->last_sweep = 0;
    }
    HASHCTL info;
    memset(&info, 0, sizeof(info));
    info.keysize = sizeof(Tag);
    info.entrysize = sizeof(Lane);
    g_lanes = ShmemInitHash("pipeline_worker lanes", kMaxLanes, kMaxLanes, &info, HASH_ELEM | HASH_BLOBS);
}

// Reads of the whole table, for the claims' filters and the timer (no state of this backend's).

namespace {

// f(lane, now) for each lane of this backend's database and extension instance, under the shared lock (`now` read
// under it, as lanes.cpp's lock_lanes does). f neither raises an error nor takes another lock.
template <typename F>
void each_lane_here(F f) {
    LWLockAcquire(g_header->lock, LW_SHARED);
    TimestampTz now = GetCurrentTimestamp();
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, g_lanes);
    Lane *lane;
    while ((lane = static_cast<Lane *>(hash_seq_search(&seq))) != nullptr)
        if (lane->tag.db == MyDatabaseId && lane->tag.instance == current_instance) f(lane, now);
    LWLockRelease(g_header->lock);
}

}  // namespace

bool full_lanes(uint64 from, int64 *pipelines, int *npipelines, int64 *keys, int *nkeys, int max, bool all_pipelines) {
    *npipelines = *nkeys = 0;
    if (g_header == nullptr || hash_get_num_entries(g_lanes) == 0) return false;
    TimestampTz opening = 0;
    each_lane_here([&](Lane *lane, TimestampTz now) {
        if (room(lane, now) > 0) return;
        if (!lane->tag.per_key && lane->park_backlog && !all_pipelines) return;
        lower_skip_floor(lane, from);  // (before the claim runs; a release meanwhile: see shared::raise_claim_hint)
        // Its runs stay queued, and nothing else would tell when a full rate window moves on (a release wakes the
        // workers for a full concurrency limit): until 2026-12-03 such runs waited for an idle worker's 1 s look.
        if (lane->limits.rate_runs > 0) {  // (0: full of places held for runs not begun: see next_rate_opening)
            TimestampTz at = rate_opening(lane, now, lane->reserved);
            if (at > now && (opening == 0 || at < opening)) opening = at;
        }
        if (lane->tag.per_key) {
            if (*nkeys < max) keys[(*nkeys)++] = lane->filter_hash;
        } else if (*npipelines < max) {
            pipelines[(*npipelines)++] = lane->tag.pipeline_id;
        }
    });
    if (opening != 0) shared::note_retry_due(opening);  // a worker wakes then, and claims them
    return *npipelines + *nkeys > 0;
}

TimestampTz next_rate_opening() {
    if (g_header == nullptr) return 0;
    TimestampTz best = 0;
    each_lane_here([&](Lane *lane, TimestampTz now) {
        if (lane->limits.rate_runs == 0) return;
        if (lane->limits.concurrency > 0 && lane->running >= lane->limits.concurrency) return;  // a release wakes it
        TimestampTz at = rate_opening(lane, now, lane->reserved);
        if (at == 0) return;  // full of places held for runs not begun: their begin() or release sets the time
        // Runs left queued by claims that filtered the full window (its skip floor set) need the opening as much as
        // parked ones: full_lanes set it as the due moment, but a round due earlier took that and set the next from
        // here (until 2026-12-04 parked runs only: the queued ones then waited for the lead's 1 s look). Only while
        // the window is full: with room, they are claimable now, and "due now" would bring the round back at once.
        bool queued = pg_atomic_read_u64(&lane->skip_floor) != UINT64_MAX && at > now;
        if (!has_parked(lane) && !queued) return;
        if (best == 0 || at < best) best = at;
    });
    return best;
}

// (Until 2026-12-07 they waited for the next release -- the end of the run that filled the window, 3 s instead of the
// window's 0.5 s in about 1 of 10 rounds -- unless the woken worker's look from the head was not put off.)
void reopen_windows() {
    if (g_header == nullptr || hash_get_num_entries(g_lanes) == 0) return;
    uint64 floor = UINT64_MAX;
    each_lane_here([&](Lane *lane, TimestampTz now) {
        if (lane->limits.rate_runs == 0 || room(lane, now) <= 0) return;
        uint64 f = pg_atomic_exchange_u64(&lane->skip_floor, UINT64_MAX);
        if (f < floor) floor = f;
    });
    if (floor != UINT64_MAX) shared::lower_claim_hint_to(floor);
}

}  // namespace pw::lanes
