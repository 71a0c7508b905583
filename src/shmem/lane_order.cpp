#include "shmem/lane_order.hpp"

#include <cstring>

extern "C" {
#include "access/xact.h"
}

namespace pw::lanes::table {

namespace {

// How long a claim's parking is heeded at most: its transaction commits within commit_interval_ms after fast steps,
// but may stay open for as long as a slow step of its batch runs.
constexpr int64 kParkingMarkUs = 100 * 1000;

// The lanes this transaction parked runs of, each counted once in Lane::parkers.
constexpr int kMaxParking = 16;
Tag parking[kMaxParking];
int nparking = 0;

// What this transaction's put-backs concluded for order_from, applied at its commit. (More lanes than that: their
// bound stays until a later look moves it -- or the lane has no parked runs left, and the bound is not heeded.)
struct OrderNote {
    Tag tag;
    uint64 seq;   // Lane::parked_seq the put-back saw: runs parked since keep their bound
    uint64 next;  // past the runs it brought back; UINT64_MAX: none left, or cannot tell
    SubTransactionId subid;  // (dropped if that subtransaction is rolled back)
};
constexpr int kMaxOrderNotes = 64;
OrderNote order_notes[kMaxOrderNotes];
int norder = 0;

}  // namespace

bool parked_before(const Lane *lane, uint64 position, TimestampTz now, bool *ask) {
    // (Not under REPEATABLE READ or SERIALIZABLE, the workers' too when it is the database's default: no put-back
    // concludes anything about a lane then, and a lane past the first ones a look takes might never be looked at.)
    uint64 from = IsolationUsesXactSnapshot() ? UINT64_MAX : lane->order_from;
    for (int i = 0; i < norder && from < position; i++)  // (its own put-backs: their runs are queued for it)
        if (order_notes[i].seq == lane->parked_seq && memcmp(&order_notes[i].tag, &lane->tag, sizeof(Tag)) == 0 &&
            order_notes[i].next > from)
            from = order_notes[i].next;
    *ask = has_parked(lane) && from < position;
    if (*ask) return true;
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

void apply_order_notes() {
    if (norder > 0 && g_header != nullptr) {
        LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
        for (int i = 0; i < norder; i++) {
            Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &order_notes[i].tag, HASH_FIND, nullptr));
            // (parked again since the look: the bound stands, and a later look moves it)
            if (lane != nullptr && lane->parked_seq == order_notes[i].seq && order_notes[i].next > lane->order_from)
                lane->order_from = order_notes[i].next;
        }
        LWLockRelease(g_header->lock);
    }
    norder = 0;
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
    norder = 0;  // (at abort: the put-backs were rolled back)
}

}  // namespace pw::lanes::table

namespace pw::lanes {

void put_back_done(const Unpark &u, int found, uint64 next_from, bool skipped_rows) {
    using namespace table;
    if (norder == kMaxOrderNotes) return;
    // (Rows skipped, or a snapshot older than the look: parked runs it did not see may lie before next_from.)
    bool sure = found >= u.room && !skipped_rows && !IsolationUsesXactSnapshot();
    order_notes[norder++] = OrderNote{make_tag(u.pipeline_id, u.kind == kParkedKey, u.key_hash), u.seq,
                                      sure ? next_from : UINT64_MAX, GetCurrentSubTransactionId()};
}

void order_subabort(SubTransactionId sub) {
    int kept = 0;
    for (int i = 0; i < table::norder; i++)
        if (table::order_notes[i].subid < sub) table::order_notes[kept++] = table::order_notes[i];
    table::norder = kept;
}

}  // namespace pw::lanes
