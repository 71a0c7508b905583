#include "shmem/lanes.hpp"

#include "shmem/claim_hint.hpp"
#include "shmem/lane_order.hpp"
#include "shmem/lane_passed.hpp"
#include "shmem/lane_table.hpp"
#include "shmem/shared.hpp"

namespace pw::lanes {

using namespace table;

namespace {

// The lanes' lock, and the time that goes with it, read under it. Read before, a start another backend counted while
// this one waited for the lock could fall in a later bucket than this "now", outside the window counted: ten workers
// beginning a new pipeline's first runs at once let an 11th of 10 per 500 ms begin (flow_limits.sh in CI, 2026-12-06).
TimestampTz lock_lanes(LWLockMode mode) {
    LWLockAcquire(g_header->lock, mode);
    return GetCurrentTimestamp();
}

// This backend's slots, by run.
struct Holding {
    int64 run_id;
    Tag lanes[2];
    int nlanes;
    bool durable;          // the claim is committed: the slot survives commits
    bool durable_pending;  // persisted in the current transaction
    bool release_pending;  // the run stops executing here at commit
    bool reserved[2];      // lanes[i]'s window holds a place for it until it begins (Lane::reserved): begin() counts it
    int64 counted[2];      // a claim_run()'s start, counted at its claim: lanes[i]'s bucket (0: none) ...
    int64 counted_width[2];  // ... of this width (a rollback of the claim takes it back)
    SubTransactionId admit_subid;    // the subtransaction that took the slot (at_subabort)
    SubTransactionId release_subid;  // the one that asked for release_pending
};
constexpr int kMaxHoldings = 1024;
Holding holdings[kMaxHoldings];
int nholdings = 0;
bool exit_hook_set = false;

struct ParkNote {
    Tag tag;
    uint64 from;  // the lowest queue position this transaction parked a run of the lane at
};
constexpr int kMaxParkNotes = 256;
ParkNote park_notes[kMaxParkNotes];
int npark_notes = 0;
int64 changed_pipelines[16];
int nchanged = 0;  // (more than 16 in one transaction: every lane of the database forgets)

// What this transaction's unparks concluded, applied only at its commit: a lane forgets its parked runs only
// once the rows put back are committed. (Cleared before, a rolled-back unpark -- a session's claim_run() in a
// transaction it rolls back, a timer that failed later -- left runs parked that no lane remembered: stuck.)
struct PendingClear {
    Tag tag;
    uint64 seq;
    bool clear;      // found fewer than it had room for: none left
    uint64 advance;  // the position after the last run put back: the lane's next unpark starts there
};
constexpr int kMaxPendingClears = 64;
PendingClear pending_clears[kMaxPendingClears];
int npending_clears = 0;
bool look_again_at_commit = false;  // this transaction's put-back left room: its commit asks for another look
bool unparked_in_txn = false;  // this transaction puts parked runs back: an abort asks for that again
bool fresh_in_txn = false;     // this transaction took the fresh start: an abort gives it back
SubTransactionId fresh_subid = InvalidSubTransactionId;  // ... and the subtransaction that took it

// A lane of this database with parked runs has room: the next look puts them back (lanes_to_unpark). The wish is
// the database's: a worker of another database, which puts back only its own runs, must not take it.
void want_unpark() {
    if (shared::DbState *d = g_header != nullptr ? shared::db() : nullptr) pg_atomic_write_u32(&d->unpark_wanted, 1);
}

// Runs parked by this transaction that no lane remembers (the table full of lanes in use, or more lanes parked in one
// transaction than it notes): every run parked by a limit in the database goes back to the queue once, in a second
// (the fresh start's put-back), and is parked again if its lane is still full -- once a second while the table stays
// full, instead of parked for good.
bool lost_park_notes = false;
TimestampTz lost_logged = 0;

void put_back_unremembered() {
    lost_park_notes = false;
    shared::DbState *d = g_header != nullptr ? shared::db() : nullptr;
    if (d == nullptr) return;
    pg_atomic_write_u32(&d->fresh_lanes, 1);
    TimestampTz now = GetCurrentTimestamp();
    shared::note_retry_due(now + USECS_PER_SEC);
    if (lost_logged == 0 || now - lost_logged > 60 * USECS_PER_SEC) {
        lost_logged = now;
        ereport(LOG, (errmsg("pipeline_worker: runs were parked by a limit that the table of lanes could not note"),
                      errdetail("The table holds %d lanes in use (pipelines and concurrency keys with running runs, "
                                "parked runs or a rate window counting starts).",
                                kMaxLanes),
                      errhint("Such runs are put back once a second until lanes free up.")));
    }
}

// The place h holds in lane's rate window (its i-th) is given up: the run began, or will not.
void give_up_place(Holding *h, int i, Lane *lane) {
    if (h->reserved[i] && lane != nullptr && lane->reserved > 0) lane->reserved--;
    h->reserved[i] = false;
}

// undo_starts: the claim is rolled back, the starts counted at it did not happen.
void release_holding(Holding *h, bool undo_starts = false) {
    if (g_header == nullptr) return;
    bool parked = false;
    uint64 floor = UINT64_MAX;
    TimestampTz now = lock_lanes(LW_EXCLUSIVE);
    for (int i = 0; i < h->nlanes; i++) {
        Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &h->lanes[i], HASH_FIND, nullptr));
        if (lane == nullptr) continue;
        if (lane->running > 0) lane->running--;
        give_up_place(h, i, lane);  // (released before it began: the place is free)
        if (undo_starts && h->counted[i] != 0 && lane->width_us == h->counted_width[i])
            uncount_start(lane, h->counted[i]);
        uint64 f = pg_atomic_exchange_u64(&lane->skip_floor, UINT64_MAX);
        if (f < floor) floor = f;
        if (has_parked(lane)) parked = true;
        else maybe_forget(lane, now);
    }
    LWLockRelease(g_header->lock);
    if (parked) want_unpark();
    // Runs of this lane that claims passed over are still queued, behind the claim hint: claims start no higher than
    // the first of them. (Not at the head: with a snapshot held open, a walk from the head reads the index entry of
    // every run claimed since, and a limited pipeline releases a slot per run -- test/scripts/held_snapshot.sh.)
    // Parked runs come back through store::unpark_runs, which says where it puts them.
    // (A claim that filtered the lane before this and ends after it sees the move back counted, and leaves the hint:
    // shared::raise_claim_hint.)
    if (floor != UINT64_MAX) shared::lower_claim_hint_to(floor);
    shared::wake_workers(1);
}

void remove_holding(int i) {
    holdings[i] = holdings[--nholdings];
}

Holding *find_holding(int64 run_id) {
    for (int i = 0; i < nholdings; i++)
        if (holdings[i].run_id == run_id) return &holdings[i];
    return nullptr;
}

void release_all(int, Datum) {
    // (before the transaction's abort: the claims not committed are rolled back)
    for (int i = 0; i < nholdings; i++) release_holding(&holdings[i], !holdings[i].durable);
    nholdings = 0;
}

}  // namespace

void set_instance(Oid runs_table) { current_instance = runs_table; }

int admit(const Request &req) {
    bool key_limited = req.has_key && req.per_key.any();
    if (!req.pipeline.any() && !key_limited) return 0;
    if (g_header == nullptr)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("pipeline_worker limits need the library in shared_preload_libraries"),
                        errhint("Add pipeline_worker to shared_preload_libraries and restart the server.")));
    if (nholdings >= kMaxHoldings) return req.pipeline.any() ? kParkedPipeline : kParkedKey;
    if (!exit_hook_set) {
        before_shmem_exit(release_all, 0);
        exit_hook_set = true;
    }
    Holding h;
    memset(&h, 0, sizeof(h));
    h.run_id = req.run_id;
    if (req.pipeline.any()) h.lanes[h.nlanes++] = make_tag(req.pipeline_id, false, 0);
    if (key_limited) h.lanes[h.nlanes++] = make_tag(req.pipeline_id, true, req.key_hash);
    const Limits *limits[2] = {req.pipeline.any() ? &req.pipeline : &req.per_key, &req.per_key};
    int blocked = 0;
    bool ask_put_back = false;
    TimestampTz now = lock_lanes(LW_EXCLUSIVE);
    Lane *lanes[2] = {nullptr, nullptr};
    for (int i = 0; i < h.nlanes && blocked == 0; i++) {
        lanes[i] = find_or_enter(h.lanes[i], *limits[i]);
        bool full = lanes[i] == nullptr || room(lanes[i], now) <= 0;
        if (full && lanes[i] != nullptr) note_parking(lanes[i], req.position, now);  // (the caller parks the run)
        if (full) blocked = h.lanes[i].per_key ? kParkedKey : kParkedPipeline;
        // Room, but the lane's runs parked or being parked before it go first (lane_order.hpp; claim_run: parked)
        else if (parked_before(lanes[i], req.position, now, &ask_put_back))
            blocked = !req.persisted ? kBehindParked : h.lanes[i].per_key ? kParkedKey : kParkedPipeline;
    }
    // Entering the key lane in a full table may have swept the pipeline lane away (idle), and given its entry to the
    // key lane: both would be counted in one entry, and only one given back. Full, then.
    if (blocked == 0 && h.nlanes == 2 && hash_search(g_lanes, &h.lanes[0], HASH_FIND, nullptr) != lanes[0]) {
        blocked = kParkedPipeline;
        maybe_forget(lanes[1], now);  // (entered for nothing: the entry goes to the pipeline lane's park note)
        lanes[1] = nullptr;
    }
    for (int i = 0; i < h.nlanes; i++)
        if (lanes[i] != nullptr && h.lanes[i].per_key) lanes[i]->filter_hash = req.filter_hash;
    if (blocked == 0) {
        for (int i = 0; i < h.nlanes; i++) {
            lanes[i]->running++;
            if (lanes[i]->limits.rate_runs == 0) continue;
            if (req.persisted) {
                // claim_run(): the run shows as running, started, from its claim, and a session may hold it unexecuted
                // for as long as it likes: its start is counted now (taken back if the claim is rolled back).
                h.counted[i] = count_start(lanes[i], now);
                h.counted_width[i] = lanes[i]->width_us;
            } else {
                // A worker's: the window counts the run when it really begins (begin()); until then it holds a place
                // in it, so that no other claim takes that place meanwhile. (Until 2026-12-07 it did not: with 10
                // workers and a window of one run, nine claims a window were put back at begin(), each counted in
                // runs.claims.)
                lanes[i]->reserved++;
                h.reserved[i] = true;
            }
        }
    }
    LWLockRelease(g_header->lock);
    if (ask_put_back) want_unpark(), shared::wake_workers(1);
    if (blocked != 0) return blocked;
    h.durable_pending = req.persisted;
    h.admit_subid = GetCurrentSubTransactionId();
    holdings[nholdings++] = h;
    return 0;
}

bool begin(int64 run_id, int *wait_ms) {
    Holding *h = find_holding(run_id);
    *wait_ms = 0;
    // A claim_run()'s start, counted at its claim, happened now: a rollback no longer takes it back (its HTTP requests
    // went out; a retry would run past the limit).
    if (h != nullptr) h->counted[0] = h->counted[1] = 0;
    if (h == nullptr || !(h->reserved[0] || h->reserved[1]) || g_header == nullptr) return true;
    TimestampTz now = lock_lanes(LW_EXCLUSIVE), open = now;
    Lane *lanes[2] = {nullptr, nullptr};
    for (int i = 0; i < h->nlanes; i++) {
        lanes[i] = static_cast<Lane *>(hash_search(g_lanes, &h->lanes[i], HASH_FIND, nullptr));
        if (lanes[i] == nullptr || lanes[i]->limits.rate_runs == 0) continue;
        TimestampTz at = rate_opening(lanes[i], now);
        if (at > open) open = at;
    }
    bool ok = open <= now;
    TimestampTz due = 0;
    if (ok) {
        for (int i = 0; i < h->nlanes; i++) {
            if (lanes[i] == nullptr) continue;
            count_start(lanes[i], now);
            give_up_place(h, i, lanes[i]);  // (its place is a start now)
            // Runs that claims left behind while the place was held wait for the window to move on: no claim set
            // a timer for that (it depended on this start), and the release may be far off (a slow run).
            if (pg_atomic_read_u64(&lanes[i]->skip_floor) == UINT64_MAX && !has_parked(lanes[i])) continue;
            TimestampTz at = lanes[i]->limits.rate_runs > 0 ? rate_opening(lanes[i], now, lanes[i]->reserved) : 0;
            if (at > now && (due == 0 || at < due)) due = at;
        }
    } else {  // (a limit lowered since the admission) put back: its place goes now, not at the commit
        for (int i = 0; i < h->nlanes; i++) give_up_place(h, i, lanes[i]);
    }
    LWLockRelease(g_header->lock);
    if (due != 0) shared::note_retry_due(due);
    if (!ok) *wait_ms = static_cast<int>((open - now + 999) / 1000);
    return ok;
}

bool holds_rate_place(int64 run_id) {
    const Holding *h = nholdings > 0 ? find_holding(run_id) : nullptr;
    return h != nullptr && (h->reserved[0] || h->reserved[1]);
}

void persisted(int64 run_id) {
    Holding *h = find_holding(run_id);
    if (h != nullptr) h->durable_pending = true;
}

void release_at_commit(int64 run_id) {
    Holding *h = find_holding(run_id);
    if (h == nullptr) return;
    SubTransactionId sub = GetCurrentSubTransactionId();
    if (!h->release_pending || sub < h->release_subid) h->release_subid = sub;
    h->release_pending = true;
}

void at_subabort(SubTransactionId sub) {
    // Rolled back with the subtransaction (a savepoint, a PL/pgSQL exception block): the claims made in it (the run is
    // pending again, its slot goes back now; until 2026-12-04 it was kept: claim-savepoint.spec) and the releases asked
    // in it (an execute_run whose work is undone: the run is still this session's, and keeps its slot).
    // (Subtransactions begun since `sub` was, and not yet ended, are its own: their ids are higher.)
    for (int i = 0; i < nholdings;) {
        Holding *h = &holdings[i];
        if (!h->durable && h->admit_subid >= sub) {
            release_holding(h, true);
            remove_holding(i);
            continue;
        }
        if (h->release_pending && h->release_subid >= sub) h->release_pending = false;
        i++;
    }
    order_subabort(sub);  // (its put-backs' order notes)
    // The fresh start taken in it: its put-back of every parked run is undone, the next look takes it again. (Until
    // 2026-12-05 it stayed taken: a claim_run rolled back to a savepoint left the runs parked before a restart parked
    // for good -- test/scripts/claim_race.sh.)
    if (fresh_in_txn && fresh_subid >= sub) {
        if (shared::DbState *d = shared::db()) pg_atomic_write_u32(&d->fresh_lanes, 1);
        fresh_in_txn = false;
        want_unpark();
    }
}

int held_runs(int64 *out, int max) {
    int n = 0;
    for (int i = 0; i < nholdings && n < max; i++) out[n++] = holdings[i].run_id;
    return n;
}

void release_now(int64 run_id) {
    for (int i = 0; i < nholdings; i++)
        if (holdings[i].run_id == run_id) {
            release_holding(&holdings[i]);
            remove_holding(i);
            return;
        }
}

bool park_backlogs(const int64 *pipelines, int n) {
    if (g_header == nullptr || n == 0) return false;
    bool marked = false;
    LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
    for (int i = 0; i < n; i++) {
        Tag t = make_tag(pipelines[i], false, 0);
        Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &t, HASH_FIND, nullptr));
        if (lane != nullptr && !lane->park_backlog) lane->park_backlog = marked = true;
    }
    LWLockRelease(g_header->lock);
    return marked;
}


void note_limits_changed(int64 pipeline_id) {
    if (nchanged < 16) changed_pipelines[nchanged] = pipeline_id;
    nchanged++;
}

void note_parked(int64 pipeline_id, int kind, uint64 key_hash, uint64 position) {
    if (kind != kParkedPipeline && kind != kParkedKey) return;
    Tag t = make_tag(pipeline_id, kind == kParkedKey, key_hash);
    for (int i = 0; i < npark_notes; i++) {
        if (memcmp(&park_notes[i].tag, &t, sizeof(t)) != 0) continue;
        if (position < park_notes[i].from) park_notes[i].from = position;
        return;
    }
    if (npark_notes < kMaxParkNotes) park_notes[npark_notes++] = ParkNote{t, position};
    else lost_park_notes = true;
}

void at_commit() {
    apply_passed_over();

    for (int i = 0; i < nholdings;) {
        Holding *h = &holdings[i];
        h->durable = h->durable || h->durable_pending;
        h->durable_pending = false;
        if (!h->durable || h->release_pending) {
            release_holding(h);
            remove_holding(i);
        } else {
            i++;
        }
    }
    apply_order_notes();  // (before the parked runs' notes: they lower the bound again)
    if (npark_notes > 0 && g_header != nullptr) {
        // After the parked rows are committed: an unpark that starts from here on finds them.
        bool wake = false;
        TimestampTz now = lock_lanes(LW_EXCLUSIVE);
        for (int i = 0; i < npark_notes; i++) {
            Lane *lane = enter(park_notes[i].tag);
            if (lane == nullptr) {
                lost_park_notes = true;
                continue;
            }
            // (from one counter, not per lane: a lane forgotten and entered again must not reuse a number that a
            // stale unpark's clear, read before the forgetting, would match)
            lane->parked_seq = ++g_header->park_seq;
            // (lowered only now, with the rows visible: an unpark that ran meanwhile and moved the start past them
            // either sees parked_seq changed at its commit and moves nothing, or committed before and is undone here)
            if (park_notes[i].from < lane->unpark_from) lane->unpark_from = park_notes[i].from;
            if (park_notes[i].from < lane->order_from) lane->order_from = park_notes[i].from;
            // room already (a slot freed before this commit): nobody else will notice
            if (room(lane, now) > 0) wake = true;
            // a full rate window: the timer puts them back when it moves on
            else if (lane->limits.rate_runs > 0) {
                TimestampTz at = rate_opening(lane, now, lane->reserved);
                if (at != 0) shared::note_retry_due(at);  // (0: a place held for a run not begun; its release wakes)
            }
        }
        LWLockRelease(g_header->lock);
        if (wake) want_unpark(), shared::wake_workers(1);
    }
    npark_notes = 0;
    end_parking();  // (after the notes: the runs it parked are known as such first)
    if (lost_park_notes) put_back_unremembered();
    if (npending_clears > 0 && g_header != nullptr) {
        TimestampTz now = lock_lanes(LW_EXCLUSIVE);
        for (int i = 0; i < npending_clears; i++) {
            Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &pending_clears[i].tag, HASH_FIND, nullptr));
            if (lane == nullptr || lane->parked_seq != pending_clears[i].seq) continue;  // (parked again since)
            if (pending_clears[i].advance > lane->unpark_from) lane->unpark_from = pending_clears[i].advance;
            if (pending_clears[i].clear) {
                lane->cleared_seq = pending_clears[i].seq;
                lane->park_backlog = false;  // (its backlog is gone: filtering it is cheap again)
                maybe_forget(lane, now);
            }
        }
        LWLockRelease(g_header->lock);
    }
    npending_clears = 0;
    if (look_again_at_commit) {
        look_again_at_commit = false;
        want_unpark();
        shared::wake_workers(1);
    }
    unparked_in_txn = fresh_in_txn = false;
    if (nchanged > 0 && g_header != nullptr) {
        LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
        HASH_SEQ_STATUS seq;
        hash_seq_init(&seq, g_lanes);
        Lane *lane;
        while ((lane = static_cast<Lane *>(hash_seq_search(&seq))) != nullptr) {
            bool hit = lane->tag.db == MyDatabaseId && nchanged > 16;
            for (int i = 0; i < nchanged && i < 16 && !hit; i++)
                hit = lane->tag.db == MyDatabaseId && lane->tag.pipeline_id == changed_pipelines[i];
            if (hit) lane->limits = Limits();
        }
        LWLockRelease(g_header->lock);
        shared::reset_claim_hint();
        // (runs parked under the old limits by a claim that committed meanwhile: the new ones may admit them)
        want_unpark();
        shared::wake_workers(1);
    }
    nchanged = 0;
}

bool any_in_txn() {
    for (int i = 0; i < nholdings; i++)
        if (!holdings[i].durable || holdings[i].durable_pending || holdings[i].release_pending) return true;
    return npark_notes > 0 || lost_park_notes || npending_clears > 0 || passed_over_pending() ||
           nchanged > 0 || look_again_at_commit || unparked_in_txn || fresh_in_txn;
}

void at_abort() {
    apply_passed_over();
    for (int i = 0; i < nholdings;) {
        Holding *h = &holdings[i];
        h->durable_pending = false;
        h->release_pending = false;
        if (!h->durable) {
            release_holding(h, true);
            remove_holding(i);
        } else {
            i++;
        }
    }
    npark_notes = 0;
    end_parking();
    lost_park_notes = false;
    look_again_at_commit = false;  // (the abort asks for the put-back again anyway)
    nchanged = 0;
    // The rows this transaction put back are parked again: look at them again (all of them after a fresh start).
    npending_clears = 0;
    if (fresh_in_txn)
        if (shared::DbState *d = shared::db()) pg_atomic_write_u32(&d->fresh_lanes, 1);
    if (unparked_in_txn || fresh_in_txn) want_unpark();
    unparked_in_txn = fresh_in_txn = false;
}

bool fresh_start_pending() {
    shared::DbState *d = g_header != nullptr ? shared::db() : nullptr;
    return d != nullptr && pg_atomic_read_u32(&d->fresh_lanes) != 0;
}

bool take_fresh_start() {
    // Per database: the lanes know nothing of any database's parked runs after shared memory started again (one
    // flag for the server put back only the runs of the database whose worker came first: the others' runs parked
    // before an immediate stop stayed parked for good -- test/scripts/faults.sh, two databases, seen once in CI).
    shared::DbState *d = g_header != nullptr ? shared::db() : nullptr;
    if (d == nullptr || pg_atomic_read_u32(&d->fresh_lanes) == 0) return false;
    bool took = pg_atomic_exchange_u32(&d->fresh_lanes, 0) == 1;
    if (took && !fresh_in_txn) fresh_subid = GetCurrentSubTransactionId();
    fresh_in_txn = fresh_in_txn || took;
    return took;
}

bool unpark_wanted() {
    shared::DbState *d = g_header != nullptr ? shared::db() : nullptr;
    return d != nullptr && pg_atomic_read_u32(&d->unpark_wanted) != 0;
}

void forget_unpark_wish() {
    if (shared::DbState *d = g_header != nullptr ? shared::db() : nullptr) pg_atomic_write_u32(&d->unpark_wanted, 0);
}

int lanes_to_unpark(Unpark *out, int max) {
    if (g_header == nullptr) return 0;
    // (in a subtransaction, which may be rolled back alone, the wish stays for another look)
    if (GetCurrentTransactionNestLevel() <= 1)
        if (shared::DbState *d = shared::db()) pg_atomic_write_u32(&d->unpark_wanted, 0);
    int n = 0;
    TimestampTz now = lock_lanes(LW_SHARED);
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, g_lanes);
    Lane *lane;
    while ((lane = static_cast<Lane *>(hash_seq_search(&seq))) != nullptr) {
        if (lane->tag.db != MyDatabaseId || lane->tag.instance != current_instance || !has_parked(lane)) continue;
        int r = room(lane, now);
        if (r <= 0) continue;
        if (n == max) {
            want_unpark();  // the rest next time
            hash_seq_term(&seq);
            break;
        }
        out[n].pipeline_id = lane->tag.pipeline_id;
        out[n].kind = lane->tag.per_key ? kParkedKey : kParkedPipeline;
        out[n].key_hash = lane->tag.key_hash;
        out[n].room = r > 1000 ? 1000 : r;
        out[n].more = r > 1000;
        out[n].seq = lane->parked_seq;
        out[n].from = lane->unpark_from;
        n++;
    }
    LWLockRelease(g_header->lock);
    unparked_in_txn = unparked_in_txn || n > 0;  // (nothing to put back: nothing to look at again after an abort)
    return n;
}

void unpark_done(const Unpark &u, int found, uint64 next_from) {
    // Room left after a full put-back (more than a look takes at once: a limit removed, say): look again after the
    // commit. (Until 2026-12-04 the rest waited for a release -- with the limit gone, none came.)
    if (u.more && found >= u.room) look_again_at_commit = true;
    // Under REPEATABLE READ or SERIALIZABLE the put-back read the transaction's snapshot, taken before it read the
    // lane: runs parked in between were not seen, and a "none left" (or a start moved past them) would forget them.
    if (IsolationUsesXactSnapshot()) return;
    if (g_header == nullptr || (found >= u.room && next_from <= u.from)) return;
    // In a subtransaction the put-back may still be rolled back alone: the lane goes on remembering (at worst a
    // later unpark finds nothing, or starts lower than it needs). Too many to remember: the same.
    if (GetCurrentTransactionNestLevel() > 1 || npending_clears == kMaxPendingClears) return;
    pending_clears[npending_clears++] =
        PendingClear{make_tag(u.pipeline_id, u.kind == kParkedKey, u.key_hash), u.seq, found < u.room, next_from};
}

}  // namespace pw::lanes
