#include "pg/kept_writes.hpp"

extern "C" {
#include "access/genam.h"
#include "catalog/index.h"
#include "catalog/pg_am_d.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "nodes/readfuncs.h"
#include "optimizer/optimizer.h"
#include "utils/rel.h"
#include "utils/relcache.h"
}

namespace pw::pg {

namespace {

// One table's kept parts, all in cxt.
struct KeptTable {
    Oid relid;
    Oid user;  // who built it (ExecInitFunc checked EXECUTE on every function for this user)
    bool uses_types;  // an expression coerces to a domain (its constraints compiled in) or subscripts a type
    MemoryContext cxt;
    int nindexes;
    Oid *index_oids;    // the table's index list when built (RelationGetIndexList's order)
    IndexInfo **infos;  // per index: kept (btree), or nullptr (built at each open)
    int nchecks;
    char **ccbins;      // each CHECK constraint's expression text when built
    ExprState **checks; // per constraint: kept, or nullptr (prepared at each open: see keeps_per_query_state)
};

constexpr int kTables = 4;  // the workers write two tables (runs, run_steps); a re-created one takes a new place
KeptTable tables[kTables];
int next_victim = 0;
bool callbacks_set = false;
// Tables opened and not closed yet: their kept parts are in use and are not rebuilt meanwhile. Reset at the end of
// every transaction (an error between open and close leaves it raised until then).
int open_count = 0;
// Invalidations that may change what is kept (PROCOID, TYPEOID), counted: one read while building makes what was
// built stale.
uint64 invalidations = 0;

void drop(KeptTable *t) {
    if (t->cxt != nullptr) MemoryContextDelete(t->cxt);
    *t = KeptTable{};
}

// A function changed: a predicate's or a constraint's expression may call it (a replaced C function's address, an
// inlined SQL function's body). Everything is built again at the next open.
void proc_changed(Datum, int, uint32) {
    invalidations++;
    for (KeptTable &t : tables) t.relid = InvalidOid;  // (freed at the next build: it may be in use now)
}

// A type changed: a domain's constraints are compiled into the expressions that coerce to it
// (ExecInitCoerceToDomain); ALTER DOMAIN ... CONSTRAINT sends an invalidation of the domain's pg_type row.
void type_changed(Datum, int, uint32) {
    invalidations++;  // (what is being built now may use the type)
    for (KeptTable &t : tables)
        if (t.uses_types) t.relid = InvalidOid;
}

void xact_ended(XactEvent event, void *) {
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_COMMIT ||
        event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
        open_count = 0;
}

// Whether a kept IndexInfo is what BuildIndexInfo would give for the index now. (Only readiness for inserts changes
// under the same index, through CREATE INDEX CONCURRENTLY's phases; its columns, expressions and predicate never.)
bool index_still_valid(const IndexInfo *kept, Relation index) {
    return kept->ii_ReadyForInserts == index->rd_index->indisready &&
           kept->ii_NumIndexAttrs == index->rd_index->indnatts;
}

// Whether t still describes rel (opened with its indexes) as the relation cache does now.
bool still_valid(const KeptTable &t, Relation rel, List *index_oids, Relation *indexes) {
    if (t.relid != RelationGetRelid(rel) || t.user != GetUserId() || t.nindexes != list_length(index_oids))
        return false;
    for (int i = 0; i < t.nindexes; i++)
        if (t.index_oids[i] != list_nth_oid(index_oids, i) ||
            (t.infos[i] != nullptr && !index_still_valid(t.infos[i], indexes[i])))
            return false;
    TupleConstr *constr = rel->rd_att->constr;
    int nchecks = constr != nullptr ? constr->num_check : 0;
    if (t.nchecks != nchecks) return false;
    for (int k = 0; k < nchecks; k++)
        if (strcmp(t.ccbins[k], constr->check[k].ccbin) != 0) return false;
    return true;
}

// Whether an expression coerces to a domain or subscripts a container type (both looked up at ExecInitExpr).
bool uses_types_walker(Node *node, void *) {
    if (node == nullptr) return false;
    if (IsA(node, CoerceToDomain) || IsA(node, SubscriptingRef)) return true;
    return expression_tree_walker(node, reinterpret_cast<bool (*)()>(reinterpret_cast<void (*)()>(uses_types_walker)),
                                  nullptr);
}

// Whether an expression's ExprState would keep, from its first evaluation on, something allocated in the
// executor's per-query memory (econtext->ecxt_per_query_memory): a whole-row Var's descriptor
// (ExecEvalWholeRowVar), a row conversion's map (ExecEvalConvertRowtype), a hashed IN list's table. Such an
// ExprState must not outlive its EState: it is prepared at every open instead.
bool keeps_per_query_state(Node *node, void *) {
    if (node == nullptr) return false;
    if (IsA(node, Var) && reinterpret_cast<Var *>(node)->varattno == InvalidAttrNumber) return true;
    if (IsA(node, ConvertRowtypeExpr)) return true;
    if (IsA(node, ScalarArrayOpExpr) && OidIsValid(reinterpret_cast<ScalarArrayOpExpr *>(node)->hashfuncid))
        return true;
    return expression_tree_walker(node, reinterpret_cast<bool (*)()>(reinterpret_cast<void (*)()>(keeps_per_query_state)),
                                  nullptr);
}

// An IndexInfo as ExecOpenIndices builds it, with what ExecInsertIndexTuples and FormIndexDatum would prepare in
// the executor's memory (ExecPrepareQual, ExecPrepareExprList) prepared here, in the current (kept) context.
// nullptr: not to be kept (keeps_per_query_state).
IndexInfo *kept_index_info(Relation index, bool *uses_types) {
    IndexInfo *ii = BuildIndexInfo(index);
    List *pred = reinterpret_cast<List *>(expression_planner(reinterpret_cast<Expr *>(ii->ii_Predicate)));
    List *exprs = NIL;
    ListCell *lc;
    foreach (lc, ii->ii_Expressions)
        exprs = lappend(exprs, expression_planner(static_cast<Expr *>(lfirst(lc))));
    if (keeps_per_query_state(reinterpret_cast<Node *>(pred), nullptr) ||
        keeps_per_query_state(reinterpret_cast<Node *>(exprs), nullptr))
        return nullptr;
    *uses_types = *uses_types || uses_types_walker(reinterpret_cast<Node *>(pred), nullptr) ||
                  uses_types_walker(reinterpret_cast<Node *>(exprs), nullptr);
    if (pred != NIL) ii->ii_PredicateState = ExecInitQual(pred, nullptr);
    if (exprs != NIL) {
        List *states = NIL;
        foreach (lc, exprs)
            states = lappend(states, ExecInitExpr(static_cast<Expr *>(lfirst(lc)), nullptr));
        ii->ii_ExpressionsState = states;
    }
    return ii;
}

// Builds rel's kept parts into nt, in the context cxt (deleted on an error, which goes on).
void build_parts(KeptTable *nt, MemoryContext cxt, Relation rel, List *index_oids, Relation *indexes) {
    MemoryContext caller = CurrentMemoryContext;
    PG_TRY();
    {
        MemoryContextSwitchTo(cxt);
        nt->cxt = cxt;
        nt->nindexes = list_length(index_oids);
        nt->index_oids = static_cast<Oid *>(palloc0(sizeof(Oid) * (nt->nindexes + 1)));
        nt->infos = static_cast<IndexInfo **>(palloc0(sizeof(IndexInfo *) * (nt->nindexes + 1)));
        for (int i = 0; i < nt->nindexes; i++) {
            nt->index_oids[i] = list_nth_oid(index_oids, i);
            if (indexes[i]->rd_rel->relam == BTREE_AM_OID) nt->infos[i] = kept_index_info(indexes[i], &nt->uses_types);
        }
        TupleConstr *constr = rel->rd_att->constr;
        nt->nchecks = constr != nullptr ? constr->num_check : 0;
        nt->ccbins = static_cast<char **>(palloc0(sizeof(char *) * (nt->nchecks + 1)));
        nt->checks = static_cast<ExprState **>(palloc0(sizeof(ExprState *) * (nt->nchecks + 1)));
        for (int k = 0; k < nt->nchecks; k++) {
            nt->ccbins[k] = pstrdup(constr->check[k].ccbin);
            // (as ExecRelCheck: ExecPrepareExpr of the stored expression)
            Expr *planned = expression_planner(static_cast<Expr *>(stringToNode(nt->ccbins[k])));
            if (keeps_per_query_state(reinterpret_cast<Node *>(planned), nullptr)) continue;
            nt->uses_types = nt->uses_types || uses_types_walker(reinterpret_cast<Node *>(planned), nullptr);
            nt->checks[k] = ExecInitExpr(planned, nullptr);
        }
        MemoryContextSwitchTo(caller);
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(caller);
        MemoryContextDelete(cxt);
        PG_RE_THROW();
    }
    PG_END_TRY();
}

// Builds rel's kept parts in a place of their own (rel's old one, a free one, or the next in turn).
KeptTable *build(Relation rel, List *index_oids, Relation *indexes) {
    uint64 seen = invalidations;  // (a syscache miss while building may read an invalidation: see the end)
    KeptTable nt = {};
    build_parts(&nt, AllocSetContextCreate(CacheMemoryContext, "pipeline_worker kept writes", ALLOCSET_SMALL_SIZES),
                rel, index_oids, indexes);
    nt.relid = RelationGetRelid(rel);
    nt.user = GetUserId();
    KeptTable *t = nullptr;
    for (KeptTable &c : tables)
        if (c.relid == nt.relid) t = &c;
    for (KeptTable &c : tables)
        if (t == nullptr && c.relid == InvalidOid) t = &c;
    if (t == nullptr) {
        t = &tables[next_victim];
        next_victim = (next_victim + 1) % kTables;
    }
    drop(t);
    *t = nt;
    // A function or type changed while this was built: used for this open (as a statement would use what it
    // built), built again at the next.
    if (invalidations != seen) t->relid = InvalidOid;
    return t;
}

}  // namespace

void open_for_writes(ResultRelInfo *rri, EState *estate) {
    if (!callbacks_set) {
        CacheRegisterSyscacheCallback(PROCOID, proc_changed, 0);
        CacheRegisterSyscacheCallback(TYPEOID, type_changed, 0);
        RegisterXactCallback(xact_ended, nullptr);
        callbacks_set = true;
    }
    Relation rel = rri->ri_RelationDesc;
    rri->ri_NumIndices = 0;
    List *index_oids = rel->rd_rel->relhasindex ? RelationGetIndexList(rel) : NIL;
    int n = list_length(index_oids);
    MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
    Relation *indexes = static_cast<Relation *>(palloc0(sizeof(Relation) * (n + 1)));
    IndexInfo **infos = static_cast<IndexInfo **>(palloc0(sizeof(IndexInfo *) * (n + 1)));
    for (int i = 0; i < n; i++) indexes[i] = index_open(list_nth_oid(index_oids, i), RowExclusiveLock);
    MemoryContextSwitchTo(old);
    // (Not while kept parts are in use: a table opened again before the first is closed is written without them --
    // an IndexInfo and an ExprState are used by one executor at a time.)
    KeptTable *t = nullptr;
    if (open_count == 0) {
        for (KeptTable &c : tables)
            if (c.relid == RelationGetRelid(rel) && still_valid(c, rel, index_oids, indexes)) t = &c;
        if (t == nullptr) t = build(rel, index_oids, indexes);
    }
    old = MemoryContextSwitchTo(estate->es_query_cxt);
    for (int i = 0; i < n; i++) {
        IndexInfo *kept = t != nullptr ? t->infos[i] : nullptr;
        if (kept != nullptr) {
            kept->ii_CheckedUnchanged = false;  // (per statement in the executor: which columns this one changes)
            infos[i] = kept;
        } else {
            infos[i] = BuildIndexInfo(indexes[i]);
        }
    }
    rri->ri_NumIndices = n;
    rri->ri_IndexRelationDescs = indexes;
    rri->ri_IndexRelationInfo = infos;
    // (ExecRelCheck builds these when they are not set; its order is the relation's, as ours)
    if (t != nullptr && t->nchecks > 0) {
        ExprState **checks = static_cast<ExprState **>(palloc(sizeof(ExprState *) * t->nchecks));
        for (int k = 0; k < t->nchecks; k++)
            checks[k] = t->checks[k] != nullptr
                            ? t->checks[k]
                            : ExecPrepareExpr(static_cast<Expr *>(stringToNode(t->ccbins[k])), estate);
        rri->ri_ConstraintExprs = checks;
    }
    MemoryContextSwitchTo(old);
    list_free(index_oids);
    open_count++;
}

void close_for_writes(ResultRelInfo *rri) {
    ExecCloseIndices(rri);
    if (open_count > 0) open_count--;
}

}  // namespace pw::pg
