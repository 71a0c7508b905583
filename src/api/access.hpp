// What the SQL functions check before they act: argument names, the pipeline lock, who owns a pipeline, who may
// manage it or submit runs to it, which runs a caller may see.
#pragma once

#include "pg/pg.hpp"

namespace pw::api {

// An idempotency key's bound in bytes: create_run(s) refuses a longer one, runs_idempotency_key_check too.
constexpr int kMaxKeyBytes = 1000;

// Argument argno as a pipeline name: not null, not empty, at most 200 bytes. ERROR otherwise.
char *checked_name(FunctionCallInfo fcinfo, int argno, const char *what);
// create_run holds the pipeline's lock in share mode and drop_pipeline in exclusive mode until their transactions
// end, so a run is never created for a pipeline being dropped.
// wait = false: false (nothing taken) when another transaction holds a conflicting lock.
bool lock_pipeline(const char *name, LOCKMODE mode, bool wait = true);
// Owner (and id) of pipeline `name`; ERROR if it does not exist. SPI connected.
Oid pipeline_owner(const char *name, int64 *id = nullptr, bool missing_ok = false);
// ERROR unless the current role is the pipeline's owner (or a member) or an admin.
void require_manager(const char *pipeline, Oid owner, const char *action);
// ERROR 25006 in a read-only transaction (a standby's too), before the function reads or writes anything: the
// functions that write call it first.
void require_writable(const char *function);
// ERROR 0A000 (with the hint to update) while the database is still at 0.1. SPI connected or not.
void require_schema_02();
// The id of pipeline `name`, which the caller must own (or be an admin): ERROR 42501 otherwise, and the same answer
// for a pipeline that does not exist (admins: 42704), so that nobody learns another tenant's pipeline names.
// `action` completes "permission denied to ... pipeline". SPI connected.
int64 managed_pipeline(const char *name, const char *action);
// managed_pipeline(), then the pipeline's lock in exclusive mode (waiting for transactions creating runs of it), then
// managed_pipeline() again with a fresh snapshot (what the transactions waited for did): a role that may not manage the
// pipeline is refused at once, never queued behind others' transactions first. SPI connected.
int64 lock_managed_pipeline(const char *name, const char *action);
// May this role (default: the current one) submit runs to this pipeline? SPI connected.
bool may_submit(const char *pipeline, Oid owner, Oid me = InvalidOid);
// Status of a run as the caller sees it (row-level security applies); ERROR if invisible or missing.
// *written_here (optional): whether this transaction wrote the run's current row (created, claimed, retried it).
char *run_status(int64 run_id, bool *written_here = nullptr);

}  // namespace pw::api
