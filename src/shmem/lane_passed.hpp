// The runs a transaction's claims passed over: runs of a limited lane left queued (one per lane and claim), locked
// by the claiming transaction until it ends. Noted here by lanes::passed_over, applied at its end. Internal to
// shmem/lanes*.cpp.
#pragma once

#include "shmem/lane_table.hpp"

namespace pw::lanes::table {

// At commit or abort, before the transaction's own slots are given back: each lane's floor is lowered to the first
// run passed over (the lane's next release moves the claim hint back there), and the queue's known end moves up past
// the last one. Takes the lock itself.
void apply_passed_over();
// This transaction passed runs over that apply_passed_over has not applied yet.
bool passed_over_pending();

}  // namespace pw::lanes::table
