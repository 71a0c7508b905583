#include "api/access.hpp"

#include "store/children.hpp"

#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "store/queue.hpp"

extern "C" {
#include "access/xact.h"
#include "access/xlog.h"
}

namespace pw::api {

using pg::col;

namespace {

constexpr int kMaxPipelineName = 200;

SPIPlanPtr plan_pipeline_owner, plan_run_status, plan_managed;

}  // namespace

// create_run holds this lock in share mode and drop_pipeline in exclusive mode until their transactions end,
// so a run is never created for a pipeline being dropped. A heavyweight lock on an advisory tag (no row lock:
// concurrent create_runs would otherwise pile up MultiXacts on the pipeline's row).
// The tag: the name's 64-bit hash (field 4 = 3: not a user's advisory lock, which has 1 or 2). Until 2026-12-05 a 32-bit
// hash: a role could find a name of its own whose lock is another tenant's pipeline's (a few billion tries), and hold
// up that pipeline's pause, alter and drop with an open create_run.
bool lock_pipeline(const char *name, LOCKMODE mode, bool wait) {
    LOCKTAG tag;
    uint64 h = hash_bytes_extended(reinterpret_cast<const unsigned char *>(name), static_cast<int>(strlen(name)),
                                   UINT64CONST(0x50574B52));
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, static_cast<uint32>(h >> 32), static_cast<uint32>(h), 3);
    return LockAcquire(&tag, mode, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

// Owner of pipeline `name`; ERROR if it does not exist (InvalidOid with missing_ok). Reads with a fresh snapshot (not
// read-only): callers may have just waited for the pipeline lock, and must see what the transaction they waited for did.
Oid pipeline_owner(const char *name, int64 *id, bool missing_ok) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    pg::run_as_owner(&plan_pipeline_owner, "SELECT owner::oid, id FROM pipeline_worker.pipelines WHERE name = $1",
                     1, types, v, nullptr, false);
    if (SPI_processed == 0 && missing_ok) return InvalidOid;
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" does not exist", name),
                        errhint("Create it with pipeline_worker.create_pipeline().")));
    bool isnull;
    if (id != nullptr) *id = DatumGetInt64(col(0, 2, &isnull));
    return DatumGetObjectId(col(0, 1, &isnull));
}

void require_manager(const char *pipeline, Oid owner, const char *action) {
    Oid me = GetUserId();
    if (!has_privs_of_role(me, owner) && !pg::is_admin(me))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to %s pipeline \"%s\"", action, pipeline),
                        errdetail("Only its owner or members of pipeline_worker_admin may.")));
}

void require_writable(const char *function) {
    if (!XactReadOnly) return;
    // (PostgreSQL's own error came from the first statement that wrote, with that statement as its context.)
    ereport(ERROR, (errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
                    errmsg("cannot execute pipeline_worker.%s() in a read-only transaction", function),
                    RecoveryInProgress() ? errhint("This server is a standby. Call it on the primary.") : 0));
}

void require_schema_02() {
    if (store::schema_version() < 2)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("pipeline_worker is installed at version 0.1"),
                        errhint("Run ALTER EXTENSION pipeline_worker UPDATE.")));
}

int64 managed_pipeline(const char *name, const char *action) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    pg::run_as_owner(&plan_managed, "SELECT owner::oid, id FROM pipeline_worker.pipelines WHERE name = $1", 1, types,
                     v, nullptr, false);
    bool isnull;
    bool found = SPI_processed == 1;
    Oid owner = found ? DatumGetObjectId(col(0, 1, &isnull)) : InvalidOid;
    int64 id = found ? DatumGetInt64(col(0, 2, &isnull)) : 0;
    Oid me = GetUserId();
    if (pg::is_admin(me)) {
        if (!found) ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" does not exist", name)));
        return id;
    }
    if (!found || !has_privs_of_role(me, owner))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to %s pipeline \"%s\"", action, name),
                        errdetail("Only its owner or members of pipeline_worker_admin may, if it exists.")));
    return id;
}

int64 lock_managed_pipeline(const char *name, const char *action) {
    (void)managed_pipeline(name, action);
    lock_pipeline(name, ExclusiveLock);
    return managed_pipeline(name, action);
}

// May this role (default: the current one) submit runs to this pipeline?
bool may_submit(const char *pipeline, Oid owner, Oid me) {
    return store::may_submit(pipeline, owner, OidIsValid(me) ? me : GetUserId());
}

char *checked_name(FunctionCallInfo fcinfo, int argno, const char *what) {
    if (PG_ARGISNULL(argno))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be null", what),
                        errhint("Give a non-empty name of at most %d bytes.", kMaxPipelineName)));
    char *name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
    if (name[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be empty", what),
                        errhint("Give a non-empty name of at most %d bytes.", kMaxPipelineName)));
    if (strlen(name) > kMaxPipelineName)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s is longer than %d bytes", what, kMaxPipelineName),
                        errhint("Give a non-empty name of at most %d bytes.", kMaxPipelineName)));
    return name;
}

// Status of a run as the caller sees it (row-level security applies); ERROR if invisible or missing.
// *written_here (optional): whether this transaction wrote the run's current row (created, claimed, retried it).
char *run_status(int64 run_id, bool *written_here) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    pg::run_as_caller(&plan_run_status,
                      "/* pw_indexes: runs_pkey */ SELECT status, xmin FROM pipeline_worker.runs WHERE id = $1", 1,
                      types, v, nullptr, false);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("run %lld does not exist", (long long)run_id)));
    bool isnull;
    char *s = TextDatumGetCString(col(0, 1, &isnull));
    if (written_here != nullptr)
        *written_here = TransactionIdIsCurrentTransactionId(DatumGetTransactionId(col(0, 2, &isnull)));
    SPI_freetuptable(SPI_tuptable);
    return s;
}
}  // namespace pw::api
