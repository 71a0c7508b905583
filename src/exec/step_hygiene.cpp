#include "exec/step_hygiene.hpp"

#include "exec/hooks.hpp"

#include <dlfcn.h>

extern "C" {
#include "commands/sequence.h"
#include "common/pg_prng.h"
#include "libpq/be-fsstubs.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lock.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/portal.h"
#include "utils/resowner.h"
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

// random()'s seed, from the system's strong source (the backend's own generator also draws the retry jitter roles
// see).
void reseed_random() {
    uint64 bits;
    if (!pg_strong_random(&bits, sizeof(bits))) bits = pg_prng_uint64(&pg_global_prng_state);
    double seed = static_cast<double>(bits >> 11) / static_cast<double>(UINT64CONST(1) << 53);  // [0, 1)
    (void)DirectFunctionCall1(setseed, Float8GetDatum(seed * 2.0 - 1.0));
}

// dblink keeps its connections in the process, by name and one unnamed, for whoever calls it next: a connection one
// role's step opened -- with its credentials, or as another user -- served the next role's dblink() calls (until
// 2026-12-07; acceptance walk-through: a tenant read a table only a third role may read). Closed when the role
// changes, only if this process loaded dblink: PostgreSQL loads libraries RTLD_GLOBAL, so its functions are then
// found among the process's symbols (a lookup, no file opened), wherever it was loaded from.
void close_dblink_connections() {
    auto get = reinterpret_cast<PGFunction>(dlsym(RTLD_DEFAULT, "dblink_get_connections"));
    auto disconnect = reinterpret_cast<PGFunction>(dlsym(RTLD_DEFAULT, "dblink_disconnect"));
    if (get == nullptr || disconnect == nullptr) return;
    LOCAL_FCINFO(none, 0);
    InitFunctionCallInfoData(*none, nullptr, 0, InvalidOid, nullptr, nullptr);
    Datum names = get(none);
    if (!none->isnull) {
        Datum *elems;
        bool *nulls;
        int n;
        deconstruct_array(DatumGetArrayTypeP(names), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
        for (int i = 0; i < n; i++)
            if (!nulls[i]) (void)DirectFunctionCall1(disconnect, elems[i]);
    }
    // The unnamed one: dblink_disconnect() raises an error when there is none, so it is tried in a subtransaction.
    MemoryContext ctx = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    BeginInternalSubTransaction(nullptr);
    PG_TRY();
    {
        InitFunctionCallInfoData(*none, nullptr, 0, InvalidOid, nullptr, nullptr);
        (void)disconnect(none);
        ReleaseCurrentSubTransaction();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();
    }
    PG_END_TRY();
    MemoryContextSwitchTo(ctx);
    CurrentResourceOwner = owner;
}

}  // namespace

void before_another_role() {
    // The sequence state of the steps before (lastval(), currval(), cached values): lastval() answered with another
    // role's last value, or named its sequence in an error (until 2026-12-05; security audit). Only at a role change:
    // forgotten after every step, a sequence's CACHE would be thrown away by each one. random()'s seed: a setseed()
    // of another role's step made this role's random() predictable to it (until 2026-12-07; acceptance walk-through).
    ResetSequenceCaches();
    reseed_random();
    close_dblink_connections();
}

void leave_step_clean() {
    // A session-level advisory lock (pg_advisory_lock) would outlive the run: it would block other sessions, and
    // whoever runs next here would re-enter it.
    LockReleaseSession(USER_LOCKMETHOD);
}

void close_step_leftovers() {
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
