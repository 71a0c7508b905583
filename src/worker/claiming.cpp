#include "worker/claiming.hpp"

#include <algorithm>
#include <utility>

#include "shmem/claim_hint.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/queue.hpp"
#include "worker/run_times.hpp"

namespace pw::worker {

int64 queue_position(const store::ClaimedRun &r, int version) {
    return version >= 2 ? store::queue_key(r.priority, r.id) : r.id;
}

namespace {

// Claiming from the head of the queue makes every worker lock-probe the runs the others hold, and step over
// index entries of finished runs. Workers share a hint -- just past the highest id claimed -- and scan from
// there; a claim from the head (min_id 0) comes when the hinted one finds too little, and every
// kFullClaimEvery claims, so that runs behind the hint (released, retried, recovered) are served in order --
// but a worker's periodic head claims take at most 1/kHeadClaimCostShare of its time (2 %): such a claim walks the
// queue's entries of every run claimed since the oldest snapshot in the database (they cannot be marked dead
// before), and one session that keeps a snapshot -- a report, pg_dump, a client idle in a transaction, a
// standby's feedback -- made each walk longer: a 300,000-run drain took 19 s instead of 5, reading 365 million
// index entries (test/scripts/held_snapshot.sh). The claim that finds nothing past the hint still goes to the head
// at once, so no run waits for a walk when the workers run out of work -- unless such a look was slow (see
// look_behind below).
constexpr int kFullClaimEvery = 16;
constexpr int kHeadClaimCostShare = 50;
constexpr int kLowClaimCostShare = 10;
constexpr int64 kLowClaimSlowUs = 5000;
int claims_since_full = 0;
int64 last_head_us = 0;          // how long this worker's last head claim took
TimestampTz last_head_end = 0;   // and when it ended
int64 last_low_us = 0;           // the same for its last claim from a hint moved back below claim_top
TimestampTz last_low_end = 0;

// After a hinted claim from `hint`: what it learnt of the queue's end (shared::note_queue_end). A scan that reached
// the end of its range saw nothing claimable past its last row; one that went to the end of the queue (none known)
// makes the end trusted for kEndTrustShare times as long as it took (such walks take at most a fiftieth of the
// workers' time), at most shared::kQueueEndTrustMaxUs -- the longest a run made claimable without a commit that says
// so (a row another transaction held locked during the scan, and released by an abort) may wait.
constexpr int64 kEndTrustShare = 50;

void note_end(int64 hint, const shared::QueueEnd &q, int version, TimestampTz start) {
    uint64 known_end = q.end;
    int64 last_key = 0;
    // (0.1: no queue keys. REPEATABLE READ or SERIALIZABLE by default: the claim saw the transaction's snapshot, taken
    // before it read what commits had said -- one published between the two it would neither see nor count.)
    if (version < 2 || IsolationUsesXactSnapshot()) return;
    bool scanned = known_end == 0 || static_cast<uint64>(hint) < known_end;
    if (scanned && !store::last_claim_exhausted(&last_key)) return;
    uint64 end = last_key > 0 ? static_cast<uint64>(last_key) + 1 : static_cast<uint64>(hint);
    if (known_end != 0) {
        if (end < known_end) shared::note_queue_end(end, q, 0);
        return;
    }
    TimestampTz now = GetCurrentTimestamp();
    int64 trust = kEndTrustShare * (now - start);
    shared::note_queue_end(end, q, now + (trust < shared::kQueueEndTrustMaxUs ? trust : shared::kQueueEndTrustMaxUs));
}

bool periodic_head_claim_due() {
    if (claims_since_full < kFullClaimEvery) return false;
    return GetCurrentTimestamp() - last_head_end >= kHeadClaimCostShare * last_head_us;
}

}  // namespace

pg_noinline int claim_batch(int batch, store::ClaimedRun *runs, MemoryContext ctx, int *version_out) {
    int version = store::schema_version();
    *version_out = version;
    shared::DbState *st = shared::db();  // a worker's database is always served
    uint64 lowerings;  // (see raise_claim_hint)
    shared::QueueEnd q;  // (see note_queue_end)
    int64 shared_hint = static_cast<int64>(shared::read_claim_hint(&lowerings, GetCurrentTimestamp(), &q));
    uint64 known_end = IsolationUsesXactSnapshot() ? 0 : q.end;  // (see note_end)
    int64 hint = shared_hint;
    // While a transaction that puts runs below the hint commits, they may be visible before it moves the hint: start
    // no higher than where it puts them (at the head when that is not known).
    uint64 reorder_from = shared::reorder_floor();
    bool reordering = reorder_from < static_cast<uint64>(hint);
    if (reordering) hint = static_cast<int64>(reorder_from);
    // The hint moved back below claim_top (runs committed or put back behind it): a claim from there walks the queue's
    // entries between the two -- with a snapshot held open, those of every run claimed since it was taken. Once such a
    // claim took kLowClaimSlowUs or more, they take at most 1/kLowClaimCostShare of a worker's time (the next waits
    // 10 times as long as the last took); the claims between start at claim_top and leave the hint where it is.
    // (Moves back coming faster than such a walk takes kept every claim walking: a priority run every 10 ms during a
    // 200,000-run drain with a snapshot held took > 300 s instead of 7 -- the 2026-12-04 note on issue 12.) Cheaper
    // walks (no snapshot held) are never put off: runs moved back keep their turn exactly.
    int64 top_mark = static_cast<int64>(shared::claim_top());
    bool behind = hint < top_mark && !reordering;
    bool walked_lately = GetCurrentTimestamp() - last_low_end < kLowClaimCostShare * last_low_us;
    if (behind && last_low_us >= kLowClaimSlowUs && walked_lately) hint = top_mark;
    bool from_low = hint == shared_hint || reordering;  // this claim scans the part the hint was moved back over
    // A periodic claim from the head is one of the database's walks from there (one at a time once they are slow, the
    // next put off 50 times as long as the last took, at most a second): each worker's own share left 8 workers free to
    // walk at once -- with a snapshot held open, each through the entries of every run claimed since (held_snapshot.sh).
    bool periodic = hint > 0 && periodic_head_claim_due() && shared::begin_head_walk(GetCurrentTimestamp(), false);
    bool hinted = hint > 0 && !periodic;
    int n = 0;
    if (hinted) {
        TimestampTz low_start = GetCurrentTimestamp();
        // Not past the queue's known end (a claim found nothing there since, and no commit put runs there): its index
        // entries are those of runs no longer queued -- with a snapshot held, entries that cannot be marked dead. A
        // claim that did not fill its batch walked them all. At or past it: nothing to claim, no scan.
        bool scan = known_end == 0 || static_cast<uint64>(hint) < known_end;
        if (scan)
            n = store::claim_runs(batch, InvalidOid, runs, ctx, false, hint,
                                  known_end != 0 ? static_cast<int64>(known_end) : PG_INT64_MAX);
        note_end(hint, q, version, low_start);
        claims_since_full++;
        if (behind && from_low && scan) {
            last_low_end = GetCurrentTimestamp();
            last_low_us = last_low_end - low_start;
        }
    }
    int from_hint = n;
    // From the head only when the hinted claim found nothing, or every kFullClaimEvery claims: a claim that
    // found work past the hint does not also pay a scan of the head (which steps over the index entries of
    // runs finished since the last vacuum -- the cost that dominated the wake-up at low rates).
    // The hinted claim found nothing: below the hint are only runs whose commit did not move it back (a create_run
    // committed late, behind runs claimed meanwhile). Once such a look found nothing and took kLowClaimSlowUs or
    // more -- with a snapshot held open it reads the entry of every run claimed since -- the next waits 10 times as
    // long as it took (at most a second), for every worker (one looks then: shared::begin_head_walk). Workers woken
    // for a run another one took first each made that walk (a limited pipeline's drain).
    bool look_behind = hinted && n == 0;
    if ((n == 0 || !hinted) && (!look_behind || shared::begin_head_walk(GetCurrentTimestamp()))) {
        // From the head; below the hint if the hinted claim ran: this transaction already holds those rows.
        TimestampTz head_start = GetCurrentTimestamp();
        n += store::claim_runs(batch - n, InvalidOid, runs + n, ctx, false, 0, hinted ? hint : PG_INT64_MAX);
        claims_since_full = 0;
        last_head_end = GetCurrentTimestamp();
        last_head_us = last_head_end - head_start;
        from_low = true;  // (the head claim covered everything below where the hinted one started)
        if (look_behind || periodic) {
            int64 wait = (periodic ? kHeadClaimCostShare : kLowClaimCostShare) * last_head_us;
            if (wait > shared::kHeadWalkWaitMaxUs) wait = shared::kHeadWalkWaitMaxUs;
            bool put_off = last_head_us >= kLowClaimSlowUs && (periodic || n == 0);
            shared::end_head_walk(put_off ? last_head_end + wait : 0);
        }
    }
    if (n > 0) pg_atomic_write_u64(&st->last_claim, static_cast<uint64>(GetCurrentTimestamp()));  // busy
    if (pg_atomic_read_u32(&st->wanted) != 0) pg_atomic_write_u32(&st->wanted, 0);  // a worker is looking here
    int64 top = 0;
    for (int i = 0; i < n; i++) top = queue_position(runs[i], version) > top ? queue_position(runs[i], version) : top;
    // Up past this batch -- unless the hint was moved back meanwhile: a run committed at a better position (a higher
    // priority, a run put back) after this claim's snapshot, or a lane's runs this claim filtered out and whose slot
    // was released meanwhile (the release took the skip floor the claim set), would stay behind the hint until the next
    // claim from the head (up to kFullClaimEvery claims later) while the rest of the queue went first.
    if (hinted && from_hint == 0 && n > 0) {
        // Nothing at or past the hint, work below it: ids restarted (extension re-created, table truncated) or
        // only older runs are left. Move the hint down (a hint too low only costs a longer scan); otherwise every
        // claim would pay a useless hinted query first.
        shared::drop_claim_hint(static_cast<uint64>(hint), static_cast<uint64>(top + 1));
    } else if (n > 0 && from_low) {
        shared::raise_claim_hint(static_cast<uint64>(top + 1), lowerings);
    } else if (n > 0 && top_mark < top + 1) {
        shared::raise_claim_top(static_cast<uint64>(top + 1));
    }
    // keep the batch in queue order
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && queue_position(runs[j - 1], version) > queue_position(runs[j], version); j--)
            std::swap(runs[j - 1], runs[j]);
    return n;
}

void rate_places_first(store::ClaimedRun *runs, int n) {
    Assert(n <= kMaxBatch);
    bool held[kMaxBatch];  // (each run looked up once: lanes' holdings are a list)
    bool any = false;
    for (int i = 0; i < n; i++) any |= held[i] = lanes::holds_rate_place(runs[i].id);
    if (!any) return;
    for (int i = 1; i < n; i++) {
        if (!held[i]) continue;
        int j = i;
        while (j > 0 && runs[j - 1].priority == runs[i].priority && !held[j - 1]) j--;
        std::rotate(runs + j, runs + i, runs + i + 1);
        std::rotate(held + j, held + i, held + i + 1);
    }
}

}  // namespace pw::worker
