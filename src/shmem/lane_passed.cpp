#include "shmem/lane_passed.hpp"

#include <cstring>

#include "shmem/claim_hint.hpp"
#include "shmem/lanes.hpp"

namespace pw::lanes {

namespace table {

namespace {

// Runs this transaction's claims passed over (one run per lane and claim), still locked by it: their lanes' floors
// are set when it ends (lanes::at_commit / at_abort), before its own slots are given back. Set at once, a release by
// another backend could take the floor while the rows are locked, claims from there would skip them, and the hint
// would move past them with no floor left to bring it back.
struct PassedOver {
    Tag tag;
    uint64 from;
};
constexpr int kMaxPassedOver = 128;
PassedOver passed[kMaxPassedOver];
int npassed = 0;
uint64 passed_overflow = UINT64_MAX;  // (more lanes than that: the lowest position of the rest, for the hint itself)
uint64 passed_upto = 0;               // past the last run passed over (the queue's known end moves up to there)

}  // namespace

void apply_passed_over() {
    if (npassed == 0) {
        passed_upto = 0;
        return;
    }
    if (g_header != nullptr) {
        LWLockAcquire(g_header->lock, LW_SHARED);
        for (int i = 0; i < npassed; i++) {
            Lane *lane = static_cast<Lane *>(hash_search(g_lanes, &passed[i].tag, HASH_FIND, nullptr));
            if (lane != nullptr) lower_skip_floor(lane, passed[i].from);
        }
        LWLockRelease(g_header->lock);
    }
    // Unlocked now, claimable (when their lanes have room): past the queue's known end if a claim skipped them.
    shared::queue_extended(passed_upto);
    // Lanes beyond the list have no floor: their runs, unlocked now, bring the claim hint back themselves.
    if (passed_overflow != UINT64_MAX) shared::lower_claim_hint_to(passed_overflow);
    passed_overflow = UINT64_MAX;
    passed_upto = 0;
    npassed = 0;
}

bool passed_over_pending() { return npassed > 0 || passed_overflow != UINT64_MAX; }

}  // namespace table

using namespace table;

void passed_over(int64 pipeline_id, bool pipeline_lane, bool key_lane, uint64 key_hash, uint64 from, uint64 upto) {
    if (g_header == nullptr) return;
    if (upto > passed_upto) passed_upto = upto;
    Tag tags[2];
    int n = 0;
    if (pipeline_lane) tags[n++] = make_tag(pipeline_id, false, 0);
    if (key_lane) tags[n++] = make_tag(pipeline_id, true, key_hash);
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < npassed && memcmp(&passed[j].tag, &tags[i], sizeof(Tag)) != 0) j++;
        if (j == npassed) {
            if (npassed == kMaxPassedOver) {
                passed_overflow = passed_overflow < from ? passed_overflow : from;
                continue;
            }
            passed[npassed++] = {tags[i], from};
        } else if (from < passed[j].from) {
            passed[j].from = from;
        }
    }
}

}  // namespace pw::lanes
