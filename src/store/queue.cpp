#include "store/queue.hpp"

#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/lanes.hpp"
#include "shmem/claim_hint.hpp"
#include "shmem/shared.hpp"
#include "store/direct_claim.hpp"
#include "store/pipelines.hpp"

extern "C" {
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/lsyscache.h"
}

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_claim, plan_mark, plan_park, plan_promote, plan_next_due;

struct LaneSeen {
    int64 pipeline_id;
    bool per_key;
    uint64 key_hash;
    bool full;   // a pipeline lane found full at this claim: its later runs here are parked too
    int parked;  // runs of the claim parked for it
};

LaneSeen *seen_lane(LaneSeen *seen, int n, const LaneSeen &l) {
    for (int i = 0; i < n; i++)
        if (seen[i].pipeline_id == l.pipeline_id && seen[i].per_key == l.per_key && seen[i].key_hash == l.key_hash)
            return &seen[i];
    return nullptr;
}

void park(const int64 *ids, const int16 *kinds, int n) {
    Datum kd[64];
    for (int i = 0; i < n; i++) kd[i] = Int16GetDatum(kinds[i]);
    Oid types[2] = {INT8ARRAYOID, INT2ARRAYOID};
    Datum v[2] = {pg::int8_array(ids, n), pg::make_array(kd, nullptr, n, INT2OID)};
    SPIPlanPtr p = pg::prepare(&plan_park,
                               "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET parked = u.kind"
                               " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(id, kind)"
                               " WHERE r.id = ANY (ARRAY[u.id])",
                               2, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
}

// How far past a claim park_lane_behind looks (queue positions of the same priority): a bounded walk, so that a
// lane with few runs left in a long queue of other work costs a claim little.
constexpr int64 kParkBehindSpan = 20000;
// A claim that filtered full pipeline lanes and took longer than this (µs), or read more than kParkBacklogEntries
// entries of runs_ready_idx, has them parked from then on. (The time alone was the rule until 2026-12-06: a 20,000-run
// backlog took 4.5 ms to filter here, and a machine 2-3 times faster would take under 2 ms and leave it queued. The
// entries read say the same on every machine; the time still catches a walk made slow otherwise, and covers
// track_counts = off, which leaves the entries uncounted.)
constexpr int64 kParkBacklogUs = 2000;
constexpr int64 kParkBacklogEntries = 5000;

// Entries of runs_ready_idx this backend read in this transaction (as pg_stat_get_xact_tuples_returned): 0 when
// statistics are not counted.
int64 ready_entries_read(Oid index) {
    PgStat_TableStatus *s = OidIsValid(index) ? find_tabstat_entry(index) : nullptr;
    return s != nullptr ? s->t_counts.t_tuples_returned : 0;
}
SPIPlanPtr plan_park_behind;

// Parks the queued runs of a full pipeline lane that follow queue position `after`, up to kParkBehindSpan positions
// further at the same priority (the walk of runs_ready_idx is bounded; SKIP LOCKED: a run another claim holds is that
// claim's). Returns how many.
int park_lane_behind(int64 pipeline_id, int64 after) {
    int64 mask = (int64(1) << kIdBits) - 1;
    int64 id = after & mask;
    int64 upto = id + kParkBehindSpan < mask ? id + kParkBehindSpan : mask;
    Oid types[4] = {INT8OID, INT4OID, INT8OID, INT8OID};
    Datum v[4] = {Int64GetDatum(pipeline_id), Int32GetDatum(-key_priority(after)), Int64GetDatum(id),
                  Int64GetDatum(upto)};
    SPIPlanPtr p = pg::prepare(&plan_park_behind,
                               "/* pw_indexes: runs_ready_idx r.runs_pkey */ UPDATE pipeline_worker.runs r SET parked = 1"
                               " FROM (SELECT id FROM pipeline_worker.runs"
                               "   WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL"
                               "   AND - priority = $2 AND id > $3 AND id <= $4 AND pipeline_id = $1"
                               "   ORDER BY - priority, id FOR UPDATE SKIP LOCKED) k WHERE r.id = ANY (ARRAY[k.id])",
                               4, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    return static_cast<int>(SPI_processed);
}

int last_parked = 0;
int limited_claimed = 0;
bool scan_exhausted = false;  // the last claim_queued's scan: see last_claim_exhausted
int64 scan_last_key = 0;

}  // namespace

namespace {

// Row i of the last SPI statement's result, whose columns 1 and 2 are a run's priority and id: its queue key (false:
// no id).
bool row_key(uint64 i, int64 *key) {
    bool pnull, inull;
    int priority = DatumGetInt32(col(i, 1, &pnull));
    int64 id = DatumGetInt64(col(i, 2, &inull));
    *key = queue_key(pnull ? 0 : priority, id);
    return !inull;
}

}  // namespace

bool requeued_range(uint64 *from, uint64 *upto) {
    int64 lo = PG_INT64_MAX, hi = 0, k;
    for (uint64 i = 0; i < SPI_processed; i++) {
        if (!row_key(i, &k)) continue;
        if (k < lo) lo = k;
        if (k + 1 > hi) hi = k + 1;
    }
    *from = static_cast<uint64>(lo);
    *upto = static_cast<uint64>(hi);
    return lo != PG_INT64_MAX;
}

void note_requeued() {
    uint64 from, upto;
    if (requeued_range(&from, &upto)) notes::runs_queued_at(SPI_processed, from, upto);
    else notes::runs_queued(SPI_processed);
}

void note_locked_queued() {
    int64 upto = 0, k;
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool qnull;
        bool queued = DatumGetBool(col(i, 3, &qnull));
        if (!qnull && queued && row_key(i, &k) && k + 1 > upto) upto = k + 1;
    }
    if (upto > 0) notes::queued_runs_locked(static_cast<uint64>(upto));
}

int limited_in_last_claim() { return limited_claimed; }

bool last_claim_exhausted(int64 *last_key) {
    *last_key = scan_last_key;
    return scan_exhausted;
}

int take_parked_count() {
    int n = last_parked;
    last_parked = 0;
    return n;
}

void release_stale_slots() {
    int64 held[64];
    int n = lanes::held_runs(held, 64);
    if (n == 0) return;  // (the common case: no catalog lookup, no statement)
    pg::spi_connect();
    static SPIPlanPtr plan_mine = nullptr;
    Oid types[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[3] = {pg::int8_array(held, n), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
    SPIPlanPtr p = pg::prepare(&plan_mine,
                               "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs WHERE id = ANY ($1)"
                               " AND CASE status WHEN 'running' THEN worker_pid = $2 AND worker_started_at = $3"
                               " ELSE false END",
                               3, types);
    // Not read-only: that would read with the calling statement's snapshot, which does not see a claim made
    // earlier in the same statement (two claim_run() in one SELECT): its slot was taken for stale and freed.
    pg::exec_as_owner(p, v, nullptr, false, 0);
    for (int i = 0; i < n; i++) {
        bool mine = false;
        for (uint64 r = 0; r < SPI_processed && !mine; r++) {
            bool isnull;
            mine = DatumGetInt64(col(r, 1, &isnull)) == held[i];
        }
        if (!mine) lanes::release_now(held[i]);
    }
    SPI_finish();
}

bool any_queued() {
    static SPIPlanPtr plan_any_v2 = nullptr, plan_any_v1 = nullptr;
    if (schema_version() >= 2)
        pg::run_as_owner(&plan_any_v2,
                         "/* pw_indexes: runs_ready_idx */ SELECT 1 FROM pipeline_worker.runs"
                         " WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL LIMIT 1",
                         0, nullptr, nullptr, nullptr, true);
    else
        pg::run_as_owner(&plan_any_v1,
                         "/* pw_indexes: runs_pending_idx */ SELECT 1 FROM pipeline_worker.runs WHERE status = 'pending' LIMIT 1",
                         0, nullptr, nullptr, nullptr, true);
    return SPI_processed > 0;
}

int schema_version() {
    Oid ns = get_namespace_oid("pipeline_worker", true);
    Oid runs = OidIsValid(ns) ? get_relname_relid("runs", ns) : InvalidOid;
    lanes::set_instance(runs);
    return OidIsValid(runs) && get_attnum(runs, "parked") != InvalidAttrNumber ? 2 : 1;
}

namespace {

// The claim by its statement (the lanes' filters, a session's claim_run, or where direct_claim declines), its rows
// into crow. Each row deformed once: its columns past the first text one have no cached offset, and reading them one
// by one (SPI_getbinval) walked the row again for each.
int claim_statement(int max, Oid submitter, int64 min_key, int64 below_key, int64 *full_pipelines, int nfp,
                    const int64 *full_keys, int nfk, bool mark_running, ClaimRow *crow) {
    Oid types[8] = {INT4OID, OIDOID, INT4OID, INT8OID, INT4OID, INT8OID, INT8ARRAYOID, INT8ARRAYOID};
    Datum v[8];
    v[0] = Int32GetDatum(max);
    v[1] = ObjectIdGetDatum(submitter);
    split_key(min_key, &v[2], &v[3]);
    split_key(below_key, &v[4], &v[5]);
    v[6] = pg::int8_array(full_pipelines, nfp);
    v[7] = pg::int8_array(full_keys, nfk);
    SPIPlanPtr plan = pg::prepare(
        &plan_claim,
        "/* pw_indexes: runs_ready_idx */ SELECT id, pipeline, submitted_by::oid, input, metadata, claims + 1,"
        " pipeline_id, priority, concurrency_key IS NOT NULL,"
        " pg_catalog.hashtextextended(concurrency_key, 0), pg_catalog.hashtextextended(concurrency_key, pipeline_id), ctid"
        " FROM pipeline_worker.runs"
        " WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL"
        "   AND ($2 = 0::oid OR submitted_by = $2::regrole)"
        "   AND ROW(- priority, id) >= ROW($3, $4) AND ROW(- priority, id) < ROW($5, $6)"
        "   AND NOT pipeline_id = ANY ($7)"
        "   AND NOT COALESCE(pg_catalog.hashtextextended(concurrency_key, pipeline_id), 0) = ANY ($8)"
        " ORDER BY - priority, id LIMIT $1 FOR UPDATE SKIP LOCKED",
        8, types);
    TimestampTz started = nfp > 0 && !mark_running ? GetCurrentTimestamp() : 0;
    Oid ready_idx = InvalidOid;
    int64 entries_before = 0;
    if (started != 0) {
        Oid ns = get_namespace_oid("pipeline_worker", true);
        ready_idx = OidIsValid(ns) ? get_relname_relid("runs_ready_idx", ns) : InvalidOid;
        entries_before = ready_entries_read(ready_idx);
    }
    pg::exec_as_owner(plan, v, nullptr, false, 0);
    int n = static_cast<int>(SPI_processed);
    SPITupleTable *rows = SPI_tuptable;
    if (n > 0 && rows->tupdesc->natts != 12) elog(ERROR, "pipeline_worker: the claim returned %d columns", rows->tupdesc->natts);
    for (int i = 0; i < n; i++) heap_deform_tuple(rows->vals[i], rows->tupdesc, crow[i].v, crow[i].isnull);
    TimestampTz now = GetCurrentTimestamp();
    // Newly marked: this backend claims again at once (its latch set), and that claim parks them -- nothing else may
    // come for a while: the workers that filtered them go idle, and the lead worker's 1 s look may be the one
    // executing the lane's only run (flow_limits.sh failed so in CI twice: 0 of 20,000 parked in 3 s).
    if (started != 0 &&
        (now - started > kParkBacklogUs || ready_entries_read(ready_idx) - entries_before > kParkBacklogEntries) &&
        lanes::park_backlogs(full_pipelines, nfp))
        SetLatch(MyLatch);
    return n;
}

}  // namespace

int claim_queued(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_key,
                 int64 below_key) {
    if (max > 64) max = 64;
    // Lanes full right now are filtered out (their runs stay queued, unlocked, for when they have room): a claim
    // past the head does not lock and park runs it cannot start. Races with other claimers still park a few.
    constexpr int kMaxFiltered = 256;
    int64 full_pipelines[kMaxFiltered], full_keys[kMaxFiltered];
    int nfp = 0, nfk = 0;
    // (Not in a worker's claim from the head: the lanes' next release would move the claim hint back to min_key, the
    // head, and the next claims would walk from there and filter again -- with a snapshot held open, each such walk
    // reads the index entry of every run claimed since. That claim parks the runs of full lanes instead, and
    // store::unpark_runs says where it puts them back. A session's claim_run filters: it is one run, seldom.)
    // A full pipeline lane with a long backlog is not filtered but locked and parked (below): filtered, its backlog
    // was walked by every claim (50,000 runs at "concurrency" 4 took 58-76 s, both cores busy). A short one is cheaper
    // to filter: parked, every run would wait for a commit that puts it back. A filtering claim that took longer
    // than kParkBacklogUs or read more than kParkBacklogEntries index entries tells the two apart
    // (lanes::park_backlogs).
    if (min_key > 0 || mark_running)
        (void)lanes::full_lanes(mark_running ? UINT64_MAX : static_cast<uint64>(min_key), full_pipelines, &nfp,
                                full_keys, &nfk, kMaxFiltered, mark_running);  // (claim_run moves no hint: no floor)
    // The plain case without a statement (store/direct_claim); the statement otherwise, and where that declines.
    ClaimRow crow[64];
    int n = nfp == 0 && nfk == 0 && !mark_running ? direct_claim(max, submitter, min_key, below_key, crow) : -1;
    if (n < 0) n = claim_statement(max, submitter, min_key, below_key, full_pipelines, nfp, full_keys, nfk,
                                   mark_running, crow);
    TimestampTz now = GetCurrentTimestamp();
    int kept = 0, nparked = 0;
    int64 parked_ids[64];
    int16 parked_kinds[64];
    LaneSeen seen[128];
    LaneSeen *tail = nullptr;  // the lane the claim's last run was parked for
    int nseen = 0, admitted_limited = 0;
    auto row_key = [&](int i) { return queue_key(DatumGetInt32(crow[i].v[7]), DatumGetInt64(crow[i].v[0])); };
    int64 first_key = n > 0 ? row_key(0) : 0;
    int64 last_key = n > 0 ? row_key(n - 1) : 0;
    // Fewer rows than asked for, and no lane filtered out: nothing else in the range could be claimed by this snapshot
    // (but rows other transactions held: shared::note_queue_end).
    scan_exhausted = n < max && nfp == 0 && nfk == 0;
    scan_last_key = last_key;
    const Datum *cells;
    const bool *cell_nulls;
    auto cell = [&](int colno, bool *isnull) {
        *isnull = cell_nulls[colno - 1];
        return cells[colno - 1];
    };
    for (int i = 0; i < n; i++) {
        bool isnull, key_null;
        cells = crow[i].v;
        cell_nulls = crow[i].isnull;
        int64 id = DatumGetInt64(cell(1, &isnull));
        char *pipeline = TextDatumGetCString(cell(2, &isnull));
        int64 pipeline_id = DatumGetInt64(cell(7, &isnull));
        bool has_key = DatumGetBool(cell(9, &isnull));
        Datum hash = cell(10, &key_null);
        uint64 key_hash = key_null ? 0 : static_cast<uint64>(DatumGetInt64(hash));
        Datum fhash = cell(11, &key_null);
        int64 filter_hash = key_null ? 0 : DatumGetInt64(fhash);
        Pipeline *p = load_pipeline(pipeline);  // (a dropped pipeline: the executor fails the run)
        TimestampTz claimed_at = now;
        if (p != nullptr && (p->limits.any() || (has_key && p->limits_per_key.any()))) {
            LaneSeen lp = {pipeline_id, false, 0, false, 0}, lk = {pipeline_id, true, key_hash, false, 0};
            bool key_limited = has_key && p->limits_per_key.any();
            LaneSeen *sp = p->limits.any() ? seen_lane(seen, nseen, lp) : nullptr;
            LaneSeen *sk = key_limited ? seen_lane(seen, nseen, lk) : nullptr;
            // A pipeline lane found full in this claim: its later runs here are parked with the first one (its
            // backlog goes out of the queue a batch at a time, not a run per claim). Key lanes are filtered instead
            // (see above): their later runs here stay queued, as passed over.
            if (sp != nullptr && sp->full) {
                sp->parked++;
                parked_ids[nparked] = id;
                parked_kinds[nparked++] = static_cast<int16>(lanes::kParkedPipeline);
                if (i == n - 1) tail = sp;
                continue;
            }
            // One run per lane and claim: the others stay queued for other workers (no worker hoards slots).
            if (sp != nullptr || sk != nullptr) {
                // Left queued, past this claim's first run (queue order): the lane's next release -- at the latest
                // that of its run this claim admitted -- moves the claim hint back to there.
                lanes::passed_over(pipeline_id, p->limits.any(), key_limited, key_hash, static_cast<uint64>(first_key),
                                   static_cast<uint64>(last_key) + 1);
                continue;
            }
            lanes::Request req = {id,           pipeline_id,       p->limits,   has_key,
                                  key_hash,     p->limits_per_key, mark_running, filter_hash,
                                  static_cast<uint64>(row_key(i))};
            int blocked = lanes::admit(req);
            if (blocked == lanes::kBehindParked) {
                // Runs of its lane parked before it go first (their put-back is asked for): left queued, as passed
                // over -- and so are the lane's later runs in this claim.
                if (p->limits.any() && nseen < 128) seen[nseen++] = lp;
                if (key_limited && nseen < 128) seen[nseen++] = lk;
                lanes::passed_over(pipeline_id, p->limits.any(), key_limited, key_hash, static_cast<uint64>(first_key),
                                   static_cast<uint64>(last_key) + 1);
                continue;
            }
            if (blocked == lanes::kParkedPipeline) lp.full = true, lp.parked = 1;
            if (p->limits.any() && nseen < 128) seen[nseen++] = lp;
            if (key_limited && nseen < 128) seen[nseen++] = lk;
            if (blocked == lanes::kParkedPipeline && i == n - 1) tail = seen_lane(seen, nseen, lp);
            if (blocked == 0) {
                admitted_limited++;
                claimed_at = GetCurrentTimestamp();  // (its started_at if shown first: not before its window took it)
            }
            if (blocked != 0) {
                parked_ids[nparked] = id;
                parked_kinds[nparked++] = static_cast<int16>(blocked);
                lanes::note_parked(pipeline_id, blocked, key_hash,
                                   static_cast<uint64>(queue_key(DatumGetInt32(cell(8, &isnull)), id)));
                continue;
            }
        }
        MemoryContext old = MemoryContextSwitchTo(dest);
        ClaimedRun &r = out[kept++];
        r.id = id;
        r.pipeline = pstrdup(pipeline);
        r.submitter = DatumGetObjectId(cell(3, &isnull));
        r.input = DatumGetJsonbPCopy(cell(4, &isnull));
        r.metadata = DatumGetJsonbPCopy(cell(5, &isnull));
        r.claims = DatumGetInt32(cell(6, &isnull));
        r.pipeline_id = pipeline_id;
        r.priority = DatumGetInt32(cell(8, &isnull));
        r.claimed_at = claimed_at;
        r.persisted = mark_running;
        r.tid = mark_running ? ItemPointerData{} : *reinterpret_cast<ItemPointer>(DatumGetPointer(cell(12, &isnull)));
        MemoryContextSwitchTo(old);
    }
    if (nparked > 0) park(parked_ids, parked_kinds, nparked);
    // The claim ended inside a full lane's backlog -- at least half of its runs were that lane's -- and the runs of
    // that lane queued right behind it are parked now too, in one statement, not a batch per claim. (Not for lanes
    // that are a few runs among many others, such as one key of hundreds: that walk would find few runs to park.)
    if (n == max && tail != nullptr && 2 * tail->parked >= n) {
        last_parked += park_lane_behind(tail->pipeline_id, last_key);
    }
    limited_claimed = admitted_limited;
    last_parked += nparked;
    if (mark_running && kept > 0) {
        int64 ids[64];
        for (int i = 0; i < kept; i++) ids[i] = out[i].id;
        Oid mt[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
        Datum mv[3] = {pg::int8_array(ids, kept), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
        SPIPlanPtr p = pg::prepare(&plan_mark,
                                   "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'running',"
                                   " worker_pid = $2, worker_started_at = $3, started_at = pg_catalog.clock_timestamp(),"
                                   " claims = r.claims + 1 WHERE r.id = ANY ($1)",
                                   3, mt);
        pg::exec_as_owner(p, mv, nullptr, false, 0);
    }
    return kept;
}

int64 promote_due_runs() {
    pg::spi_connect();
    // The time as a parameter, not clock_timestamp() (volatile: a filter): "not_before <= $1" bounds the scan of
    // runs_due_idx to the due runs, instead of reading every future-dated run each time a few are due.
    Oid types[1] = {TIMESTAMPTZOID};
    Datum v[1] = {TimestampTzGetDatum(GetCurrentTimestamp())};
    SPIPlanPtr p = pg::prepare(&plan_promote,
                               "/* pw_indexes: runs_due_idx r.runs_pkey pipelines_id_key */ UPDATE pipeline_worker.runs r"
                               " SET status = 'pending', not_before = NULL, waiting_for = NULL," PW_PARKED_IF_PAUSED
                               " FROM (SELECT id FROM pipeline_worker.runs"
                               "   WHERE status IN ('pending', 'waiting') AND not_before <= $1"
                               "   ORDER BY not_before LIMIT 10000 FOR UPDATE SKIP LOCKED) d"
                               " WHERE r.id = ANY (ARRAY[d.id]) RETURNING r.priority, r.id, r.parked",
                               1, types);
    pg::exec_as_owner(p, v, nullptr, false, 0);
    int64 n = static_cast<int64>(SPI_processed);
    note_woken();
    SPI_finish();
    return n;
}

void note_woken() {
    note_requeued();
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        Datum parked = col(i, 3, &isnull);
        if (!isnull && DatumGetInt16(parked) == 3) {
            notes::woken_runs_parked();  // (at commit: a look before it would not see the runs parked)
            return;
        }
    }
}

int64 unpark_resumed() {
    shared::DbState *d = shared::db();
    if (d == nullptr) return 0;
    // Also once a minute without a wake noted: the flag is taken before this transaction, and one that failed or
    // whose worker was terminated lost it -- its runs stayed parked as paused on a pipeline not paused, for good
    // (until 2026-12-05; a fault audit).
    static TimestampTz last_look = 0;
    TimestampTz now = GetCurrentTimestamp();
    bool due = now - last_look >= 60 * USECS_PER_SEC;
    if (pg_atomic_exchange_u32(&d->wake_parked, 0) == 0 && !due) return 0;  // (no wake parked a run since)
    last_look = now;
    static SPIPlanPtr plan_candidates = nullptr, plan_locked = nullptr, plan_unpark = nullptr;
    pg::spi_connect();
    // The pipelines that have runs parked as paused (one probe of the parked index each: LATERAL ... LIMIT 1 keeps
    // the pipelines outside), first as seen, then locked FOR SHARE SKIP LOCKED: a pause coming later waits for this
    // transaction and parks what it puts back; a pause or resume in flight holds its row and is left for the next
    // look (as seen, a resume in flight is still paused). Of those locked, the runs of the ones not paused go back.
#define PW_PARKED_PIPELINES(lock)                                                                                   \
    "/* pw_indexes: pipelines_id_key x.runs_parked_idx */ SELECT p.id, p.paused FROM pipeline_worker.pipelines p,"  \
    " LATERAL (SELECT 1 FROM pipeline_worker.runs r WHERE r.pipeline_id = p.id AND r.status = 'pending'"           \
    "   AND r.parked = 3 LIMIT 1) x" lock
    pg::exec_as_owner(pg::prepare(&plan_candidates, PW_PARKED_PIPELINES(""), 0, nullptr), nullptr, nullptr, true, 0);
    uint64 seen = SPI_processed;
    pg::exec_as_owner(pg::prepare(&plan_locked, PW_PARKED_PIPELINES(" FOR SHARE OF p SKIP LOCKED"), 0, nullptr),
                      nullptr, nullptr, false, 0);
#undef PW_PARKED_PIPELINES
    if (SPI_processed < seen) pg_atomic_write_u32(&d->wake_parked, 1);  // (those held: the next look)
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * (SPI_processed + 1)));
    int nids = 0;
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        if (!DatumGetBool(col(i, 2, &isnull))) ids[nids++] = DatumGetInt64(col(i, 1, &isnull));
    }
    int64 n = 0;
    if (nids > 0) {
        Oid types[1] = {INT8ARRAYOID};
        Datum v[1] = {pg::int8_array(ids, nids)};
        // Locked first, SKIP LOCKED: a run a user's transaction holds is left for the next look, not waited for (the
        // lead worker's other chores and its claims would wait with it); then those locked go back, by id.
        static SPIPlanPtr plan_lock_parked = nullptr;
        pg::exec_as_owner(pg::prepare(&plan_lock_parked,
                                      "/* pw_indexes: runs_parked_idx */ SELECT id FROM pipeline_worker.runs"
                                      " WHERE pipeline_id = ANY ($1) AND status = 'pending' AND parked = 3"
                                      " FOR UPDATE SKIP LOCKED",
                                      1, types),
                          v, nullptr, false, 0);
        int nlocked = static_cast<int>(SPI_processed);
        if (nlocked > 0) {
            int64 *locked = static_cast<int64 *>(palloc(sizeof(int64) * nlocked));
            for (int i = 0; i < nlocked; i++) {
                bool isnull;
                locked[i] = DatumGetInt64(col(i, 1, &isnull));
            }
            Datum lv[1] = {pg::int8_array(locked, nlocked)};
            pg::exec_as_owner(pg::prepare(&plan_unpark,
                                          "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET parked = NULL"
                                          " WHERE id = ANY ($1) RETURNING priority, id",
                                          1, types),
                              lv, nullptr, false, 0);
            n = static_cast<int64>(SPI_processed);
            if (n > 0) note_requeued();
        }
        static SPIPlanPtr plan_left = nullptr;
        pg::exec_as_owner(pg::prepare(&plan_left,
                                      "/* pw_indexes: runs_parked_idx */ SELECT 1 FROM pipeline_worker.runs"
                                      " WHERE pipeline_id = ANY ($1) AND status = 'pending' AND parked = 3 LIMIT 1",
                                      1, types),
                          v, nullptr, false, 1);
        if (SPI_processed > 0) pg_atomic_write_u32(&d->wake_parked, 1);  // (skipped: the next look)
    }
    SPI_finish();
    return n;
}

TimestampTz next_due_run() {
    SPIPlanPtr p = pg::prepare(&plan_next_due,
                               "/* pw_indexes: runs_due_idx */ SELECT not_before FROM pipeline_worker.runs"
                               " WHERE status IN ('pending', 'waiting') AND not_before IS NOT NULL"
                               " ORDER BY not_before LIMIT 1",
                               0, nullptr);
    // Not read-only: the snapshot must see the runs this transaction just promoted (read-only, it did not, and the
    // timer was set for one already in the queue: a second round at once, alongside the claims of the first's runs).
    pg::exec_as_owner(p, nullptr, nullptr, false, 1);
    bool isnull = true;
    Datum d = SPI_processed > 0 ? col(0, 1, &isnull) : 0;
    return isnull ? 0 : DatumGetTimestampTz(d);
}

}  // namespace pw::store
