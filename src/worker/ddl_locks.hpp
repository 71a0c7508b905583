// DROP EXTENSION pipeline_worker, DROP SCHEMA pipeline_worker and TRUNCATE of the extension's tables take the run
// table's lock before any other lock of theirs: the lock order of every worker transaction (pg::lock_run_table_first),
// so that such a command under load waits for the workers' transactions instead of deadlocking with one.
#pragma once

namespace pw::worker {

void install_ddl_locks();  // a ProcessUtility hook (from _PG_init, with shared memory: only then are there workers)

}  // namespace pw::worker
