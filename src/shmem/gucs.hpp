// The extension's settings (pipeline_worker.*), defined by the module at load time and read everywhere.
#pragma once

namespace pw::guc {

extern int workers;                  // pipeline_worker.workers
extern char *database;               // pipeline_worker.database
extern char *databases;              // pipeline_worker.databases ("": pipeline_worker.database alone)
extern int max_workers_per_database; // pipeline_worker.max_workers_per_database (-1: no cap)
extern int claim_batch;              // pipeline_worker.claim_batch
extern int commit_interval_ms;       // pipeline_worker.commit_interval_ms
extern int recovery_interval_ms;     // pipeline_worker.recovery_interval_ms
extern int vacuum_interval_ms;       // pipeline_worker.vacuum_interval_ms (0, the default: off)
extern char *http_allowed_hosts;     // pipeline_worker.http_allowed_hosts
extern int http_max_response_bytes;  // pipeline_worker.http_max_response_bytes
extern int http_max_in_flight;       // pipeline_worker.http_max_in_flight (per worker)
extern int max_map_tasks;            // pipeline_worker.max_map_tasks
extern int max_child_depth;          // pipeline_worker.max_child_depth
extern bool enabled;                 // pipeline_worker.enabled
extern char *retention;              // pipeline_worker.retention (text)
extern long long retention_us;       // ... in microseconds, -1: forever

// DefineCustom*Variable for all of them (from _PG_init).
void define();

}  // namespace pw::guc
