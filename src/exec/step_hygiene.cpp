#include "exec/step_hygiene.hpp"

#include "exec/hooks.hpp"

extern "C" {
#include "libpq/be-fsstubs.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/portal.h"
}

namespace pw::exec {

namespace {

ProcessUtility_hook_type prev_hook = nullptr;

void step_guard_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
                     ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc) {
    if (in_step() && in_worker() && IsA(pstmt->utilityStmt, ConstraintsSetStmt))
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("a step executed by a background worker cannot use SET CONSTRAINTS"),
                        errdetail("Its setting would last over the steps and runs that share the worker's "
                                  "transaction, and a deferred constraint cannot fire inside a step."),
                        errhint("Make the constraint INITIALLY IMMEDIATE, or use a session's execute_run().")));
    if (prev_hook != nullptr)
        prev_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
    else
        standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
}

}  // namespace

void leave_step_clean() {
    // A session-level advisory lock (pg_advisory_lock) would outlive the run: it would block other sessions, and
    // whoever runs next here would re-enter it.
    LockReleaseSession(USER_LOCKMETHOD);
    // A cursor the step opened and left open (OPEN in PL/pgSQL, a refcursor) stays open until the transaction ends:
    // the next run of the batch -- another role's -- could FETCH from it by name, and the same step in the next run
    // found its name "already in use" (until 2026-12-07; acceptance walk-through). No cursor of the worker's own is
    // open between steps.
    PortalHashTableDeleteAll();
    // So does a large-object descriptor (lo_open): descriptors are small integers from 0, and the next run could
    // read through it. PostgreSQL's end-of-transaction cleanup closes them all (and the large-object relation, opened
    // again when needed); it does nothing when this transaction used none.
    AtEOXact_LargeObject(true);
}

void install_step_guard() {
    prev_hook = ProcessUtility_hook;
    ProcessUtility_hook = step_guard_hook;
}

}  // namespace pw::exec
