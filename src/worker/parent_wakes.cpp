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
shared::ParentWake *held = nullptr;  // (xid: a session's transaction that must end first; invalid for this worker's)
int nheld = 0, nretry = 0, held_cap = 0;
long backoff_ms = kFirstBackoffMs;
TimestampTz retry_at = 0;

void add_held(int64 id, TransactionId xid) {
    for (int i = 0; i < nheld; i++)
        if (held[i].id == id && held[i].xid == xid) return;
    if (nheld == held_cap) {
        held_cap = held_cap > 0 ? held_cap * 2 : 16;
        size_t size = sizeof(shared::ParentWake) * held_cap;
        held = static_cast<shared::ParentWake *>(held == nullptr ? MemoryContextAlloc(TopMemoryContext, size)
                                                                 : repalloc(held, size));
    }
    held[nheld++] = shared::ParentWake{id, xid};
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
        // READ COMMITTED whatever the database's default: under REPEATABLE READ, a parent's row committed (as
        // waiting) after the snapshot raised 40001 at the lock, and the wake waited for the parent's minute look
        begin_work_txn(true);
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

void defer_parent_wake(int64 id) { add_held(id, InvalidTransactionId); }

void wake_held_parents() {
    // Parents a session could not wake (store::wake_parents), handed to this database's workers.
    shared::ParentWake offered[shared::kParentWakes];
    int noffered = shared::take_parent_wakes(offered);
    for (int i = 0; i < noffered; i++) add_held(offered[i].id, offered[i].xid);
    bool due = nretry > 0 && GetCurrentTimestamp() >= retry_at;
    if (nheld == nretry && !due) return;  // nothing deferred since, no retry due
    // The new ones, and the retries when due; those still held move to the front (try_wake defers nothing: no
    // list change while this loops).
    int from = due ? 0 : nretry, kept = from;
    // (a session's transaction still running: its child's end is not visible yet -- tried again later)
    for (int i = from; i < nheld; i++)
        if ((TransactionIdIsValid(held[i].xid) && TransactionIdIsInProgress(held[i].xid)) || !try_wake(held[i].id))
            held[kept++] = held[i];
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

void hand_back_held_parents() {
    for (int i = 0; i < nheld; i++) (void)shared::offer_parent_wake(held[i].id, held[i].xid);
    nheld = nretry = 0;
}

}  // namespace pw::worker
