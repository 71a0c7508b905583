// Parents of child runs a worker's commit finished, whose rows another transaction held at the time
// (store::wake_parents skips them: a batch's transaction waits for no parent row), and those a session handed to the
// database's workers for the same reason (shared::offer_parent_wake). They are woken after the commit (the session's
// transaction ended) without waiting for the holder; those still held are tried again, with back-off, until their rows
// are free.
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// The hook store::wake_parents hands such a parent to (worker_main installs it), in the batch's transaction.
void defer_parent_wake(int64 id);
// After a commit, and between iterations: tries the parents deferred since the last call, and the ones still held
// whose retry is due. Each in a transaction of its own; leaves none open.
void wake_held_parents();
// Milliseconds until a held parent's retry is due (0: due now; -1: none waiting).
long held_parents_timeout_ms();
// A worker leaving: the parents it still holds go back to the database's list, for the next worker.
void hand_back_held_parents();

}  // namespace pw::worker
