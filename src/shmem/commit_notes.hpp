// What the current transaction did that other processes must hear of once it commits: runs created (wake that
// many idle workers), runs finished (wake wait_run callers), pipelines created or dropped (every backend's
// pipeline cache is stale). Noted as it happens; published at commit, forgotten at abort (module.cpp's
// transaction callback).
#pragma once

#include "pg/pg.hpp"

namespace pw::notes {

// n runs were created (at commit: up to n idle workers woken), at queue positions not said.
void runs_created(int n = 1);
// ... at queue keys below `upto` (the queue's known end moves up to there: shared::queue_extended).
void runs_created_upto(int n, uint64 upto);
// Queued runs at keys below `upto` were row-locked by this transaction and stay queued: a claim meanwhile skipped them
// (SKIP LOCKED), and may have put the queue's known end before them. It moves up past them at commit.
void queued_runs_locked(uint64 upto);
// A run (or schedule) becomes due at this moment: the workers' timer is set for it at commit.
void due_at(TimestampTz at);
// n runs entered the queue where the claim hint may have passed (promoted, put back, recovered): wakes up to 1,000
// workers' worth and makes the next claims start at the head. n may be 0.
void runs_queued(uint64 n);
// n runs entered the queue as runs_queued says, from queue position `from` on (the lowest of them) to below `upto`:
// the claim hint moves back to there, not to the head, and the queue's known end up to `upto` (shared::queue_extended).
void runs_queued_at(uint64 n, uint64 from, uint64 upto);
// Runs entered the queue behind the workers' claim hint (promoted, put back): their next claim starts at the head.
void queue_reordered();
// A run of this priority was queued: a claim hint past its place in the queue moves back to it.
void run_queued_with_priority(int priority);
void wake_all_workers();  // e.g. runs made claimable outside the extension's functions
void runs_finished();
// A wake parked runs as paused: once this transaction commits, the lead worker looks whether their pipeline is.
void woken_runs_parked();
// The executor of this run (running elsewhere) is asked to stop once this transaction commits (at most
// shared::kCancelRing a transaction: the cancel ring holds no more).
void cancel_at_commit(int64 run_id, bool broadcast = true);  // (broadcast: see shared::interrupt_executor)
// A subtransaction rolled back: the cancels noted in it are not sent. (The other notes only cause a wake-up or a
// look too many: kept.)
void at_subabort(SubTransactionId sub);
void pipelines_changed();
// Parent runs were handed to the database's workers (shared::offer_parent_wake): one is woken at commit to take them.
void parents_handed_over();
// Cancels of runs held elsewhere were recorded (store/cancel_requests): at commit the database's claims look for them.
void cancel_requests_recorded();

void pre_commit();  // before the commit (its runs are not visible yet)
void publish();     // at commit
// At commit, first of all: changed pipelines are told (the shared generation bumped) before anything the commit
// wakes -- a worker woken by the lanes for runs a raised limit admits must read the new definition.
void publish_pipelines();
void forget();   // at abort
// Anything noted in this transaction (PREPARE TRANSACTION is refused then: module.cpp).
bool any();

}  // namespace pw::notes
