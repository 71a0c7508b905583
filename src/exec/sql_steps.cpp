#include "exec/sql_steps.hpp"

extern "C" {
#include "nodes/plannodes.h"
}

namespace pw::exec {

namespace {

struct SqlStep {
    Oid fn;  // hash key
    SPIPlanPtr plan;
    int inspected_generation;  // plan generation whose inlining was looked at
    bool direct;               // not inlined: call it directly
};

HTAB *steps = nullptr;

SqlStep *entry(Oid fn) {
    if (steps == nullptr) {
        HASHCTL ctl;
        memset(&ctl, 0, sizeof(ctl));
        ctl.keysize = sizeof(Oid);
        ctl.entrysize = sizeof(SqlStep);
        steps = hash_create("pipeline_worker SQL steps", 64, &ctl, HASH_ELEM | HASH_BLOBS);
    }
    bool found;
    SqlStep *e = static_cast<SqlStep *>(hash_search(steps, &fn, HASH_ENTER, &found));
    if (!found) {
        e->plan = nullptr;
        e->inspected_generation = -1;
        e->direct = false;
    }
    return e;
}

// Whether the kept plan's current generic plan calls fn instead of its inlined body. Looked at once per plan
// generation (a re-plan -- the function was replaced -- may change it).
void inspect(SqlStep *e) {
    CachedPlanSource *src = static_cast<CachedPlanSource *>(linitial(SPI_plan_get_plan_sources(e->plan)));
    CachedPlan *g = src->gplan;
    if (g == nullptr || !g->is_valid || src->generation == e->inspected_generation) return;
    e->inspected_generation = src->generation;
    PlannedStmt *ps = linitial_node(PlannedStmt, g->stmt_list);
    TargetEntry *te = ps->planTree != nullptr ? static_cast<TargetEntry *>(linitial(ps->planTree->targetlist)) : nullptr;
    if (te != nullptr && IsA(te->expr, FuncExpr) && castNode(FuncExpr, te->expr)->funcid == e->fn) e->direct = true;
}

}  // namespace

bool call_sql_step(Oid fn, Datum arg, Datum *result, bool *isnull) {
    SqlStep *e = entry(fn);
    if (e->direct) return false;
    MemoryContext caller = CurrentMemoryContext;
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    if (e->plan == nullptr) {
        char *sql = psprintf("SELECT %s($1)", quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
                                                                       get_func_name(fn)));
        Oid types[1] = {JSONBOID};
        SPIPlanPtr p = SPI_prepare_cursor(sql, 1, types, CURSOR_OPT_GENERIC_PLAN);
        if (p == nullptr) elog(ERROR, "pipeline_worker: SPI_prepare failed (%s): %s", SPI_result_code_string(SPI_result), sql);
        SPI_keepplan(p);
        e->plan = p;
    }
    Datum values[1] = {arg};
    int rc = SPI_execute_plan(e->plan, values, nullptr, false, 1);
    if (rc != SPI_OK_SELECT || SPI_processed != 1)
        elog(ERROR, "pipeline_worker: calling a SQL step function failed: %s", SPI_result_code_string(rc));
    Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
    MemoryContext old = MemoryContextSwitchTo(caller);
    *result = *isnull ? (Datum)0 : PointerGetDatum(DatumGetJsonbPCopy(d));
    MemoryContextSwitchTo(old);
    inspect(e);
    SPI_finish();
    return true;
}

}  // namespace pw::exec
