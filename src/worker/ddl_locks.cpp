#include "worker/ddl_locks.hpp"

#include "pg/spi.hpp"

extern "C" {
#include "access/xlog.h"
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/inval.h"
}

namespace pw::worker {

namespace {

ProcessUtility_hook_type prev_hook = nullptr;

// Whether the TRUNCATE empties a table of the extension and the caller may both run it and lock the run table (the
// lock is taken before PostgreSQL's own checks, so a role that may not must not be able to make the workers wait:
// TRUNCATE and LOCK TABLE check privileges before they lock). Every table listed is checked, ours or not: one the
// caller may not truncate fails the command, which should fail at once.
bool needs_run_table_first(TruncateStmt *stmt, Oid run_table) {
    // (LOCK TABLE's rule for ACCESS EXCLUSIVE on the run table: UPDATE, DELETE or TRUNCATE on it)
    if (pg_class_aclmask(run_table, GetUserId(), ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE, ACLMASK_ANY) == 0)
        return false;
    Oid nsp = get_rel_namespace(run_table);
    bool ours = false;
    ListCell *lc;
    foreach (lc, stmt->relations) {
        Oid rel = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);
        if (!OidIsValid(rel)) return false;  // (fails on its own)
        if (pg_class_aclcheck(rel, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK) return false;
        ours = ours || get_rel_namespace(rel) == nsp;
    }
    return ours;
}

void ddl_locks_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
                    ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc) {
    // TRUNCATE locks its list in the order written: "TRUNCATE run_steps, runs" held the step rows while it waited for
    // the run table, and a worker's transaction, holding the run table, waited for the step rows -- "deadlock
    // detected", one of them rolled back. The run table first, in the mode TRUNCATE takes: the command waits for the
    // workers' transactions under way, and new ones wait for it holding nothing of the extension (the run table is
    // their first lock). (Not where TRUNCATE would fail anyway for being read-only: it fails without waiting.)
    if (IsA(pstmt->utilityStmt, TruncateStmt) && !XactReadOnly && !RecoveryInProgress()) {
        AcceptInvalidationMessages();  // (the extension dropped and created again by another session meanwhile)
        Oid run_table = pg::run_table();
        if (OidIsValid(run_table) && needs_run_table_first(castNode(TruncateStmt, pstmt->utilityStmt), run_table))
            LockRelationOid(run_table, AccessExclusiveLock);
    }
    if (prev_hook != nullptr)
        prev_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
    else
        standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

}  // namespace

void install_ddl_locks() {
    prev_hook = ProcessUtility_hook;
    ProcessUtility_hook = ddl_locks_hook;
}

}  // namespace pw::worker
