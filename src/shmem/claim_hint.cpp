#include "shmem/claim_hint.hpp"

namespace pw::shared {

uint64 priority_start(int priority) {
    // (32767 - priority) << 47: the first key of that priority level (store::queue_key)
    return static_cast<uint64>(32767 - priority) << 47;
}

void lower_claim_hint_to(uint64 position) {
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->hint_lock);
    if (pg_atomic_read_u64(&d->claim_hint) > position) pg_atomic_write_u64(&d->claim_hint, position);
    // (counted even when the hint is already lower: a claim in flight may be about to move it past `position`)
    d->hint_lowerings++;
    SpinLockRelease(&d->hint_lock);
}

uint64 read_claim_hint(uint64 *lowerings, TimestampTz now, QueueEnd *q) {
    // (under the lock: read without it, a weakly ordered CPU could show the new count with the old hint)
    DbState *d = db();
    *q = QueueEnd{0, 0, 0};
    if (d == nullptr) return *lowerings = 0;
    SpinLockAcquire(&d->hint_lock);
    uint64 hint = pg_atomic_read_u64(&d->claim_hint);
    *lowerings = d->hint_lowerings;
    q->additions = d->queue_additions;
    q->forgets = d->queue_forgets;
    if (d->queue_end_until > now && d->queue_end_until - now <= kQueueEndTrustMaxUs) q->end = d->queue_end;
    SpinLockRelease(&d->hint_lock);
    return hint;
}

void note_queue_end(uint64 end, const QueueEnd &q, TimestampTz trusted_until) {
    constexpr uint64 kRing = sizeof(DbState::added_upto) / sizeof(uint64);
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->hint_lock);
    if (d->queue_forgets == q.forgets && d->queue_additions - q.additions <= kRing) {
        for (uint64 a = q.additions; a != d->queue_additions; a++)
            if (d->added_upto[a % kRing] > end) end = d->added_upto[a % kRing];
        if (trusted_until != 0) {
            d->queue_end = end;
            d->queue_end_until = trusted_until;
        } else if (d->queue_end != 0 && end < d->queue_end) {
            d->queue_end = end;  // (still trusted as long as the end it started from)
        }
    }
    SpinLockRelease(&d->hint_lock);
}

void queue_extended(uint64 upto) {
    constexpr uint64 kRing = sizeof(DbState::added_upto) / sizeof(uint64);
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->hint_lock);
    if (upto == 0) {
        d->queue_forgets++;
        d->queue_end = 0;
    } else {
        d->added_upto[d->queue_additions % kRing] = upto;
        if (d->queue_end != 0 && d->queue_end < upto) d->queue_end = upto;
    }
    d->queue_additions++;
    SpinLockRelease(&d->hint_lock);
}

void raise_claim_hint(uint64 position, uint64 lowerings) {
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->hint_lock);
    if (d->hint_lowerings == lowerings && pg_atomic_read_u64(&d->claim_hint) < position)
        pg_atomic_write_u64(&d->claim_hint, position);
    if (pg_atomic_read_u64(&d->claim_top) < position) pg_atomic_write_u64(&d->claim_top, position);
    SpinLockRelease(&d->hint_lock);
}

void drop_claim_hint(uint64 from, uint64 position) {
    DbState *d = db();
    if (d == nullptr || position >= from) return;
    SpinLockAcquire(&d->hint_lock);
    if (pg_atomic_read_u64(&d->claim_hint) == from) pg_atomic_write_u64(&d->claim_hint, position);
    if (pg_atomic_read_u64(&d->claim_top) == from) pg_atomic_write_u64(&d->claim_top, position);
    SpinLockRelease(&d->hint_lock);
}

void raise_claim_top(uint64 position) {
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->hint_lock);
    if (pg_atomic_read_u64(&d->claim_top) < position) pg_atomic_write_u64(&d->claim_top, position);
    SpinLockRelease(&d->hint_lock);
}

uint64 claim_top() {
    DbState *d = db();
    return d == nullptr ? 0 : pg_atomic_read_u64(&d->claim_top);
}

bool begin_head_walk(TimestampTz now, bool wake) {
    DbState *d = db();
    if (d == nullptr) return true;
    uint64 after = pg_atomic_read_u64(&d->head_walks_after);
    // (0: never put off -- such walks are cheap, several at once do no harm)
    while (after != 0) {
        TimestampTz at = static_cast<TimestampTz>(after);
        // (A mark set at most a second past the setter's clock -- which may have been read later than `now`: a walk
        // just begun by a worker whose clock was read a moment after this one's. Until 2026-12-05 the bound was the
        // second itself, and workers woken together each took that mark for a stale one: 7 slow walks at once.
        // Twice that is still short of a clock stepped back, which must not close the gate for long.)
        if (at > now && at - now <= 2 * kHeadWalkWaitMaxUs) {
            if (wake) note_retry_due(static_cast<TimestampTz>(after));  // a worker looks then
            return false;
        }
        // One at a time: the one that starts puts the others off for a second, or until its end says otherwise.
        if (pg_atomic_compare_exchange_u64(&d->head_walks_after, &after, static_cast<uint64>(now + kHeadWalkWaitMaxUs)))
            return true;
    }
    return true;
}

void end_head_walk(TimestampTz after) {
    if (DbState *d = db()) pg_atomic_write_u64(&d->head_walks_after, static_cast<uint64>(after));
}

void begin_reorder(uint64 from) {
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->reorder_lock);
    pg_atomic_write_u32(&d->reorders, pg_atomic_read_u32(&d->reorders) + 1);
    if (from < d->reorder_from) d->reorder_from = from;
    SpinLockRelease(&d->reorder_lock);
}

void end_reorder() {
    DbState *d = db();
    if (d == nullptr) return;
    SpinLockAcquire(&d->reorder_lock);
    uint32 n = pg_atomic_read_u32(&d->reorders);
    if (n > 0) pg_atomic_write_u32(&d->reorders, n - 1);
    if (n <= 1) d->reorder_from = UINT64_MAX;  // (the last one: the next window starts afresh)
    SpinLockRelease(&d->reorder_lock);
}

uint64 reorder_floor() {
    DbState *d = db();
    if (d == nullptr || pg_atomic_read_u32(&d->reorders) == 0) return UINT64_MAX;
    SpinLockAcquire(&d->reorder_lock);
    uint64 from = pg_atomic_read_u32(&d->reorders) == 0 ? UINT64_MAX : d->reorder_from;
    SpinLockRelease(&d->reorder_lock);
    return from;
}

void reset_claim_hint() { lower_claim_hint_to(0); }

}  // namespace pw::shared
