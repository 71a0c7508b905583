// Where claims start (the claim hint), what is known of the queue's end, the looks from the queue's head, and the
// transactions that put runs below the hint: each database's entry of shared memory (DbState), read and moved by
// the claims (store/queue.cpp, worker/claiming.cpp) and the commits that make runs claimable.
#pragma once

#include "shmem/shared.hpp"

namespace pw::shared {

// The first queue key of priority level `priority` (keys as store::queue_key).
uint64 priority_start(int priority);
// Moves the claim hint back to this queue position (a key, or an id under the 0.1 schema) if it is past it, and
// counts the move (hint_lowerings).
void lower_claim_hint_to(uint64 position);
void reset_claim_hint();  // the next claim starts at the head of the queue
// Before a claim: the hint, and *lowerings the moves back so far (read together, under hint_lock). The claim moves the
// hint after it only if no move back came in between: one that did may be for runs its snapshot did not see, which
// the move would leave behind the hint.
// With it, what is known of the queue's end (QueueEnd::end: the queue key from which no run can be claimed; 0: not
// known, or no longer trusted at `now`), and the commits so far that made runs claimable (see note_queue_end).
struct QueueEnd {
    uint64 end;
    uint64 additions;
    uint64 forgets;
};
// The longest the queue's end is trusted, and the longest a look behind the hint is put off (a moment further away
// than that -- the clock was set back -- counts as passed).
constexpr int64 kQueueEndTrustMaxUs = USECS_PER_SEC;
constexpr int64 kHeadWalkWaitMaxUs = USECS_PER_SEC;
uint64 read_claim_hint(uint64 *lowerings, TimestampTz now, QueueEnd *q);
// After a claim that scanned to the end of its range and found nothing claimable from `end` on: records it, moved up
// past the runs of the commits that made runs claimable since read_claim_hint filled `q` (its snapshot may not have
// seen them) -- not at all if one of them did not say where, or they were too many to remember. `trusted_until` set:
// the scan went to the end of the queue, and the end is trusted until then; 0: the scan stopped at the known end,
// which it can only move down.
void note_queue_end(uint64 end, const QueueEnd &q, TimestampTz trusted_until);
// A commit made runs claimable at queue keys below `upto` (0: anywhere): the known end moves up to there (is
// forgotten). Before the claim hint is moved back for them.
void queue_extended(uint64 upto);
// After a claim that scanned from the hint: moves the hint up to `position` if it is below it -- only if the hint was
// not moved back since read_claim_hint returned `lowerings` -- and claim_top too (whatever the moves back).
void raise_claim_hint(uint64 position, uint64 lowerings);
// After a claim that started at claim_top (it left the moved-back part for later): moves only claim_top up.
void raise_claim_top(uint64 position);
// After a claim that found runs only below the hint: moves it and claim_top down to `position` where they are still
// `from` (no other worker moved them meanwhile) and above it.
void drop_claim_hint(uint64 from, uint64 position);
uint64 claim_top();
// Looks from the head of the queue after a hinted claim found nothing, or a worker's periodic claim from there
// (worker::claim_batch): true if one may start now -- false if they are put off (then, if `wake`, a worker wakes when
// they may again). Once a look was slow, the one that starts puts the others off until its end_head_walk (or a
// second); while they are cheap, several may run at once.
bool begin_head_walk(TimestampTz now, bool wake = true);
// After such a look: the next may start at `after` (0: at once; at most kHeadWalkWaitMaxUs from now).
void end_head_walk(TimestampTz after);
// Around the commit of a transaction that lowers or resets the claim hint: from before its runs become visible until
// the hint is moved (the commit callback runs after they are), claims start no higher than `from`, the lowest queue
// position the transaction puts runs at (0: not known -- at the head).
void begin_reorder(uint64 from);
void end_reorder();
// While such transactions commit: the lowest of their positions; UINT64_MAX when none does.
uint64 reorder_floor();

}  // namespace pw::shared
