// The order of a limited lane's runs. Runs that wait while a lane is full are parked (store/queue.cpp), and come back
// through store/put_back.cpp, first ones first, when it has room. A run of the lane still queued behind them -- passed
// over by another claim, or filtered while the lane was full -- must not take that room first. Two bounds say what
// comes first, both under Header::lock (exclusive to change):
// - Lane::order_from: a bound on the positions parked, lowered when a claim's parked runs are committed, raised past
//   the runs each put-back brought back once it commits (or rolled back with its subtransaction), and "none" when a
//   put-back found fewer than it had room for or could not tell (rows skipped, a transaction snapshot). Heeded only
//   while the lane has parked runs (has_parked), and not under REPEATABLE READ or SERIALIZABLE; a claim that meets a
//   run past it asks for a put-back: a bound gone stale (the parked runs cancelled meanwhile, say) goes at that look.
// - The parking marks: a claim that finds the lane full marks the lowest position it parks at once -- its parked runs
//   are known only at its commit, and another claim, which skipped those locked rows, would start a run from behind
//   them meanwhile. Heeded until its transaction ends, kParkingMarkUs at most (a slow step in its batch must not
//   hold the lane). Internal to shmem/lanes*.cpp.
#pragma once

#include "shmem/lane_table.hpp"

namespace pw::lanes::table {

// Runs of the lane parked, or being parked by a claim under way, before position: they go first (this transaction's
// own put-backs count as done). *ask: a put-back should look at the lane (the bound may be stale).
bool parked_before(const Lane *lane, uint64 position, TimestampTz now, bool *ask);
// This transaction parks the lane's runs from position on.
void note_parking(Lane *lane, uint64 position, TimestampTz now);
// At commit, before the transaction's parked runs are noted (they lower order_from again): its put-backs'
// conclusions. Then, at commit or abort, after those notes: its marks go. Each takes the lock itself.
void apply_order_notes();
void end_parking();

}  // namespace pw::lanes::table
