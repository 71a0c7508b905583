#include "shmem/commit_notes.hpp"

#include "shmem/cancels.hpp"

#include <climits>

#include "shmem/claim_hint.hpp"
#include "shmem/shared.hpp"

namespace pw::notes {

namespace {

int created = 0;
bool finished = false;
bool woken_parked = false;  // a wake parked runs as paused (store::note_woken): the lead worker looks after the commit
bool pipelines = false;
bool reordered = false;
bool extension = false;
TimestampTz due = 0;
int top_priority = INT_MIN;
uint64 back_at = UINT64_MAX;  // the lowest queue position of the runs this transaction's commit puts back unstarted
// The runs this transaction's commit makes claimable: all below queue key `added_upto` (0: none), unless some are at
// positions not said (added_anywhere). The queue's known end moves up for them (shared::queue_extended).
uint64 added_upto = 0;
bool added_anywhere = false;
// runs whose executors are told at commit (grown as needed, in TopMemoryContext; kept for the next transaction)
int64 *cancels = nullptr;
bool *cancels_broadcast = nullptr;
int ncancels = 0, cancels_cap = 0;
SubTransactionId *cancels_sub = nullptr;  // the subtransaction each was noted in (at_subabort)
bool reorder_begun = false;  // shared::begin_reorder() at pre-commit, ended once the hint is moved

}  // namespace

void add_created(int n) {
    if (n > 0 && created < INT_MAX / 2) created += n;
}

void runs_created(int n) {
    add_created(n);
    added_anywhere = true;
}

void runs_created_upto(int n, uint64 upto) {
    add_created(n);
    if (n > 0 && upto > added_upto) added_upto = upto;
}

void queued_runs_locked(uint64 upto) {
    if (upto > added_upto) added_upto = upto;
}

void queue_reordered() {
    reordered = true;
    added_anywhere = true;
}

void runs_queued(uint64 n) {
    if (n == 0) return;
    runs_created(static_cast<int>(n > 1000 ? 1000 : n));
    reordered = true;
}

void runs_queued_at(uint64 n, uint64 from, uint64 upto) {
    if (n == 0) return;
    add_created(static_cast<int>(n > 1000 ? 1000 : n));
    if (from < back_at) back_at = from;
    if (upto > added_upto) added_upto = upto;
}

void due_at(TimestampTz at) {
    if (due == 0 || at < due) due = at;
}

void run_queued_with_priority(int priority) {
    if (priority > top_priority) top_priority = priority;
}

void wake_all_workers() {
    created = INT_MAX / 2;
    added_anywhere = true;  // (runs made claimable elsewhere: the queue's known end is forgotten)
    extension = true;
}

void runs_finished() { finished = true; }

void woken_runs_parked() { woken_parked = true; }

void pipelines_changed() { pipelines = true; }

namespace {
bool parents = false;  // parents were handed to the workers (shared::offer_parent_wake)
}  // namespace

void parents_handed_over() { parents = true; }

namespace {
bool cancel_records = false;
}  // namespace

void cancel_requests_recorded() { cancel_records = true; }

void cancel_at_commit(int64 run_id, bool broadcast) {
    if (ncancels >= shared::kCancelRing) return;  // (more would only push each other out of the ring)
    if (ncancels == cancels_cap) {
        int cap = cancels_cap == 0 ? 64 : cancels_cap * 2;
        cancels = static_cast<int64 *>(cancels == nullptr ? MemoryContextAlloc(TopMemoryContext, sizeof(int64) * cap)
                                                          : repalloc(cancels, sizeof(int64) * cap));
        cancels_broadcast = static_cast<bool *>(cancels_broadcast == nullptr
                                                     ? MemoryContextAlloc(TopMemoryContext, sizeof(bool) * cap)
                                                     : repalloc(cancels_broadcast, sizeof(bool) * cap));
        cancels_sub = static_cast<SubTransactionId *>(
            cancels_sub == nullptr ? MemoryContextAlloc(TopMemoryContext, sizeof(SubTransactionId) * cap)
                                   : repalloc(cancels_sub, sizeof(SubTransactionId) * cap));
        cancels_cap = cap;
    }
    cancels_broadcast[ncancels] = broadcast;
    cancels_sub[ncancels] = GetCurrentSubTransactionId();
    cancels[ncancels++] = run_id;
}

void at_subabort(SubTransactionId sub) {
    // (cancels noted in the rolled-back subtransaction, or in one begun inside it, are not sent at commit: until
    // 2026-12-05 a parent's failure undone by ROLLBACK TO SAVEPOINT still cancelled its running children)
    int kept = 0;
    for (int i = 0; i < ncancels; i++) {
        if (cancels_sub[i] >= sub) continue;
        cancels[kept] = cancels[i];
        cancels_broadcast[kept] = cancels_broadcast[i];
        cancels_sub[kept++] = cancels_sub[i];
    }
    ncancels = kept;
}

namespace {

bool moves_hint() { return reordered || top_priority > 0 || back_at != UINT64_MAX; }

// Where this transaction's commit moves the claim hint back to: the head (reordered: the positions are not known),
// the start of the highest priority queued, or the lowest position put back -- whichever is lowest.
uint64 hint_target() {
    if (reordered) return 0;
    uint64 to = back_at;
    if (top_priority > 0 && shared::priority_start(top_priority) < to) to = shared::priority_start(top_priority);
    return to;
}

}  // namespace

void pre_commit() {
    if (moves_hint() && !reorder_begun) {  // (publish moves the hint; claims start no higher until then)
        shared::begin_reorder(hint_target());
        reorder_begun = true;
    }
}

void publish_pipelines() {
    if (pipelines) shared::bump_pipelines_generation();
    pipelines = false;
}

void publish() {
    for (int i = 0; i < ncancels; i++) {
        shared::request_cancel(cancels[i]);
        shared::interrupt_executor(cancels[i], cancels_broadcast[i]);
    }
    if (due != 0) shared::note_retry_due(due);
    if (added_anywhere || created > 0 || added_upto > 0) shared::queue_extended(added_anywhere ? 0 : added_upto);
    if (moves_hint()) shared::lower_claim_hint_to(hint_target());
    if (created > 0) shared::wake_workers(created);
    if (finished) shared::broadcast_run_done();
    if (woken_parked)
        if (shared::DbState *d = shared::db()) pg_atomic_write_u32(&d->wake_parked, 1);
    if (pipelines) shared::bump_pipelines_generation();
    if (extension) shared::note_extension_present();
    if (parents) shared::wake_workers(1);  // (each is taken once this transaction has ended)
    if (cancel_records)  // (after the commit is visible: a sweep that reads the new sequence sees the records)
        if (shared::DbState *d = shared::db()) pg_atomic_fetch_add_u64(&d->cancel_records_seq, 1);
    forget();
}

bool any() {
    return created > 0 || finished || woken_parked || pipelines || reordered || extension || due != 0 || top_priority != INT_MIN ||
           back_at != UINT64_MAX || added_upto != 0 || added_anywhere || ncancels > 0 || parents || reorder_begun ||
           cancel_records;
}

void forget() {
    created = 0;
    finished = false;
    woken_parked = false;
    pipelines = false;
    reordered = false;
    extension = false;
    due = 0;
    top_priority = INT_MIN;
    back_at = UINT64_MAX;
    added_upto = 0;
    added_anywhere = false;
    ncancels = 0;
    parents = false;
    cancel_records = false;
    if (reorder_begun) shared::end_reorder();
    reorder_begun = false;
}

}  // namespace pw::notes
