// A worker with nothing of its own to do helps with a map step another worker shares (exec/shared_tasks.hpp).
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// Joins a shared map step of this database, if any, and executes chunks of its tasks -- a transaction each -- until
// none is left. Returns how many tasks it executed (1 at least when it joined one), 0 when there was none to join.
int help_with_tasks(MemoryContext iter_ctx);

}  // namespace pw::worker
