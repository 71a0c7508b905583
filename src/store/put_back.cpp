#include "store/put_back.hpp"

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "pg/subxact.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/queue.hpp"

namespace pw::store {

using pg::col;

namespace {

// How long a put-back waits for a parked run's row lock, and how long the database's put-backs then skip locked rows. The workers
// hold such locks for a claim batch at most: under load, tens of milliseconds (at 100 ms, a drain of a pipeline at
// "concurrency" 4 met 77 waits that long, and skipping made it a quarter slower); anything near a second is a
// session's transaction (a cancel_run() or a SELECT ... FOR UPDATE not yet committed). Until 2026-12-05 the
// put-back waited for it: every worker that came to put runs back waited with it, the database's claims with them,
// for as long as that transaction stayed open (test/scripts/row_locks.sh).
constexpr int kLockWaitMs = 1000;
constexpr int64 kSkipLockedUs = 10 * USECS_PER_SEC;

// (No SKIP LOCKED at first: a row skipped because another worker is putting it back would make this one conclude
// that the lane has nothing parked left, and forget the rest; and workers putting back the same lane at once, each
// skipping the other's rows, would put back several times what the lane has room for. Only once a lock outlasted
// kLockWaitMs do put-backs skip locked rows, and then conclude nothing about the lanes.)
SPIPlanPtr plans[2][2];  // [per key][skip locked]

#define PW_UNPARK_KEY(lock)                                                                                           \
    "/* pw_indexes: runs_parked_key_idx r.runs_pkey */ UPDATE pipeline_worker.runs r SET parked = NULL"                \
    " FROM (SELECT id FROM pipeline_worker.runs WHERE status = 'pending' AND parked = 2"                               \
    "   AND pipeline_id = $1 AND pg_catalog.hashtextextended(concurrency_key, 0) = $2"                                \
    "   AND ROW(- priority, id) >= ROW($4, $5)"                                                                       \
    "   ORDER BY - priority, id LIMIT $3 " lock ") k WHERE r.id = ANY (ARRAY[k.id]) RETURNING r.priority, r.id"
#define PW_UNPARK_PIPELINE(lock)                                                                                      \
    "/* pw_indexes: runs_parked_idx r.runs_pkey */ UPDATE pipeline_worker.runs r SET parked = NULL"                    \
    " FROM (SELECT id FROM pipeline_worker.runs WHERE status = 'pending' AND parked IS NOT NULL"                       \
    "   AND pipeline_id = $1 AND parked = $2 AND ROW(- priority, id) >= ROW($4, $5)"                                  \
    "   ORDER BY - priority, id LIMIT $3 " lock ") k WHERE r.id = ANY (ARRAY[k.id]) RETURNING r.priority, r.id"

SPIPlanPtr lane_plan(bool per_key, bool skip_locked) {
    static const char *const sql[2][2] = {
        {PW_UNPARK_PIPELINE("FOR UPDATE"), PW_UNPARK_PIPELINE("FOR UPDATE SKIP LOCKED")},
        {PW_UNPARK_KEY("FOR UPDATE"), PW_UNPARK_KEY("FOR UPDATE SKIP LOCKED")}};
    Oid types[5] = {INT8OID, static_cast<Oid>(per_key ? INT8OID : INT2OID), INT4OID, INT4OID, INT8OID};
    return pg::prepare(&plans[per_key][skip_locked], sql[per_key][skip_locked], 5, types);
}
#undef PW_UNPARK_KEY
#undef PW_UNPARK_PIPELINE

// One lane's put-back, from the lane's unpark start: the runs put back before leave dead entries at the front of
// the parked index. Its rows are SPI_tuptable's.
void put_back_lane(const lanes::Unpark &u, bool skip_locked) {
    Datum from_priority, from_id;
    split_key(static_cast<int64>(u.from), &from_priority, &from_id);
    Datum v[5] = {Int64GetDatum(u.pipeline_id),
                  u.kind == lanes::kParkedKey ? Int64GetDatum(static_cast<int64>(u.key_hash))
                                              : Int16GetDatum(static_cast<int16>(u.kind)),
                  Int32GetDatum(u.room), from_priority, from_id};
    pg::exec_as_owner(lane_plan(u.kind == lanes::kParkedKey, skip_locked), v, nullptr, false, 0);
}

// What a lane's put-back found: how many runs, the queue keys [first, upto) they span, the lane's next start. (Read
// in the subtransaction, noted after it: notes of a put-back rolled back would move the claim hint for nothing.)
struct LaneResult {
    int found;
    uint64 first, upto, next_from;
};

struct Round {
    const lanes::Unpark *lanes;
    int n;
    bool skip_locked;
    LaneResult *out;
};

// The round's lanes, one after the other (in one subtransaction: one subtransaction id for the round, not one per
// lane -- 64 fill the subtransaction cache, and every snapshot taken meanwhile would have to look them up).
void put_back_lanes(void *arg) {
    const Round *r = static_cast<const Round *>(arg);
    for (int i = 0; i < r->n; i++) {
        const lanes::Unpark &u = r->lanes[i];
        put_back_lane(u, r->skip_locked);
        LaneResult &res = r->out[i];
        res.found = static_cast<int>(SPI_processed);
        (void)requeued_range(&res.first, &res.upto);  // (every row has an id)
        res.next_from = res.upto > u.from ? res.upto : u.from;
    }
}

// After a (re)start the lanes remember nothing: every run parked by a limit goes back to the queue once, and is
// parked again if its lane is still full. skip_locked: the runs another transaction keeps locked stay parked.
void put_back_all_limited(bool skip_locked) {
    static SPIPlanPtr plan_all[2];
    SPIPlanPtr p = pg::prepare(&plan_all[skip_locked],
                               skip_locked ? "/* pw_indexes: runs_parked_idx r.runs_pkey */ UPDATE pipeline_worker.runs r"
                                             " SET parked = NULL FROM (SELECT id FROM pipeline_worker.runs"
                                             "   WHERE status = 'pending' AND parked IS NOT NULL AND parked IN (1, 2)"
                                             "   FOR UPDATE SKIP LOCKED) k WHERE r.id = ANY (ARRAY[k.id])"
                                           : "UPDATE pipeline_worker.runs SET parked = NULL"
                                             " WHERE status = 'pending' AND parked IN (1, 2)",
                               0, nullptr);
    pg::exec_as_owner(p, nullptr, nullptr, false, 0);
    notes::runs_queued(SPI_processed);
}

void fresh_start(void *) {
    if (lanes::take_fresh_start()) put_back_all_limited(false);
}

// Until then put-backs skip locked rows without waiting: the database's (shared::DbState::put_back_skip_until, for
// every worker and session), or -- where the database has no entry (a session's claim_run() where no worker serves)
// -- this backend's.
TimestampTz backend_skip_until = 0;

bool skipping_locks(TimestampTz now) {
    shared::DbState *d = shared::db();
    return now < (d != nullptr ? static_cast<TimestampTz>(pg_atomic_read_u64(&d->put_back_skip_until))
                               : backend_skip_until);
}

// A put-back that failed in its subtransaction: one that waited kLockWaitMs for a row lock starts the skipping (the
// round due at its end looks again, whoever runs it); any other error is rethrown.
void lock_waited(ErrorData *ed) {
    if (ed->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE) ReThrowError(ed);
    FreeErrorData(ed);
    TimestampTz until = GetCurrentTimestamp() + kSkipLockedUs;
    if (shared::DbState *d = shared::db()) pg_atomic_write_u64(&d->put_back_skip_until, static_cast<uint64>(until));
    else backend_skip_until = until;
    shared::note_retry_due(until);
}

}  // namespace

// Once a row lock made a put-back wait kLockWaitMs, the database's put-backs skip locked rows for kSkipLockedUs: one
// open transaction holding parked runs costs the database one wait of a second every 10 s, not one per worker, lane
// or round (a busy limited lane asks for a round at each release). A lane put back skipping rows concludes nothing
// (its parked runs stay known, its start where it was), and one that found less than it had room for is looked at
// again a second later: the run skipped goes back at the first look after its lock is gone.
int64 unpark_runs() {
    TimestampTz now = GetCurrentTimestamp();
    bool skipping = skipping_locks(now);
    bool connected = false;
    // The fresh start in a subtransaction, whose rollback gives it back (lanes.cpp): the runs locked now are put back
    // by the fresh start taken once the skipping ends. (Left alone meanwhile: put back at every round, the claims
    // would park every run of a full lane again.)
    if (!skipping && lanes::fresh_start_pending()) {
        pg::spi_connect();
        connected = true;
        if (ErrorData *ed = pg::try_subtransaction(fresh_start, nullptr, kLockWaitMs)) {
            lock_waited(ed);
            skipping = true;
            put_back_all_limited(true);
        }
    }
    lanes::Unpark lanes_out[32];
    int n = lanes::lanes_to_unpark(lanes_out, 32);
    if (n == 0) {
        if (connected) SPI_finish();
        return 0;
    }
    if (!connected) pg::spi_connect();
    LaneResult results[32];
    Round round{lanes_out, n, skipping, results};
    if (skipping) {
        put_back_lanes(&round);
    } else if (ErrorData *ed = pg::try_subtransaction(put_back_lanes, &round, kLockWaitMs)) {
        lock_waited(ed);  // (every lane again, skipping: the subtransaction's put-backs were rolled back)
        round.skip_locked = true;
        put_back_lanes(&round);
    }
    int64 total = 0;
    bool look_again = false;
    for (int i = 0; i < n; i++) {
        const lanes::Unpark &u = lanes_out[i];
        const LaneResult &res = results[i];
        total += res.found;
        lanes::put_back_done(u, res.found, res.next_from, round.skip_locked);
        if (res.found > 0) notes::runs_queued_at(static_cast<uint64>(res.found), res.first, res.upto);
        if (round.skip_locked)
            look_again = look_again || res.found < u.room;  // (rows skipped: nothing to conclude about the lane)
        else
            lanes::unpark_done(u, res.found, res.next_from);
    }
    SPI_finish();
    if (look_again) shared::note_retry_due(now + USECS_PER_SEC);
    return total;
}

}  // namespace pw::store
