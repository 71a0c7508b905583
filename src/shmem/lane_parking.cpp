#include "shmem/lane_parking.hpp"

#include <cstring>

namespace pw::lanes::table {

namespace {

// How long a claim's parking is heeded at most: its transaction commits within commit_interval_ms after fast steps,
// but may stay open for as long as a slow step of its batch runs.
constexpr int64 kParkingMarkUs = 100 * 1000;

// The lanes this transaction parked runs of, each counted once in Lane::parkers.
constexpr int kMaxParking = 16;
Tag parking[kMaxParking];
int nparking = 0;

}  // namespace

bool parked_before(const Lane *lane, uint64 position, TimestampTz now) {
    if (has_parked(lane) && lane->unpark_from < position) return true;
    return lane->parkers > 0 && now < lane->parking_until && lane->parking_from < position;
}

void note_parking(Lane *lane, uint64 position, TimestampTz now) {
    int i = 0;
    while (i < nparking && memcmp(&parking[i], &lane->tag, sizeof(Tag)) != 0) i++;
    bool first = i == nparking;
    if (first && nparking == kMaxParking) return;  // (not heeded: the order is then as claims reach the slot)
    bool fresh = lane->parkers == 0 || now >= lane->parking_until;
    if (first) {
        parking[nparking++] = lane->tag;
        lane->parkers++;
    }
    // A new mark when none is heeded (the positions of parkers under way for longer are not). A parker overlapping
    // the mark only lowers it, without extending it: parkers coming one after the other must not hold the lane.
    if (first && fresh) {
        lane->parking_from = position;
        lane->parking_until = now + kParkingMarkUs;
    } else if (position < lane->parking_from) {
        lane->parking_from = position;
    }
}

void end_parking() {
    if (nparking > 0 && g_header != nullptr) {
        LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
        for (int i = 0; i < nparking; i++) {
            Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &parking[i], HASH_FIND, nullptr));
            if (lane != nullptr && lane->parkers > 0) lane->parkers--;  // (a lane forgotten and entered again: 0)
        }
        LWLockRelease(g_header->lock);
    }
    nparking = 0;
}

}  // namespace pw::lanes::table
