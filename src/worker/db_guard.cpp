#include "worker/db_guard.hpp"

#include "shmem/shared.hpp"
#include "worker/read_only.hpp"

extern "C" {
#include "catalog/pg_authid.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
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

// ALTER DATABASE / ALTER ROLE ... SET or RESET of default_transaction_read_only (or RESET ALL) in this transaction:
// at its commit the databases' read-only notes are forgotten (worker/read_only.hpp), for the database named or
// (InvalidOid) every one.
bool settings_changed = false;
Oid settings_db = InvalidOid;

void note_settings_change(Node *stmt) {
    VariableSetStmt *set = nullptr;
    const char *dbname = nullptr;
    if (IsA(stmt, AlterDatabaseSetStmt)) {
        set = castNode(AlterDatabaseSetStmt, stmt)->setstmt;
        dbname = castNode(AlterDatabaseSetStmt, stmt)->dbname;
    } else if (IsA(stmt, AlterRoleSetStmt)) {
        // (the workers' role: the bootstrap superuser, or ALL -- a role's own settings, which any role may change,
        // do not reach the workers)
        RoleSpec *role = castNode(AlterRoleSetStmt, stmt)->role;
        if (role != nullptr && get_rolespec_oid(role, true) != BOOTSTRAP_SUPERUSERID) return;
        set = castNode(AlterRoleSetStmt, stmt)->setstmt;
        dbname = castNode(AlterRoleSetStmt, stmt)->database;
    }
    if (set == nullptr || (set->name != nullptr && pg_strcasecmp(set->name, "default_transaction_read_only") != 0)) return;
    Oid dboid = dbname != nullptr ? get_database_oid(dbname, true) : InvalidOid;
    settings_db = settings_changed && settings_db != dboid ? InvalidOid : dboid;
    settings_changed = true;
}

// A command that needs a database alone, as far as deciding whether it may succeed goes.
struct Needs {
    const char *name = nullptr;        // the database it needs alone; nullptr: none
    const char *new_name = nullptr;    // RENAME TO / CREATE DATABASE: a name that must be free
    const char *tablespace = nullptr;  // SET TABLESPACE: one the caller must be allowed to create in
    bool copy = false;                 // CREATE DATABASE ... TEMPLATE
    bool in_block_ok = false;          // RENAME may run in a transaction block; the others refuse to
};

Needs needed_alone(Node *stmt) {
    Needs n;
    switch (nodeTag(stmt)) {
        case T_DropdbStmt:
            n.name = castNode(DropdbStmt, stmt)->dbname;
            break;
        case T_RenameStmt: {
            RenameStmt *r = castNode(RenameStmt, stmt);
            if (r->renameType != OBJECT_DATABASE) break;
            n.name = r->subname;
            n.new_name = r->newname;
            n.in_block_ok = true;
            break;
        }
        case T_CreatedbStmt: {
            CreatedbStmt *c = castNode(CreatedbStmt, stmt);
            n.name = "template1";
            n.new_name = c->dbname;
            n.copy = true;
            ListCell *lc;
            foreach (lc, c->options) {
                DefElem *d = lfirst_node(DefElem, lc);
                if (strcmp(d->defname, "template") == 0 && d->arg != nullptr) n.name = defGetString(d);
            }
            break;
        }
        case T_AlterDatabaseStmt: {
            ListCell *lc;
            foreach (lc, castNode(AlterDatabaseStmt, stmt)->options) {
                DefElem *d = lfirst_node(DefElem, lc);
                if (strcmp(d->defname, "tablespace") == 0 && d->arg != nullptr) {
                    n.name = castNode(AlterDatabaseStmt, stmt)->dbname;
                    n.tablespace = defGetString(d);
                }
            }
            break;
        }
        default:
            break;
    }
    return n;
}

// Whether the command will pass PostgreSQL's own checks on privileges and names (it checks them again): a role
// that may not drop, rename, move or copy the database must not be able to make the workers leave it -- not even
// its owner with a command that is refused.
bool may(const Needs &n, Oid dboid) {
    if (IsTransactionBlock() && !n.in_block_ok) return false;
    if (n.new_name != nullptr && OidIsValid(get_database_oid(n.new_name, true))) return false;
    bool owner = pg_database_ownercheck(dboid, GetUserId());
    if (n.copy) {
        if (!have_createdb_privilege()) return false;
        if (owner) return true;
        HeapTuple tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
        if (!HeapTupleIsValid(tup)) return false;
        bool is_template = ((Form_pg_database)GETSTRUCT(tup))->datistemplate;
        ReleaseSysCache(tup);
        return is_template;
    }
    if (!owner) return false;
    if (n.new_name != nullptr) return have_createdb_privilege();  // RENAME needs CREATEDB too
    if (n.tablespace != nullptr) {
        Oid ts = get_tablespace_oid(n.tablespace, true);
        return OidIsValid(ts) && pg_tablespace_aclcheck(ts, GetUserId(), ACL_CREATE) == ACLCHECK_OK;
    }
    return true;  // DROP DATABASE: its owner
}

// Marks the database as being left and waits until the workers are out of it.
void evict(shared::DbState *d, Oid dboid, const char *name) {
    TimestampTz now = GetCurrentTimestamp();
    pg_atomic_write_u64(&d->evict_until, static_cast<uint64>(now + kEvictHoldSecs * USECS_PER_SEC));
    shared::signal_workers_in(dboid, false);
    shared::wake_launcher();
    bool terminated = false;
    // (a slot counts until the launcher has seen its worker exit: one still starting is counted too)
    for (long waited = 0; shared::workers_in(dboid) > 0 && waited < kGraceMs + kLeaveMs; waited += 10) {
        if (!terminated && waited >= kGraceMs) {
            shared::signal_workers_in(dboid, true);
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

void guard_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, ProcessUtilityContext context,
                ParamListInfo params, QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc) {
    Needs needs = needed_alone(pstmt->utilityStmt);
    const char *name = needs.name;
    Oid dboid = name != nullptr ? get_database_oid(name, true) : InvalidOid;
    shared::DbState *d = OidIsValid(dboid) ? shared::db(dboid) : nullptr;
    if (d != nullptr && !may(needs, dboid)) d = nullptr;
    // (the wait for the workers inside: a cancel or statement_timeout there must not leave the database marked as
    // being left for kEvictHoldSecs -- until 2026-12-05 it did, and no worker served it meanwhile)
    PG_TRY();
    {
        if (d != nullptr) evict(d, dboid, name);
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
    note_settings_change(pstmt->utilityStmt);
}

}  // namespace

bool holds_databases() { return held_count > 0; }

void release_held_databases() {
    for (int i = 0; i < held_count; i++) release(held[i].d, held[i].dboid);
    held_count = 0;
}

void settings_at_end(bool committed) {
    if (!settings_changed) return;
    if (committed) {
        forget_read_only_notes(settings_db);
        shared::wake_launcher();
    }
    settings_changed = false;
    settings_db = InvalidOid;
}

void install_db_guard() {
    prev_hook = ProcessUtility_hook;
    ProcessUtility_hook = guard_hook;
}

}  // namespace pw::worker
