// A batch whose bookkeeping failed (not a step: the engine records those). Everything since the batch's last commit
// is rolled back; its runs go back to the queue, and the run to blame, if any, is failed so that it cannot fail the
// same way forever.
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// Called in the PG_CATCH of a batch's transaction (iter_ctx: the worker's iteration context): reports and clears the
// error, rolls the transaction back, and puts runs ids[0..n) back -- except those whose HTTP request is in flight
// again. suspect (0: none) is failed with the error's message unless the error blames no run (a serialization
// failure, a deadlock, a lock_timeout). Exits the worker when the put-back itself keeps failing: recovery then takes
// the runs back.
void recover_batch(MemoryContext iter_ctx, const int64 *ids, int n, int64 suspect);

}  // namespace pw::worker
