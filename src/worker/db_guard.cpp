#include "worker/db_guard.hpp"

#include "shmem/shared.hpp"

extern "C" {
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
}

namespace pw::worker {

namespace {

constexpr long kGraceMs = 1000;          // workers asked to leave finish their batch...
constexpr long kLeaveMs = 4000;          // ... then are terminated; DROP DATABASE itself waits 5 s more
constexpr long kEvictHoldSecs = 600;     // upper bound, should this backend die before it clears the mark

ProcessUtility_hook_type prev_hook = nullptr;

struct Held {
    shared::DbState *d;
    Oid dboid;
};
constexpr int kMaxHeld = 8;
Held held[kMaxHeld];
int held_count = 0;

// The database the command needs alone, or nullptr. *copy: it is copied (CREATE DATABASE ... TEMPLATE).
const char *needed_alone(Node *stmt, bool *copy) {
    *copy = nodeTag(stmt) == T_CreatedbStmt;
    switch (nodeTag(stmt)) {
        case T_DropdbStmt:
            return castNode(DropdbStmt, stmt)->dbname;
        case T_RenameStmt: {
            RenameStmt *r = castNode(RenameStmt, stmt);
            return r->renameType == OBJECT_DATABASE ? r->subname : nullptr;
        }
        case T_CreatedbStmt: {
            ListCell *lc;
            foreach (lc, castNode(CreatedbStmt, stmt)->options) {
                DefElem *d = lfirst_node(DefElem, lc);
                if (strcmp(d->defname, "template") == 0 && d->arg != nullptr) return defGetString(d);
            }
            return "template1";
        }
        case T_AlterDatabaseStmt: {
            ListCell *lc;
            foreach (lc, castNode(AlterDatabaseStmt, stmt)->options) {
                DefElem *d = lfirst_node(DefElem, lc);
                if (strcmp(d->defname, "tablespace") == 0) return castNode(AlterDatabaseStmt, stmt)->dbname;
            }
            return nullptr;
        }
        default:
            return nullptr;
    }
}

// pids of live workers in the database (the slot's worker may still be starting: pid 0 then, slot taken)
int workers_there(shared::State *st, Oid dboid, bool terminate) {
    int n = 0;
    for (int i = 0; i < st->nslots; i++) {
        shared::Slot *s = &st->slots[i];
        if (pg_atomic_read_u32(&s->dboid) != dboid) continue;
        n++;
        if (terminate && s->pid != 0) (void)kill(s->pid, SIGTERM);
    }
    return n;
}

// Marks the database as being left and waits until the workers are out of it.
void evict(shared::DbState *d, Oid dboid, const char *name) {
    shared::State *st = shared::state();
    TimestampTz now = GetCurrentTimestamp();
    pg_atomic_write_u64(&d->evict_until, static_cast<uint64>(now + kEvictHoldSecs * USECS_PER_SEC));
    for (int i = 0; i < st->nslots; i++) {
        shared::Slot *s = &st->slots[i];
        if (pg_atomic_read_u32(&s->dboid) != dboid) continue;
        pg_atomic_write_u32(&s->retire, 1);
        if (s->latch != nullptr) SetLatch(s->latch);
    }
    shared::wake_launcher();
    bool terminated = false;
    for (long waited = 0; workers_there(st, dboid, false) > 0 && waited < kGraceMs + kLeaveMs; waited += 10) {
        if (!terminated && waited >= kGraceMs) {
            (void)workers_there(st, dboid, true);
            terminated = true;
            ereport(LOG, (errmsg("pipeline_worker: terminating the workers of database \"%s\" for %s", name,
                                 "a command that needs it alone"),
                          errdetail("Runs they were executing are recovered and finish later.")));
        }
        CHECK_FOR_INTERRUPTS();
        pg_usleep(10000L);
    }
}

void release(shared::DbState *d, Oid dboid) {
    if (shared::db(dboid) == d) pg_atomic_write_u64(&d->evict_until, 0);
    shared::wake_launcher();
}

// Whether the command will be allowed (checked again by PostgreSQL): a role that may not drop, rename or copy the
// database must not be able to make the workers leave it.
bool may(Oid dboid, bool copy) {
    if (pg_database_ownercheck(dboid, GetUserId())) return !copy || have_createdb_privilege();
    if (!copy || !have_createdb_privilege()) return false;
    HeapTuple tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
    if (!HeapTupleIsValid(tup)) return false;
    bool is_template = ((Form_pg_database)GETSTRUCT(tup))->datistemplate;
    ReleaseSysCache(tup);
    return is_template;
}

void guard_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
                ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc) {
    bool copy;
    const char *name = needed_alone(pstmt->utilityStmt, &copy);
    // DROP, CREATE and ALTER ... SET TABLESPACE refuse to run in a transaction block: nothing to make room for
    if (name != nullptr && nodeTag(pstmt->utilityStmt) != T_RenameStmt && IsTransactionBlock()) name = nullptr;
    Oid dboid = name != nullptr ? get_database_oid(name, true) : InvalidOid;
    shared::DbState *d = OidIsValid(dboid) && may(dboid, copy) ? shared::db(dboid) : nullptr;
    if (d != nullptr) evict(d, dboid, name);
    PG_TRY();
    {
        if (prev_hook != nullptr)
            prev_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
        else
            standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
    }
    PG_CATCH();
    {
        if (d != nullptr) release(d, dboid);
        PG_RE_THROW();
    }
    PG_END_TRY();
    // The workers stay out until the transaction ends: a rename is seen by the launcher only once it commits.
    if (d != nullptr && held_count < kMaxHeld) held[held_count++] = Held{d, dboid};
}

}  // namespace

void release_held_databases() {
    for (int i = 0; i < held_count; i++) release(held[i].d, held[i].dboid);
    held_count = 0;
}

void install_db_guard() {
    prev_hook = ProcessUtility_hook;
    ProcessUtility_hook = guard_hook;
}

}  // namespace pw::worker
