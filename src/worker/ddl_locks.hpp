// TRUNCATE of the extension's tables takes the run table's lock before any other lock of its own: the lock order of
// every worker transaction (pg::lock_run_table_first), so that a TRUNCATE under load waits for the workers'
// transactions instead of deadlocking with one.
#pragma once

namespace pw::worker {

void install_ddl_locks();  // a ProcessUtility hook (from _PG_init, with shared memory: only then are there workers)

}  // namespace pw::worker
