#include "pg/kept_plans.hpp"

#include <initializer_list>

extern "C" {
#include "optimizer/planner.h"
#include "optimizer/plancat.h"
#include "parser/parsetree.h"
}

namespace pw::pg {

namespace {

// Our statements are point lookups, index-ordered claims and joins of a few dozen rows against primary keys.
// Their plans are generic and kept, so they must not depend on the table statistics of the moment they were
// made: autovacuum analyzes the run tables after every 2% of churn, in any state (empty, all pending, all
// finished, a million finished and ten pending), and the plan made then stays until the next ANALYZE, while
// the table moves on. Four rules leave the planner one shape per statement (test/scripts/plans_stats.sh):
// - statements are planned with sequential scans, sorts, hash and merge joins, bitmap scans, memoize and
//   materialize disabled, which leaves index-driven shapes;
// - a statement names the indexes it must use (/* pw_indexes: ... */): statistics saying "all pending" made
//   the claim walk the primary key through a million finished runs instead of the pending-runs index, both
//   being ordered by id; "none" names no index (a TID scan);
// - rows found by id never carry a status test the planner could match to a partial index: such tests are
//   written as a CASE, and the ids of a batch are joined with `r.id = ANY (ARRAY[u.id])`, a clause that
//   drives one index probe per id but, not being merge-joinable, never a full index scan in id order (or,
//   where no per-row values go with them, matched against the whole batch as one array parameter,
//   `r.id = ANY ((SELECT ...)::bigint[])`: one index scan over those ids -- retention's deletes). Statistics
//   saying "nothing pending" had made the run-outcome UPDATE scan the whole backlog through the partial
//   indexes for every batch (150 ms per call);
// - every table of ours is planned as holding at least kPlannedRows rows, whatever its statistics say. A VACUUM
//   of tables that retention had emptied records no live rows on pages that stay, and the planner then takes a
//   table of any size for one row: a join's probe by index and a full scan of the same index under a join filter
//   cost the same, and which one a plan got was a tie-break. Found in CI: retention's parent check, planned in
//   that state, read the whole primary key of runs for every expired run (88 s for 10,000 runs). At this size a
//   scan without a condition yields the table's rows to the join, a million per outer row, and is never the cheaper
//   side (also through a partial index that the statistics say selects nothing).
// Also: statements are parsed and run with pg_catalog alone as search path, so that no operator or function of
// the caller's schemas can be picked up by them (they run as the tables' owner). That path is pushed as an
// override (namespace.c), not set through the search_path GUC: a GUC change per statement re-parses the
// setting and recomputes the path twice, and the plan cache compares the path at every execution anyway. The
// planner settings are GUCs, applied only when the statement is about to be planned.
OverrideSearchPath catalog_only_path = {NIL, true, false, 0};

constexpr const char *kIndexesTag = "pw_indexes:";

// The index list (the text after kIndexesTag) of our statement about to be planned (set by exec_shaped around its
// execution), and the one in force while the planner runs: the planner call that comes next is our statement's, and
// it takes the list; any planning nested in it or later in the execution (a function body, a user's trigger on our
// tables) plans as usual.
const char *statement_indexes = nullptr;
const char *statement_text = nullptr;  // its query string: the planner call that passes it is our statement's
const char *planning_indexes = nullptr;
bool planning_ours = false;  // the planner call under way is our statement's (planning_indexes: its list, if any)
get_relation_info_hook_type prev_relation_info_hook = nullptr;
planner_hook_type prev_planner_hook = nullptr;

PlannedStmt *plan_with_indexes(Query *parse, const char *query_string, int options, ParamListInfo params) {
    const char *outer = planning_indexes;
    bool outer_ours = planning_ours;
    planning_ours = statement_text != nullptr && query_string == statement_text;
    planning_indexes = planning_ours ? statement_indexes : nullptr;
    PlannedStmt *result;
    PG_TRY();
    {
        result = prev_planner_hook != nullptr ? prev_planner_hook(parse, query_string, options, params)
                                              : standard_planner(parse, query_string, options, params);
    }
    PG_FINALLY();
    {
        planning_indexes = outer;
        planning_ours = outer_ours;
    }
    PG_END_TRY();
    return result;
}

// Whether the index list (space-separated words up to "*/") names index `name` for the table occurrence called
// `alias` in the statement: as "name", or as "alias.name".
bool names_index(const char *list, const char *alias, const char *name) {
    size_t len = strlen(name), alias_len = strlen(alias);
    for (const char *p = list; *p != '\0' && !(p[0] == '*' && p[1] == '/');) {
        while (*p == ' ' || *p == ',') p++;
        const char *word = p;
        while (*p != '\0' && *p != ' ' && *p != ',' && !(p[0] == '*' && p[1] == '/')) p++;
        const char *dot = static_cast<const char *>(memchr(word, '.', p - word));
        if (dot != nullptr) {
            if (static_cast<size_t>(dot - word) != alias_len || strncmp(word, alias, alias_len) != 0) continue;
            word = dot + 1;
        }
        if (static_cast<size_t>(p - word) == len && strncmp(word, name, len) == 0) return true;
    }
    return false;
}

// The size our statements plan every table of ours for, at least (see the rules above): rows, rows per heap page
// (a run's row with its jsonb), entries per index page.
constexpr double kPlannedRows = 1e6;
constexpr double kRowsPerPage = 50;
constexpr double kEntriesPerIndexPage = 200;

void plan_for_size(RelOptInfo *rel) {
    if (rel->tuples >= kPlannedRows) return;  // (its own estimates, indexes included)
    rel->tuples = kPlannedRows;
    rel->pages = Max(rel->pages, static_cast<BlockNumber>(kPlannedRows / kRowsPerPage));
    ListCell *lc;
    foreach (lc, rel->indexlist) {
        IndexOptInfo *index = static_cast<IndexOptInfo *>(lfirst(lc));
        if (index->indpred != NIL) continue;  // (a partial index holds what its predicate selects: its own estimate)
        index->tuples = rel->tuples;
        index->pages = Max(index->pages, static_cast<BlockNumber>(index->tuples / kEntriesPerIndexPage));
        if (index->tree_height >= 0 && index->tree_height < 2) index->tree_height = 2;
    }
}

void restrict_indexes(PlannerInfo *root, Oid relid, bool inhparent, RelOptInfo *rel) {
    if (prev_relation_info_hook != nullptr) prev_relation_info_hook(root, relid, inhparent, rel);
    if (!planning_ours) return;
    Oid nsp = get_rel_namespace(relid);
    char *nspname = OidIsValid(nsp) ? get_namespace_name(nsp) : nullptr;
    if (nspname == nullptr || strcmp(nspname, "pipeline_worker") != 0) return;
    plan_for_size(rel);
    if (planning_indexes == nullptr || rel->indexlist == NIL) return;
    const char *alias = planner_rt_fetch(rel->relid, root)->eref->aliasname;
    List *kept = NIL;
    ListCell *lc;
    foreach (lc, rel->indexlist) {
        IndexOptInfo *index = static_cast<IndexOptInfo *>(lfirst(lc));
        char *name = get_rel_name(index->indexoid);
        if (name != nullptr && names_index(planning_indexes, alias, name)) kept = lappend(kept, index);
    }
    if (kept != NIL) rel->indexlist = kept;  // also drops indexes a user added to our tables
    else if (names_index(planning_indexes, alias, "none")) rel->indexlist = NIL;  // "none": rows found by ctid
}

// The statement's index list, or NULL; *text: the query string the planner will be given for it (its first, for a
// statement without a list).
const char *indexes_of(SPIPlanPtr plan, const char **text) {
    ListCell *lc;
    *text = nullptr;
    foreach (lc, SPI_plan_get_plan_sources(plan)) {
        const char *sql = static_cast<CachedPlanSource *>(lfirst(lc))->query_string;
        const char *tag = sql != nullptr ? strstr(sql, kIndexesTag) : nullptr;
        if (tag != nullptr) {
            *text = sql;
            return tag + strlen(kIndexesTag);
        }
        if (*text == nullptr) *text = sql;
    }
    return nullptr;
}

void plan_shape_enter(SPIPlanPtr plan, int *nest) {
    *nest = NewGUCNestLevel();
    // (jit too: a disabled node left in a plan costs 1e10, far above jit_above_cost, and a kept plan would then be
    // compiled at every execution -- tens of milliseconds each time)
    for (const char *opt : {"enable_seqscan", "enable_sort", "enable_hashjoin", "enable_mergejoin", "enable_bitmapscan",
                            "enable_memoize", "enable_material", "jit"})
        (void)set_config_option(opt, "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
    statement_indexes = indexes_of(plan, &statement_text);
}

// Whether executing the plan reuses its generic plan as is: the conditions under which GetCachedPlan would
// re-analyse or re-plan (plancache.c: RevalidateCachedQuery, CheckCachedPlan), read through the plan sources.
// `generation` sums the sources' plan generations, to see afterwards whether a plan was built anyway.
bool plan_ready(SPIPlanPtr plan, int *generation) {
    bool ready = true;
    *generation = 0;
    ListCell *lc;
    foreach (lc, SPI_plan_get_plan_sources(plan)) {
        CachedPlanSource *src = static_cast<CachedPlanSource *>(lfirst(lc));
        *generation += src->generation;
        CachedPlan *g = src->gplan;
        if (!CachedPlanIsValid(src) || g == nullptr || !g->is_valid ||
            (src->dependsOnRLS && (src->rewriteRoleId != GetUserId() || src->rewriteRowSecurity != row_security)) ||
            (g->dependsOnRole && g->planRoleId != GetUserId()) ||
            (TransactionIdIsValid(g->saved_xmin) && !TransactionIdEquals(g->saved_xmin, TransactionXmin)))
            ready = false;
    }
    return ready;
}

// A plan built without the planner settings (see exec_shaped) is dropped, so that the next execution builds it
// again with them; as an invalidation does, but keeping the analysed query.
void drop_unshaped_plan(SPIPlanPtr plan, int generation_before) {
    int after;
    (void)plan_ready(plan, &after);
    if (after == generation_before) return;
    ListCell *lc;
    foreach (lc, SPI_plan_get_plan_sources(plan)) {
        CachedPlanSource *src = static_cast<CachedPlanSource *>(lfirst(lc));
        if (src->gplan != nullptr) src->gplan->is_valid = false;
    }
}

}  // namespace

void push_catalog_only_path() { PushOverrideSearchPath(&catalog_only_path); }

void install_plan_hooks() {
    static bool installed = false;
    if (installed) return;
    installed = true;
    prev_relation_info_hook = get_relation_info_hook;
    get_relation_info_hook = restrict_indexes;
    prev_planner_hook = planner_hook;
    planner_hook = plan_with_indexes;
}

int exec_shaped(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count) {
    // Invalidations are read at transaction start and when a relation is first locked: read them now, so that
    // a plan invalidated since is seen as such here and re-planned under the settings.
    AcceptInvalidationMessages();
    int generation;
    bool shape = !plan_ready(plan, &generation);
    int nest = 0;
    if (shape) plan_shape_enter(plan, &nest);
    PushOverrideSearchPath(&catalog_only_path);
    int rc;
    PG_TRY();
    {
        rc = SPI_execute_plan(plan, values, nulls, read_only, count);
    }
    PG_FINALLY();
    {
        statement_indexes = nullptr;
        statement_text = nullptr;
        PopOverrideSearchPath();
        // Re-planned anyway, the plan having been invalidated between the check and its execution (a message
        // read while locking): also when the statement failed, the plan stays cached.
        if (!shape) drop_unshaped_plan(plan, generation);
    }
    PG_END_TRY();
    if (shape) AtEOXact_GUC(true, nest);
    return rc;
}

SPIPlanPtr prepare(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types) {
    if (*cache == nullptr) {
        // Generic plans: our statements are simple and run constantly; re-planning per call costs more.
        // Parsed under the search path they run with (operators and functions are resolved here).
        PushOverrideSearchPath(&catalog_only_path);
        SPIPlanPtr volatile p = nullptr;
        PG_TRY();
        {
            p = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
        }
        PG_FINALLY();
        {
            PopOverrideSearchPath();
        }
        PG_END_TRY();
        if (p == nullptr) elog(ERROR, "pipeline_worker: SPI_prepare failed (%s): %s", SPI_result_code_string(SPI_result), sql);
        SPI_keepplan(p);
        *cache = p;
    }
    return *cache;
}

}  // namespace pw::pg
