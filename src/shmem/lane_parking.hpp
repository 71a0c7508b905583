// Claims under way that park a lane's runs. A claim that finds a lane full parks the runs it locked (store/queue.cpp)
// and those are known as parked (Lane::unpark_from) only once its transaction commits. Until then another claim, which
// skipped those locked rows, could start a run of the lane from behind them as soon as a slot frees -- a lower
// priority, or a later run, ahead of the parked ones. So the parking claim marks the lane at once: the lowest
// position it parks, heeded until its transaction ends, for kParkingMarkUs at most (a slow step in its batch must
// not hold the lane). Internal to shmem/lanes*.cpp; under Header::lock, exclusive.
#pragma once

#include "shmem/lane_table.hpp"

namespace pw::lanes::table {

// Runs of the lane parked before position, or being parked by a claim under way: they go first.
bool parked_before(const Lane *lane, uint64 position, TimestampTz now);
// This transaction parks the lane's runs from position on.
void note_parking(Lane *lane, uint64 position, TimestampTz now);
// This transaction ends: its marks go (takes the lock itself; call after its parked runs are noted at commit).
void end_parking();

}  // namespace pw::lanes::table
