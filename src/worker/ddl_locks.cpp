#include "worker/ddl_locks.hpp"

#include "pg/spi.hpp"

extern "C" {
#include "nodes/parsenodes.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
}

namespace pw::worker {

namespace {

ProcessUtility_hook_type prev_hook = nullptr;

bool names(List *objects, const char *name) {
    ListCell *lc;
    foreach (lc, objects)
        if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), name) == 0) return true;
    return false;
}

// Whether the command drops or empties the extension's tables, and the caller may (PostgreSQL checks again): the lock
// is taken before PostgreSQL's own checks, so a role that may not must not be able to make the workers wait -- as
// TRUNCATE and LOCK TABLE check privileges before they lock.
bool needs_run_table_first(Node *stmt, Oid run_table) {
    Oid nsp = get_rel_namespace(run_table);
    if (IsA(stmt, DropStmt)) {
        DropStmt *d = castNode(DropStmt, stmt);
        if (d->removeType == OBJECT_EXTENSION && names(d->objects, "pipeline_worker")) {
            Oid ext = get_extension_oid("pipeline_worker", true);
            return OidIsValid(ext) && pg_extension_ownercheck(ext, GetUserId());
        }
        if (d->removeType == OBJECT_SCHEMA && names(d->objects, "pipeline_worker"))
            return OidIsValid(nsp) && pg_namespace_ownercheck(nsp, GetUserId());
        return false;
    }
    if (IsA(stmt, TruncateStmt)) {
        bool ours = false;
        ListCell *lc;
        foreach (lc, castNode(TruncateStmt, stmt)->relations) {
            Oid rel = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);
            if (!OidIsValid(rel)) return false;  // (fails on its own)
            if (get_rel_namespace(rel) != nsp) continue;
            if (pg_class_aclcheck(rel, GetUserId(), ACL_TRUNCATE) != ACLCHECK_OK) return false;
            ours = true;
        }
        return ours;
    }
    return false;
}

void ddl_locks_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
                    ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc) {
    Node *stmt = pstmt->utilityStmt;
    if (IsA(stmt, DropStmt) || IsA(stmt, TruncateStmt)) {
        // PostgreSQL locks the objects to drop in catalog order (pipelines before runs) and TRUNCATE its list in the
        // order written: a worker's transaction holds the run table and waits for the next table the command holds,
        // the command waits for the run table -- "deadlock detected", and one of them is rolled back. The run table
        // first, in the mode the command takes: the command waits for the workers' transactions under way, and new
        // ones wait for it holding nothing of the extension (the run table is their first lock).
        Oid run_table = pg::run_table();
        if (OidIsValid(run_table) && needs_run_table_first(stmt, run_table))
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
