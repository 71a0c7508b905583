#include "worker/parent_wakes.hpp"

#include "pg/spi.hpp"
#include "store/children.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// Parents still held when last tried, and when to try them again. A transaction that keeps a parent's row locked for
// long costs one short transaction per kMaxBackoffMs; should this worker exit first, the parent's own periodic look
// at its children (a minute at most) wakes it.
constexpr long kFirstBackoffMs = 10;
constexpr long kMaxBackoffMs = 1000;
int64 *held = nullptr;
int nheld = 0, held_cap = 0;
long backoff_ms = kFirstBackoffMs;
TimestampTz retry_at = 0;

void keep_held(int64 id) {
    for (int i = 0; i < nheld; i++)
        if (held[i] == id) return;
    if (nheld == held_cap) {
        held_cap = held_cap > 0 ? held_cap * 2 : 16;
        held = static_cast<int64 *>(held == nullptr ? MemoryContextAlloc(TopMemoryContext, sizeof(int64) * held_cap)
                                                    : repalloc(held, sizeof(int64) * held_cap));
    }
    held[nheld++] = id;
}

// One parent, in a transaction of its own that waits for nothing: true when done with it (woken, not waiting, gone,
// or an error, which is reported and left to the parent's periodic look), false when its row is still held.
// (Committed here, not by commit_work_txn: nothing is buffered, and that commit would call back in here.)
bool try_wake(int64 id) {
    MemoryContext ctx = CurrentMemoryContext;
    bool done = true;
    PG_TRY();
    {
        pgstat_report_activity(STATE_RUNNING, "waking a parent run");
        begin_work_txn();
        pg::spi_connect();
        done = store::try_wake_held_parent(id);
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
        done = true;
    }
    PG_END_TRY();
    return done;
}

}  // namespace

void wake_held_parents() {
    bool had_held = nheld > 0;
    bool due = had_held && GetCurrentTimestamp() >= retry_at;
    int64 chunk[16];
    int k = store::take_held_parents(chunk, 16);
    if (k == 0 && !due) return;
    // What to try now: the parents the last commit deferred, and the held ones when their retry is due.
    int ntry = 0, cap = k + (due ? nheld : 0) + 16;
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * cap));
    for (; k > 0; k = store::take_held_parents(chunk, 16)) {
        if (ntry + k > cap) ids = static_cast<int64 *>(repalloc(ids, sizeof(int64) * (cap = (ntry + k) * 2)));
        memcpy(ids + ntry, chunk, sizeof(int64) * k);
        ntry += k;
    }
    if (due) {
        if (ntry + nheld > cap) ids = static_cast<int64 *>(repalloc(ids, sizeof(int64) * (cap = ntry + nheld)));
        memcpy(ids + ntry, held, sizeof(int64) * nheld);
        ntry += nheld;
        nheld = 0;
    }
    for (int i = 0; i < ntry; i++)
        if (!try_wake(ids[i])) keep_held(ids[i]);
    pfree(ids);
    TimestampTz now = GetCurrentTimestamp();
    if (nheld == 0) {
        backoff_ms = kFirstBackoffMs;
    } else if (due) {  // held again at a due retry: wait longer next time
        backoff_ms = backoff_ms * 2 > kMaxBackoffMs ? kMaxBackoffMs : backoff_ms * 2;
        retry_at = TimestampTzPlusMilliseconds(now, backoff_ms);
    } else if (!had_held) {
        backoff_ms = kFirstBackoffMs;
        retry_at = TimestampTzPlusMilliseconds(now, backoff_ms);
    }  // (else a parent newly held joins the list: its next retry stands)
}

long held_parents_timeout_ms() {
    if (nheld == 0) return -1;
    long ms = static_cast<long>((retry_at - GetCurrentTimestamp() + 999) / 1000);
    return ms > 0 ? ms : 0;
}

}  // namespace pw::worker
