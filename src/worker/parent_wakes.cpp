#include "worker/parent_wakes.hpp"

#include "pg/spi.hpp"
#include "shmem/shared.hpp"
#include "store/children.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// The parents to wake: first those still held when last tried (nretry of them, due again at retry_at), then those
// deferred since. A transaction that keeps a parent's row locked for long costs one short transaction per
// kMaxBackoffMs; should this worker exit first, the parent's own periodic look at its children (a minute at most)
// wakes it.
constexpr long kFirstBackoffMs = 10;
constexpr long kMaxBackoffMs = 1000;
int64 *held = nullptr;
int nheld = 0, nretry = 0, held_cap = 0;
long backoff_ms = kFirstBackoffMs;
TimestampTz retry_at = 0;

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

void defer_parent_wake(int64 id) {
    for (int i = 0; i < nheld; i++)
        if (held[i] == id) return;
    if (nheld == held_cap) {
        held_cap = held_cap > 0 ? held_cap * 2 : 16;
        held = static_cast<int64 *>(held == nullptr ? MemoryContextAlloc(TopMemoryContext, sizeof(int64) * held_cap)
                                                    : repalloc(held, sizeof(int64) * held_cap));
    }
    held[nheld++] = id;
}

void wake_held_parents() {
    // Parents a session's commit could not wake (store::wake_parents), handed to this database's workers.
    int64 offered[shared::kParentWakes];
    int noffered = shared::take_parent_wakes(offered, shared::kParentWakes);
    for (int i = 0; i < noffered; i++) defer_parent_wake(offered[i]);
    bool due = nretry > 0 && GetCurrentTimestamp() >= retry_at;
    if (nheld == nretry && !due) return;  // nothing deferred since, no retry due
    // The new ones, and the retries when due; those still held move to the front (try_wake defers nothing: no
    // list change while this loops).
    int from = due ? 0 : nretry, kept = from;
    for (int i = from; i < nheld; i++)
        if (!try_wake(held[i])) held[kept++] = held[i];
    bool had_retries = nretry > 0;
    nheld = nretry = kept;
    if (kept == 0) {
        backoff_ms = kFirstBackoffMs;
    } else if (due) {  // held again at a due retry: wait longer next time
        backoff_ms = backoff_ms * 2 > kMaxBackoffMs ? kMaxBackoffMs : backoff_ms * 2;
        retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
    } else if (!had_retries) {
        backoff_ms = kFirstBackoffMs;
        retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), backoff_ms);
    }  // (else new ones held join the retries: their next retry stands)
}

long held_parents_timeout_ms() {
    if (nheld > nretry) return 0;  // deferred, not tried yet
    if (nretry == 0) return -1;
    long ms = static_cast<long>((retry_at - GetCurrentTimestamp() + 999) / 1000);
    return ms > 0 ? ms : 0;
}

}  // namespace pw::worker
