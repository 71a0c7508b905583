#include "shmem/cancels.hpp"

#include "shmem/shared.hpp"

namespace pw::shared {

namespace {

// A 64-bit finaliser (MurmurHash3's fmix64): a bijection that spreads every input bit over the word.
uint64 mix64(uint64 x) {
    x ^= x >> 33;
    x *= UINT64CONST(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64CONST(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

// Run ids are per database: the ring holds (database, run) folded into one word, never 0 (an empty entry). Within a
// database two runs never share a key (mix64 is a bijection); across databases a shared key is a 64-bit accident.
// (Until 2026-12-04 run_id ^ (database << 40): databases whose oids agreed in their low 24 bits shared every key,
// and a cancel in one stopped the run with the same id in the other.)
uint64 cancel_key(int64 run_id) {
    uint64 key = mix64(static_cast<uint64>(run_id)) ^ mix64(static_cast<uint64>(MyDatabaseId) | (UINT64CONST(1) << 63));
    return key != 0 ? key : 1;
}

bool same_db(const Slot &s) { return pg_atomic_read_u32(const_cast<pg_atomic_uint32 *>(&s.dboid)) == MyDatabaseId; }

// The filter: counts[bucket(key)] is never below the number of ring entries holding a key of that bucket -- raised
// before a key is written, lowered after it is gone -- so a zero means "not in the ring" (every step asks this,
// mostly of runs nobody cancelled: one read instead of a scan of 4,096 entries; with the ring full, 1 bucket in 16
// at most is not zero).
uint32 bucket(uint64 key) { return static_cast<uint32>((key * UINT64CONST(0x9E3779B97F4A7C15)) >> 48) % kCancelFilter; }

void forget_key(State *s, uint64 key) {
    if (key != 0) pg_atomic_fetch_sub_u32(&s->cancel_counts[bucket(key)], 1);
}

// This backend's last answer (a run is asked about before and after each of its steps): valid while the ring has not
// changed since -- every change bumps cancel_epoch after it is visible, and the epoch is read before the ring.
int64 last_run = 0;
uint32 last_epoch = 0;
bool last_answer = false;

}  // namespace

void request_cancel(int64 run_id) {
    State *s = state();
    if (s == nullptr) return;
    uint64 key = cancel_key(run_id);
    pg_atomic_fetch_add_u32(&s->cancel_counts[bucket(key)], 1);
    uint32 i = pg_atomic_fetch_add_u32(&s->cancel_next, 1) % kCancelRing;
    forget_key(s, pg_atomic_exchange_u64(&s->cancels[i], key));  // (the oldest request leaves the ring)
    pg_atomic_fetch_add_u32(&s->cancel_epoch, 1);
}

void clear_cancel(int64 run_id) {
    State *s = state();
    if (s == nullptr) return;
    uint64 key = cancel_key(run_id);
    if (pg_atomic_read_u32(&s->cancel_counts[bucket(key)]) == 0) return;
    for (int i = 0; i < kCancelRing; i++) {
        uint64 expected = key;
        if (pg_atomic_compare_exchange_u64(&s->cancels[i], &expected, 0)) forget_key(s, key);
    }
    pg_atomic_fetch_add_u32(&s->cancel_epoch, 1);
}

void forget_all_cancels() {
    State *s = state();
    if (s == nullptr) return;
    for (int i = 0; i < kCancelRing; i++) forget_key(s, pg_atomic_exchange_u64(&s->cancels[i], 0));
    pg_atomic_fetch_add_u32(&s->cancel_epoch, 1);
}

bool cancel_requested(int64 run_id, bool from_handler) {
    State *s = state();
    if (s == nullptr) return false;
    uint32 epoch = pg_atomic_read_u32(&s->cancel_epoch);
    if (!from_handler && run_id == last_run && epoch == last_epoch && last_run != 0) return last_answer;
    pg_read_barrier();  // (the epoch before the ring: a change seen in the ring but not in the epoch is only re-read)
    uint64 key = cancel_key(run_id);
    bool found = false;
    if (pg_atomic_read_u32(&s->cancel_counts[bucket(key)]) != 0)
        for (int i = 0; i < kCancelRing && !found; i++) found = pg_atomic_read_u64(&s->cancels[i]) == key;
    if (from_handler) return found;
    last_run = run_id;
    last_epoch = epoch;
    last_answer = found;
    return found;
}

namespace {

// Signals the workers executing run_id (shared-memory slots: its own worker, and those helping with its map tasks
// or steps); false if none is.
bool signal_executors(int64 run_id) {
    State *st = state();
    bool found = false;
    if (st != nullptr)
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && same_db(st->slots[i]) &&
                pg_atomic_read_u64(&st->slots[i].run_id) == static_cast<uint64>(run_id)) {
                found = true;
                if (st->slots[i].pid != MyProcPid) kill(st->slots[i].pid, SIGINT);  // each checks it is still this run
            }
    return found;
}

}  // namespace

void interrupt_executor(int64 run_id, bool broadcast) {
    if (signal_executors(run_id) || !broadcast) return;
    SessionExec *session = session_executing(run_id);
    if (session != nullptr && session->pid != MyProcPid) {
        // A session's execute_run: its SIGINT handler honours a signal marked as ours only while a step of a
        // cancelled run executes (a late one does not cancel the session's next statement).
        pg_atomic_write_u32(&session->signal_pending, 1);
        kill(session->pid, SIGINT);
    } else if (session == nullptr) {
        if (State *st = state())
            for (int i = 0; i < st->nslots; i++)
                if (st->slots[i].pid != 0 && st->slots[i].pid != MyProcPid && same_db(st->slots[i]))
                    kill(st->slots[i].pid, SIGINT);
    }
}

namespace {

struct Written {
    int64 run_id;
    SubTransactionId sub;
};
Written *written = nullptr;  // (TopMemoryContext: reused by every transaction)
int nwritten = 0, written_cap = 0;

}  // namespace

void cancel_written(int64 run_id) {
    if (nwritten == written_cap) {
        int cap = written_cap == 0 ? 64 : written_cap * 2;
        written = static_cast<Written *>(written == nullptr ? MemoryContextAlloc(TopMemoryContext, sizeof(Written) * cap)
                                                            : repalloc(written, sizeof(Written) * cap));
        written_cap = cap;
    }
    written[nwritten++] = {run_id, GetCurrentSubTransactionId()};
}

void cancels_at_commit() { nwritten = 0; }

void cancels_at_abort() {
    for (int i = 0; i < nwritten; i++) clear_cancel(written[i].run_id);
    nwritten = 0;
}

void cancels_at_subabort(SubTransactionId sub) {
    // (Subtransactions begun since `sub` was, and not yet ended, are its own: their ids are higher.)
    int kept = 0;
    for (int i = 0; i < nwritten; i++) {
        if (written[i].sub >= sub) clear_cancel(written[i].run_id);
        else written[kept++] = written[i];
    }
    nwritten = kept;
}

}  // namespace pw::shared
