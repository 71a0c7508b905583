#include "engine/engine.hpp"

#include <utility>

#include "core/backoff.hpp"
#include "core/definition.hpp"
#include "core/json.hpp"
#include "engine/http.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "worker/shared.hpp"

namespace pw::engine {

int xact_runs_created = 0;
bool xact_pipelines_changed = false;
int subxacts_in_xact = 0;
volatile sig_atomic_t in_step_call = 0;
volatile sig_atomic_t step_self_terminated = 0;
bool xact_runs_finished = false;
volatile CrashMarker *crash_marker = nullptr;
bool in_pw_worker = false;

namespace {

using pg::exec_shaped;
using pg::prepare;

SPIPlanPtr plan_lock_http, plan_load_pipeline, plan_load_run, plan_load_steps, plan_claim, plan_claim_mine, plan_recover, plan_fail,
    plan_fail_crashed, plan_unfinished, plan_release, plan_persist_claim;

// Bookkeeping statements run as the tables' owner, whatever role the caller (or the step) is.
struct OwnerScope {
    Oid saved_user;
    int saved_sec;
};

void owner_enter(OwnerScope *s) {
    GetUserIdAndSecContext(&s->saved_user, &s->saved_sec);
    SetUserIdAndSecContext(tables_owner(), s->saved_sec | SECURITY_LOCAL_USERID_CHANGE);
}

void owner_leave(const OwnerScope *s) { SetUserIdAndSecContext(s->saved_user, s->saved_sec); }

int exec_as_owner(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count) {
    OwnerScope scope;
    owner_enter(&scope);
    int rc = exec_shaped(plan, values, nulls, read_only, count);
    owner_leave(&scope);
    if (rc < 0) elog(ERROR, "pipeline_worker: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    return rc;
}

Datum col(int row, int colno, bool *isnull) {
    return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, colno, isnull);
}

// ------------------------------------------------------------------ pipeline cache

struct CacheEntry {
    char key[256];
    uint64 generation;  // shared pipelines generation when loaded
    Pipeline *pipeline;
};

HTAB *pipeline_cache = nullptr;
MemoryContext cache_ctx = nullptr;

void pipeline_cache_init() {
    if (pipeline_cache != nullptr) return;
    cache_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker cache", ALLOCSET_DEFAULT_SIZES);
    HASHCTL ctl;
    memset(&ctl, 0, sizeof(ctl));
    ctl.keysize = sizeof(((CacheEntry *)nullptr)->key);
    ctl.entrysize = sizeof(CacheEntry);
    ctl.hcxt = cache_ctx;
    pipeline_cache = hash_create("pipeline_worker pipelines", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

// ------------------------------------------------------------------ step context (jsonb)

void push_key(JsonbParseState **st, const char *key) {
    JsonbValue k;
    k.type = jbvString;
    k.val.string.val = const_cast<char *>(key);
    k.val.string.len = strlen(key);
    pushJsonbValue(st, WJB_KEY, &k);
}

void push_string(JsonbParseState **st, const char *s) {
    JsonbValue v;
    v.type = jbvString;
    v.val.string.val = const_cast<char *>(s);
    v.val.string.len = strlen(s);
    pushJsonbValue(st, WJB_VALUE, &v);
}

void push_int(JsonbParseState **st, int64 n) {
    JsonbValue v;
    v.type = jbvNumeric;
    v.val.numeric = int64_to_numeric(n);
    pushJsonbValue(st, WJB_VALUE, &v);
}

void push_jsonb(JsonbParseState **st, Jsonb *j) {
    JsonbValue v;
    if (j == nullptr) {
        v.type = jbvNull;
        pushJsonbValue(st, WJB_VALUE, &v);
        return;
    }
    v.type = jbvBinary;
    v.val.binary.data = &j->root;
    v.val.binary.len = VARSIZE(j) - VARHDRSZ;
    pushJsonbValue(st, WJB_VALUE, &v);
}

struct RunState {
    int64 id;
    char *pipeline_name;
    Oid submitter;
    Jsonb *input;
    Jsonb *metadata;
    Pipeline *pipeline;
    Jsonb **outputs;   // per position (0-based); valid for positions < next
    int *last_attempt; // per position: highest attempt recorded
    int next;          // 0-based position of the next step to run
};

Jsonb *build_context(const RunState *r, int pos, int attempt) {
    JsonbParseState *st = nullptr;
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    push_key(&st, "run_id");
    push_int(&st, r->id);
    push_key(&st, "pipeline");
    push_string(&st, r->pipeline_name);
    push_key(&st, "step");
    push_string(&st, r->pipeline->steps[pos].name);
    push_key(&st, "position");
    push_int(&st, pos + 1);
    push_key(&st, "attempt");
    push_int(&st, attempt);
    push_key(&st, "input");
    push_jsonb(&st, r->input);
    push_key(&st, "metadata");
    push_jsonb(&st, r->metadata);
    push_key(&st, "prev");
    push_jsonb(&st, pos == 0 ? r->input : r->outputs[pos - 1]);
    push_key(&st, "results");
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    for (int i = 0; i < pos; i++) {
        push_key(&st, r->pipeline->steps[i].name);
        push_jsonb(&st, r->outputs[i]);
    }
    pushJsonbValue(&st, WJB_END_OBJECT, nullptr);
    JsonbValue *res = pushJsonbValue(&st, WJB_END_OBJECT, nullptr);
    return JsonbValueToJsonb(res);
}

Jsonb *json_null() { return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))); }

// ------------------------------------------------------------------ step timeout

int timeout_id = -1;
volatile sig_atomic_t step_timed_out = 0;

void step_timeout_handler() {
    step_timed_out = 1;
    QueryCancelPending = true;
    InterruptPending = true;
    SetLatch(MyLatch);
}

// ------------------------------------------------------------------ calling a function step

// Resolves (or re-resolves) the step's function. ERROR with a clear message if it is gone or changed.
Oid resolve_step_function(Step *step) {
    if (OidIsValid(step->fn_oid) && SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(step->fn_oid))) {
        // still there; signature checked below
    } else {
        Oid argtypes[1] = {JSONBOID};
        List *names = stringToQualifiedNameList(step->function);
        step->fn_oid = LookupFuncName(names, 1, argtypes, true);
        if (!OidIsValid(step->fn_oid))
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                            errmsg("function %s(jsonb) does not exist", step->function),
                            errhint("It was dropped or renamed after the pipeline was defined.")));
    }
    if (get_func_rettype(step->fn_oid) != JSONBOID || get_func_nargs(step->fn_oid) != 1 ||
        get_func_prokind(step->fn_oid) != PROKIND_FUNCTION || get_func_retset(step->fn_oid))
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("function %s no longer has the signature (jsonb) RETURNS jsonb", step->function)));
    return step->fn_oid;
}

// Calls the step function as `submitter` in a security-restricted context; GUC changes are undone.
Jsonb *call_function_step(Step *step, Oid submitter, Jsonb *context) {
    Oid fn = resolve_step_function(step);
    if (pg_proc_aclcheck(fn, submitter, ACL_EXECUTE) != ACLCHECK_OK)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("role \"%s\" may not execute function %s", GetUserNameFromId(submitter, true)
                                   ? GetUserNameFromId(submitter, true) : "(dropped role)", step->function)));

    Oid save_user;
    int save_sec;
    GetUserIdAndSecContext(&save_user, &save_sec);
    SetUserIdAndSecContext(submitter, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    int nest = NewGUCNestLevel();

    FmgrInfo flinfo;
    fmgr_info(fn, &flinfo);
    LOCAL_FCINFO(fcinfo, 1);
    InitFunctionCallInfoData(*fcinfo, &flinfo, 1, InvalidOid, nullptr, nullptr);
    fcinfo->args[0].value = JsonbPGetDatum(context);
    fcinfo->args[0].isnull = false;
    if (step->timeout_ms > 0) {
        step_timed_out = 0;
        enable_timeout_after(static_cast<TimeoutId>(timeout_id), step->timeout_ms);
    }
    in_step_call = 1;
    Datum result = FunctionCallInvoke(fcinfo);
    in_step_call = 0;
    if (step->timeout_ms > 0) disable_timeout(static_cast<TimeoutId>(timeout_id), false);

    AtEOXact_GUC(false, nest);
    SetUserIdAndSecContext(save_user, save_sec);
    if (fcinfo->isnull) return nullptr;
    return DatumGetJsonbPCopy(result);
}

// ------------------------------------------------------------------ deferred writes
// Step rows and run results are buffered and written with one INSERT and one UPDATE just before the
// transaction commits (flush_writes). They still commit atomically with the step effects: every step's
// subtransaction is released into the same top-level transaction.

struct StepRow {
    int64 run_id;
    int pos, attempt;
    char *name;
    const char *status;
    Jsonb *output;
    char *error;
    TimestampTz started, finished;
    bool upsert;  // HTTP steps: the attempt's row may exist already (status running)
};

struct RunRow {
    int64 id;
    int claims;
    TimestampTz claimed_at;
    const char *status;  // succeeded, failed, cancelled, or pending (retry after delay_ms)
    Jsonb *result;
    char *error;
    TimestampTz at;
    int delay_ms;
};

struct ClaimRow {
    int64 id;
    int claims;
    TimestampTz claimed_at;
};

MemoryContext write_ctx = nullptr;
List *pending_claims = NIL;
List *pending_steps = NIL;
List *pending_runs = NIL;

MemoryContext writes_context() {
    if (write_ctx == nullptr)
        write_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker writes", ALLOCSET_DEFAULT_SIZES);
    return write_ctx;
}

void buffer_step(int64 run_id, int pos, int attempt, const char *name, const char *status, Jsonb *output,
                 const char *error, TimestampTz started, bool upsert = false) {
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    StepRow *row = static_cast<StepRow *>(palloc(sizeof(StepRow)));
    row->run_id = run_id;
    row->pos = pos + 1;
    row->attempt = attempt;
    row->name = pstrdup(name);
    row->status = status;
    row->output = output ? DatumGetJsonbPCopy(JsonbPGetDatum(output)) : nullptr;
    row->error = error ? pstrdup(error) : nullptr;
    row->started = started;
    row->finished = GetCurrentTimestamp();
    row->upsert = upsert;
    pending_steps = lappend(pending_steps, row);
    MemoryContextSwitchTo(old);
}

void buffer_run(const ClaimedRun *run, const char *status, Jsonb *result, const char *error, int delay_ms = 0) {
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    RunRow *row = static_cast<RunRow *>(palloc(sizeof(RunRow)));
    row->id = run->id;
    row->claims = run->claims;
    row->claimed_at = run->claimed_at;
    row->status = status;
    row->result = result ? DatumGetJsonbPCopy(JsonbPGetDatum(result)) : nullptr;
    row->error = error ? pstrdup(error) : nullptr;
    row->at = GetCurrentTimestamp();
    row->delay_ms = delay_ms;
    pending_runs = lappend(pending_runs, row);
    MemoryContextSwitchTo(old);
    if (strcmp(status, "pending") == 0) {
        // Tell idle workers when the retry is due (they sleep until the earliest one).
        shared::note_retry_due(row->at + int64(delay_ms) * 1000);
        xact_runs_created++;
    } else {
        xact_runs_finished = true;
    }
}

Datum make_array(Datum *values, bool *nulls, int n, Oid type) {
    int16 typlen;
    bool typbyval;
    char typalign;
    get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
    int dims[1] = {n};
    int lbs[1] = {1};
    return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type, typlen, typbyval, typalign));
}

SPIPlanPtr plan_flush_steps, plan_flush_steps_upsert, plan_flush_runs;

void flush_steps_kind(bool upsert);

void flush_steps() {
    bool any_upsert = false, any_plain = false;
    ListCell *lc;
    foreach (lc, pending_steps) {
        if (static_cast<StepRow *>(lfirst(lc))->upsert) any_upsert = true;
        else any_plain = true;
    }
    if (any_plain) flush_steps_kind(false);
    if (any_upsert) flush_steps_kind(true);
}

void flush_steps_kind(bool upsert) {
    int n = 0;
    ListCell *lc;
    foreach (lc, pending_steps) n += static_cast<StepRow *>(lfirst(lc))->upsert == upsert;
    if (n == 0) return;
    Datum *cols[9];
    bool *nulls[9];
    for (int c = 0; c < 9; c++) {
        cols[c] = static_cast<Datum *>(palloc(sizeof(Datum) * n));
        nulls[c] = static_cast<bool *>(palloc0(sizeof(bool) * n));
    }
    int i = 0;
    foreach (lc, pending_steps) {
        StepRow *r = static_cast<StepRow *>(lfirst(lc));
        if (r->upsert != upsert) continue;
        cols[0][i] = Int64GetDatum(r->run_id);
        cols[1][i] = Int32GetDatum(r->pos);
        cols[2][i] = Int32GetDatum(r->attempt);
        cols[3][i] = CStringGetTextDatum(r->name);
        cols[4][i] = CStringGetTextDatum(r->status);
        cols[5][i] = r->output ? JsonbPGetDatum(r->output) : 0;
        nulls[5][i] = r->output == nullptr;
        cols[6][i] = r->error ? CStringGetTextDatum(r->error) : 0;
        nulls[6][i] = r->error == nullptr;
        cols[7][i] = TimestampTzGetDatum(r->started);
        cols[8][i] = TimestampTzGetDatum(r->finished);
        nulls[8][i] = strcmp(r->status, "running") == 0;
        i++;
    }
    Oid elem[9] = {INT8OID, INT4OID, INT4OID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
    Oid types[9] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
                    TEXTARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID};
    Datum v[9];
    for (int c = 0; c < 9; c++) v[c] = make_array(cols[c], nulls[c], n, elem[c]);
#define PW_STEP_ROWS                                                                                   \
    "INSERT INTO pipeline_worker.run_steps"                                                             \
    " (run_id, position, attempt, name, status, output, error, started_at, finished_at)"                \
    " SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"    \
    "   pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"    \
    "   pg_catalog.unnest($8), pg_catalog.unnest($9))"
    SPIPlanPtr p = upsert ? prepare(&plan_flush_steps_upsert,
                                    PW_STEP_ROWS
                                    " ON CONFLICT (run_id, position, attempt) DO UPDATE SET status = excluded.status,"
                                    " output = excluded.output, error = excluded.error,"
                                    " started_at = excluded.started_at, finished_at = excluded.finished_at",
                                    9, types)
                          : prepare(&plan_flush_steps, PW_STEP_ROWS, 9, types);
#undef PW_STEP_ROWS
    exec_as_owner(p, v, nullptr, false, 0);
}

void flush_runs() {
    int n = list_length(pending_runs);
    if (n == 0) return;
    Datum *cols[8];
    bool *nulls[8];
    for (int c = 0; c < 8; c++) {
        cols[c] = static_cast<Datum *>(palloc(sizeof(Datum) * n));
        nulls[c] = static_cast<bool *>(palloc0(sizeof(bool) * n));
    }
    int i = 0;
    ListCell *lc;
    foreach (lc, pending_runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        cols[0][i] = Int64GetDatum(r->id);
        cols[1][i] = CStringGetTextDatum(r->status);
        cols[2][i] = r->result ? JsonbPGetDatum(r->result) : 0;
        nulls[2][i] = r->result == nullptr;
        cols[3][i] = r->error ? CStringGetTextDatum(r->error) : 0;
        nulls[3][i] = r->error == nullptr;
        cols[4][i] = TimestampTzGetDatum(r->at);
        cols[5][i] = Int32GetDatum(r->delay_ms);
        cols[6][i] = Int32GetDatum(r->claims);
        cols[7][i] = TimestampTzGetDatum(r->claimed_at);
        i++;
    }
    Oid elem[8] = {INT8OID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID, INT4OID, INT4OID, TIMESTAMPTZOID};
    Oid types[10] = {INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
                     INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[10];
    for (int c = 0; c < 8; c++) v[c] = make_array(cols[c], nulls[c], n, elem[c]);
    v[8] = Int32GetDatum(MyProcPid);
    v[9] = TimestampTzGetDatum(MyStartTimestamp);
    // One write per run: its claim (if it was not recorded yet) and its outcome. Only a run that is still
    // ours changes: a concurrent cancel_run wins.
    SPIPlanPtr p = prepare(&plan_flush_runs,
                           "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET status = u.status, result = u.result, error = u.error,"
                           " claims = u.claims, started_at = COALESCE(r.started_at, u.claimed_at),"
                           " finished_at = CASE WHEN u.status = 'pending' THEN NULL ELSE u.at END,"
                           " not_before = CASE WHEN u.status = 'pending'"
                           "   THEN u.at + u.delay * interval '1 millisecond' END,"
                           " worker_pid = CASE WHEN u.status = 'pending' THEN NULL ELSE $9 END,"
                           " worker_started_at = CASE WHEN u.status = 'pending' THEN NULL ELSE $10 END"
                           " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
                           "   pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
                           "   pg_catalog.unnest($8)) AS u(id, status, result, error, at, delay, claims, claimed_at)"
                           " WHERE r.id = ANY (ARRAY[u.id]) AND CASE r.status WHEN 'pending' THEN r.worker_pid IS NULL"
                           "   WHEN 'running' THEN r.worker_pid = $9 AND r.worker_started_at = $10 ELSE false END",
                           10, types);
    exec_as_owner(p, v, nullptr, false, 0);
}

const char *format_error(ErrorData *e) {
    if (e->detail != nullptr) return psprintf("%s (%s)", e->message, e->detail);
    return e->message ? e->message : "unknown error";
}

}  // namespace

// ====================================================================== public

int run_as_owner(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                 bool read_only) {
    return exec_as_owner(prepare(cache, sql, nargs, types), values, nulls, read_only, 0);
}

int run_as_caller(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                  bool read_only) {
    SPIPlanPtr plan = prepare(cache, sql, nargs, types);
    int rc = exec_shaped(plan, values, nulls, read_only, 0);
    if (rc < 0) elog(ERROR, "pipeline_worker: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    return rc;
}

// The tables' owner, cached until pg_class or pg_namespace changes (an ALTER ... OWNER, DROP/CREATE EXTENSION;
// also within the transaction that makes the change, and undone with it).
namespace {

Oid cached_tables_owner = InvalidOid;
uint64 owner_invalidations = 0;

void forget_tables_owner(Datum, int, uint32) {
    cached_tables_owner = InvalidOid;
    owner_invalidations++;
}

}  // namespace

Oid tables_owner() {
    static bool callbacks = false;
    if (!callbacks) {
        CacheRegisterSyscacheCallback(RELOID, forget_tables_owner, 0);
        CacheRegisterSyscacheCallback(NAMESPACEOID, forget_tables_owner, 0);
        callbacks = true;
    }
    if (OidIsValid(cached_tables_owner)) return cached_tables_owner;
    uint64 seen = owner_invalidations;  // an invalidation read during the lookups makes its result stale
    Oid nsp = get_namespace_oid("pipeline_worker", false);
    Oid rel = get_relname_relid("runs", nsp);
    if (!OidIsValid(rel)) elog(ERROR, "pipeline_worker.runs does not exist");
    HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
    if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for relation %u", rel);
    Oid owner = ((Form_pg_class)GETSTRUCT(tup))->relowner;
    ReleaseSysCache(tup);
    if (owner_invalidations == seen) cached_tables_owner = owner;
    return owner;
}

Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json) {
    Pipeline *p = static_cast<Pipeline *>(palloc0(sizeof(Pipeline)));
    p->name = pstrdup(name);
    // Parsed in pure C++; copied out with no-throw allocation before the C++ objects die.
    int nsteps = 0;
    Step *steps = nullptr;
    pg::CppError err = pg::cpp_call([&] {
        core::Definition def = core::parse_definition(steps_json, options_json, /*stored=*/true);
        steps = static_cast<Step *>(MemoryContextAllocExtended(CurrentMemoryContext, sizeof(Step) * def.steps.size(),
                                                               MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO));
        if (steps == nullptr) throw std::bad_alloc();
        for (size_t i = 0; i < def.steps.size(); i++) {
            const core::StepSpec &s = def.steps[i];
            steps[i].name = pg::pstrdup_nothrow(s.name);
            steps[i].function = s.is_http ? nullptr : pg::pstrdup_nothrow(s.function);
            if (steps[i].name == nullptr || (!s.is_http && steps[i].function == nullptr)) throw std::bad_alloc();
            steps[i].is_http = s.is_http;
            steps[i].fn_oid = InvalidOid;
            steps[i].max_attempts = def.max_attempts(i);
            steps[i].retry_delay_ms = def.retry_delay_ms(i);
            steps[i].timeout_ms = s.is_http ? def.http_timeout_ms(i) : def.timeout_ms(i);
            if (s.is_http) {
                size_t nh = s.http.headers.size();
                steps[i].url = pg::pstrdup_nothrow(s.http.url);
                steps[i].method = pg::pstrdup_nothrow(s.http.method);
                steps[i].follow_redirects = s.http.follow_redirects;
                steps[i].nheaders = static_cast<int>(nh);
                auto alloc = [](size_t bytes) {
                    void *m = MemoryContextAllocExtended(CurrentMemoryContext, bytes ? bytes : 1,
                                                         MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
                    if (m == nullptr) throw std::bad_alloc();
                    return m;
                };
                steps[i].header_names = static_cast<char **>(alloc(sizeof(char *) * nh));
                steps[i].header_values = static_cast<char **>(alloc(sizeof(char *) * nh));
                steps[i].header_secret = static_cast<bool *>(alloc(sizeof(bool) * nh));
                if (steps[i].url == nullptr || steps[i].method == nullptr) throw std::bad_alloc();
                for (size_t h = 0; h < nh; h++) {
                    const auto &kv = s.http.headers[h];
                    steps[i].header_names[h] = pg::pstrdup_nothrow(kv.first);
                    steps[i].header_values[h] = pg::pstrdup_nothrow(kv.second);
                    if (steps[i].header_names[h] == nullptr || steps[i].header_values[h] == nullptr)
                        throw std::bad_alloc();
                    for (const auto &sec : s.http.secret_headers)
                        if (strcasecmp(sec.c_str(), kv.first.c_str()) == 0) steps[i].header_secret[h] = true;
                }
            }
        }
        nsteps = static_cast<int>(def.steps.size());
    });
    pg::raise_if_failed(err, "invalid pipeline definition");
    p->nsteps = nsteps;
    p->steps = steps;
    return p;
}

namespace {

SPIPlanPtr plan_load_secrets;

// Secret header values are kept out of pipelines.steps (masked there); the workers read them here.
void load_secrets(Pipeline *p) {
    bool any = false;
    for (int i = 0; i < p->nsteps; i++)
        for (int h = 0; h < p->steps[i].nheaders; h++) any = any || p->steps[i].header_secret[h];
    if (!any) return;
    Oid types[1] = {INT8OID};
    SPIPlanPtr plan = prepare(&plan_load_secrets,
                              "SELECT step, header, value FROM pipeline_worker.pipeline_secrets WHERE pipeline_id = $1",
                              1, types);
    Datum v[1] = {Int64GetDatum(p->id)};
    exec_as_owner(plan, v, nullptr, true, 0);
    for (uint64 r = 0; r < SPI_processed; r++) {
        bool isnull;
        char *step = TextDatumGetCString(col(r, 1, &isnull));
        char *header = TextDatumGetCString(col(r, 2, &isnull));
        for (int i = 0; i < p->nsteps; i++) {
            Step *s = &p->steps[i];
            if (strcmp(s->name, step) != 0) continue;
            for (int h = 0; h < s->nheaders; h++)
                if (s->header_secret[h] && pg_strcasecmp(s->header_names[h], header) == 0)
                    s->header_values[h] = MemoryContextStrdup(cache_ctx, TextDatumGetCString(col(r, 3, &isnull)));
        }
    }
}

}  // namespace

Pipeline *load_pipeline(const char *name) {
    pipeline_cache_init();
    char key[256];
    strlcpy(key, name, sizeof(key));
    bool found;
    CacheEntry *e = static_cast<CacheEntry *>(hash_search(pipeline_cache, key, HASH_FIND, &found));
    // Pipelines are immutable; a committed create/drop bumps the shared generation. Read it before the
    // table so that a change committed meanwhile makes the next lookup reload.
    shared::State *st = shared::state();
    uint64 generation = st != nullptr ? pg_atomic_read_u64(&st->pipelines_generation) : 0;
    if (found && st != nullptr && e->generation == generation && strcmp(e->pipeline->name, name) == 0)
        return e->pipeline;

    Oid types[1] = {TEXTOID};
    SPIPlanPtr plan = prepare(&plan_load_pipeline,
                              "SELECT steps::text, options::text, owner::oid, id FROM pipeline_worker.pipelines"
                              " WHERE name = $1",
                              1, types);
    Datum v[1] = {CStringGetTextDatum(name)};
    exec_as_owner(plan, v, nullptr, true, 1);
    if (SPI_processed == 0) {
        if (found) hash_search(pipeline_cache, key, HASH_REMOVE, nullptr);
        return nullptr;
    }
    bool isnull;
    Oid owner = DatumGetObjectId(col(0, 3, &isnull));
    char *steps = TextDatumGetCString(col(0, 1, &isnull));
    char *options = TextDatumGetCString(col(0, 2, &isnull));
    MemoryContext old = MemoryContextSwitchTo(cache_ctx);
    Pipeline *p = parse_pipeline(name, steps, options);  // replaced versions stay in cache_ctx (rare)
    p->owner = owner;
    p->id = DatumGetInt64(col(0, 4, &isnull));
    MemoryContextSwitchTo(old);
    load_secrets(p);
    e = static_cast<CacheEntry *>(hash_search(pipeline_cache, key, HASH_ENTER, &found));
    e->generation = generation;
    e->pipeline = p;
    return p;
}

int claim_runs(int max, Oid submitter, ClaimedRun *out, MemoryContext dest, bool mark_running, int64 min_id,
               int64 below_id) {
    // The oldest claimable rows in [min_id, below_id), skipping rows another session is claiming right now.
    // (SKIP LOCKED does not skip rows this transaction locked itself: callers claiming twice in one
    // transaction must use disjoint ranges.)
    Oid types[6] = {INT4OID, TIMESTAMPTZOID, INT4OID, OIDOID, INT8OID, INT8OID};
    SPIPlanPtr plan;
    Datum v[6] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp), Int32GetDatum(max),
                  ObjectIdGetDatum(submitter), Int64GetDatum(min_id), Int64GetDatum(below_id)};
    if (mark_running) {
        plan = prepare(&plan_claim_mine,
                       "/* pw_indexes: runs.runs_pending_idx r.runs_pkey */ WITH c AS (SELECT id FROM pipeline_worker.runs"
                       "  WHERE status = 'pending' AND ($4 = 0::oid OR submitted_by = $4::regrole) AND id >= $5 AND id < $6"
                       "    AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       "  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                       " UPDATE pipeline_worker.runs r SET status = 'running', worker_pid = $1, worker_started_at = $2,"
                       "  started_at = pg_catalog.clock_timestamp(), not_before = NULL, claims = r.claims + 1"
                       " FROM c WHERE r.id = c.id"
                       " RETURNING r.id, r.pipeline, r.submitted_by::oid, r.input, r.metadata, r.claims, r.pipeline_id",
                       6, types);
    } else {
        plan = prepare(&plan_claim,
                       "/* pw_indexes: runs_pending_idx */ SELECT id, pipeline, submitted_by::oid, input, metadata, claims + 1, pipeline_id"
                       " FROM pipeline_worker.runs"
                       " WHERE status = 'pending' AND ($4 = 0::oid OR submitted_by = $4::regrole) AND id >= $5 AND id < $6"
                       "   AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       " ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED",
                       6, types);
    }
    exec_as_owner(plan, v, nullptr, false, 0);
    int n = static_cast<int>(SPI_processed);
    TimestampTz now = GetCurrentTimestamp();
    MemoryContext old = MemoryContextSwitchTo(dest);
    for (int i = 0; i < n; i++) {
        bool isnull;
        out[i].id = DatumGetInt64(col(i, 1, &isnull));
        out[i].pipeline = TextDatumGetCString(col(i, 2, &isnull));
        out[i].submitter = DatumGetObjectId(col(i, 3, &isnull));
        out[i].input = DatumGetJsonbPCopy(col(i, 4, &isnull));
        out[i].metadata = DatumGetJsonbPCopy(col(i, 5, &isnull));
        out[i].claims = DatumGetInt32(col(i, 6, &isnull));
        out[i].pipeline_id = DatumGetInt64(col(i, 7, &isnull));
        out[i].claimed_at = now;
        out[i].persisted = mark_running;
    }
    MemoryContextSwitchTo(old);
    // ascending: FIFO within the batch
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && out[j - 1].id > out[j].id; j--) std::swap(out[j - 1], out[j]);
    return n;
}

void persist_claim(ClaimedRun *run) {
    if (run->persisted) return;
    run->persisted = true;
    // Deferred: flush_writes() records every claim of the transaction with one statement, first.
    MemoryContext old = MemoryContextSwitchTo(writes_context());
    ClaimRow *row = static_cast<ClaimRow *>(palloc(sizeof(ClaimRow)));
    row->id = run->id;
    row->claims = run->claims;
    row->claimed_at = run->claimed_at;
    pending_claims = lappend(pending_claims, row);
    MemoryContextSwitchTo(old);
}

namespace {

void flush_claims() {
    int n = list_length(pending_claims);
    if (n == 0) return;
    Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    Datum *claims = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    Datum *at = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    int i = 0;
    ListCell *lc;
    foreach (lc, pending_claims) {
        ClaimRow *r = static_cast<ClaimRow *>(lfirst(lc));
        ids[i] = Int64GetDatum(r->id);
        claims[i] = Int32GetDatum(r->claims);
        at[i] = TimestampTzGetDatum(r->claimed_at);
        i++;
    }
    Oid types[5] = {INT8ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[5] = {make_array(ids, nullptr, n, INT8OID), make_array(claims, nullptr, n, INT4OID),
                  make_array(at, nullptr, n, TIMESTAMPTZOID), Int32GetDatum(MyProcPid),
                  TimestampTzGetDatum(MyStartTimestamp)};
    SPIPlanPtr p = prepare(&plan_persist_claim,
                           "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'running', worker_pid = $4, worker_started_at = $5,"
                           " started_at = c.at, claims = c.claims, not_before = NULL"
                           " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))"
                           "   AS c(id, claims, at)"
                           " WHERE r.id = ANY (ARRAY[c.id])"
                           "   AND CASE r.status WHEN 'pending' THEN true WHEN 'running' THEN true ELSE false END",
                           5, types);
    exec_as_owner(p, v, nullptr, false, 0);
}

}  // namespace

void flush_writes() {
    if (pending_steps == NIL && pending_runs == NIL && pending_claims == NIL) return;
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    flush_claims();
    flush_steps();
    flush_runs();
    SPI_finish();
    reset_writes();
}

void reset_writes() {
    pending_claims = NIL;
    pending_steps = NIL;
    pending_runs = NIL;
    if (write_ctx != nullptr) MemoryContextReset(write_ctx);
}

const char *execute_run(int64 run_id) {
    reset_writes();  // leftovers of a call that failed inside a caller's savepoint
    MemoryContext caller = CurrentMemoryContext;
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Oid t1[1] = {INT8OID};
    SPIPlanPtr plan = prepare(&plan_load_run,
                              "/* pw_indexes: runs_pkey */ SELECT pipeline, submitted_by::oid, input, metadata, status, worker_pid,"
                              " worker_started_at, claims, pipeline_id FROM pipeline_worker.runs WHERE id = $1",
                              1, t1);
    Datum v1[1] = {Int64GetDatum(run_id)};
    exec_as_owner(plan, v1, nullptr, false, 1);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("run %lld does not exist", (long long)run_id)));
    bool isnull, pid_null, ts_null;
    char *status = TextDatumGetCString(col(0, 5, &isnull));
    int pid = DatumGetInt32(col(0, 6, &pid_null));
    TimestampTz started = DatumGetTimestampTz(col(0, 7, &ts_null));
    if (strcmp(status, "running") != 0 || pid_null || pid != MyProcPid || ts_null || started != MyStartTimestamp)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("run %lld was not claimed by this session", (long long)run_id),
                        errdetail("Its status is \"%s\"%s.", status,
                                  pid_null ? "" : psprintf(" and it was claimed by the backend with PID %d", pid)),
                        strcmp(status, "pending") == 0 || strcmp(status, "running") == 0
                            ? errhint("Claim it first with pipeline_worker.claim_run().")
                            : errhint("It has finished; pipeline_worker.retry_run() puts a failed or cancelled run back "
                                      "in the queue.")));
    ClaimedRun run;
    MemoryContext old = MemoryContextSwitchTo(caller);  // out of SPI memory before SPI_finish
    run.id = run_id;
    run.pipeline = TextDatumGetCString(col(0, 1, &isnull));
    run.submitter = DatumGetObjectId(col(0, 2, &isnull));
    run.input = DatumGetJsonbPCopy(col(0, 3, &isnull));
    run.metadata = DatumGetJsonbPCopy(col(0, 4, &isnull));
    run.claims = DatumGetInt32(col(0, 8, &isnull));
    run.pipeline_id = DatumGetInt64(col(0, 9, &isnull));
    run.claimed_at = GetCurrentTimestamp();
    run.persisted = true;
    MemoryContextSwitchTo(old);
    SPI_finish();
    const char *result = execute_claimed(&run, nullptr, nullptr);
    flush_writes();
    return result;
}

namespace {

// Copies the run and the outputs so far into a new context: the call outlives the transaction.
HttpCall *make_http_call(const ClaimedRun *claimed, const RunState *r, int pos, int attempt, TimestampTz started,
                         Jsonb *context, MemoryContext parent) {
    MemoryContext ctx = AllocSetContextCreate(parent, "pipeline_worker http call", ALLOCSET_SMALL_SIZES);
    MemoryContext old = MemoryContextSwitchTo(ctx);
    HttpCall *c = static_cast<HttpCall *>(palloc0(sizeof(HttpCall)));
    c->ctx = ctx;
    c->run = *claimed;
    c->run.pipeline = pstrdup(claimed->pipeline);
    c->run.input = claimed->input ? DatumGetJsonbPCopy(JsonbPGetDatum(claimed->input)) : nullptr;
    c->run.metadata = claimed->metadata ? DatumGetJsonbPCopy(JsonbPGetDatum(claimed->metadata)) : nullptr;
    c->run.persisted = true;  // the worker records the claim before the request leaves
    c->pos = pos;
    c->step_name = pstrdup(r->pipeline->steps[pos].name);
    c->attempt = attempt;
    c->started = started;
    c->outputs = static_cast<Jsonb **>(palloc0(sizeof(Jsonb *) * (pos + 1)));
    for (int i = 0; i < pos; i++)
        c->outputs[i] = r->outputs[i] ? DatumGetJsonbPCopy(JsonbPGetDatum(r->outputs[i])) : nullptr;
    Step *step = &r->pipeline->steps[pos];
    c->url = pstrdup(step->url);
    c->method = pstrdup(step->method);
    c->timeout_ms = step->timeout_ms > 0 ? step->timeout_ms : 10000;
    c->follow_redirects = step->follow_redirects;
    c->headers = static_cast<char **>(palloc0(sizeof(char *) * (step->nheaders + 2)));
    c->header_secret = static_cast<bool *>(palloc0(sizeof(bool) * (step->nheaders + 2)));
    c->headers[c->nheaders++] = psprintf("Pipeline-Run-Id: %lld", (long long)claimed->id);
    c->headers[c->nheaders++] = psprintf("Idempotency-Key: %lld:%d:%d", (long long)claimed->id, pos + 1, attempt);
    for (int h = 0; h < step->nheaders; h++) {
        const char *name = step->header_names[h], *value = step->header_values[h];
        if (pg_strcasecmp(name, "Pipeline-Run-Id") == 0 || pg_strcasecmp(name, "Idempotency-Key") == 0)
            continue;  // ours: endpoints rely on them
        if (core::is_client_managed_header(name)) continue;  // create_pipeline refuses them; older definitions
        c->header_secret[c->nheaders] = step->header_secret[h];
        // libcurl reads "Name:" as "remove this header"; "Name;" sends it empty
        c->headers[c->nheaders++] = value[0] == '\0' ? psprintf("%s;", name) : psprintf("%s: %s", name, value);
    }
    if (strcmp(c->method, "GET") != 0 && strcmp(c->method, "DELETE") != 0) {
        c->body = JsonbToCString(nullptr, &context->root, VARSIZE(context));
        c->body_len = static_cast<int>(strlen(c->body));
    }
    MemoryContextSwitchTo(old);
    return c;
}

// A 2xx body as the step output: JSON when it is JSON, otherwise a JSON string; empty: JSON null.
// NULL with *error set when it is neither JSON nor text in the database encoding, or JSON that jsonb cannot hold
// (\u0000, a number out of range, nesting deeper than the stack allows): never silently a string. *retryable is
// set when jsonb_in failed for another reason than the data (out of memory, ...).
Jsonb *body_to_jsonb(const char *body, size_t len, const char **error, bool *retryable) {
    if (len == 0) return json_null();
    // The C++ parser tells JSON from text without a subtransaction; what it refuses only for its limits (depth
    // 256, \u0000, surrogates) goes to jsonb_in too.
    bool is_json = false;
    pg::CppError perr = pg::cpp_call([&] {
        try {
            (void)json::parse(std::string(body, len));
            is_json = true;
        } catch (const json::ParseError &e) {
            is_json = e.beyond_limits;  // JSON by its grammar: jsonb_in decides (and says why it refuses)
        }
    });
    if (perr.failed) {  // not a verdict on the body (out of memory): try again later rather than store a string
        *error = psprintf("could not examine the response: %s", perr.message);
        *retryable = true;
        return nullptr;
    }
    if (is_json && memchr(body, '\0', len) == nullptr) {
        MemoryContext before = CurrentMemoryContext;
        ResourceOwner owner = CurrentResourceOwner;
        Jsonb *volatile out = nullptr;
        char *volatile refusal = nullptr;
        volatile bool transient = false;
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(before);
        PG_TRY();
        {
            out = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(body, len))));
            ReleaseCurrentSubTransaction();
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(before);
            ErrorData *ed = CopyErrorData();
            FlushErrorState();
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(before);  // the message lives with the answer, not in a transaction context
            int category = ERRCODE_TO_CATEGORY(ed->sqlerrcode);
            if (category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED) {
                refusal = psprintf("the response body looks like JSON but jsonb cannot store it: %s", ed->message);
            } else {
                refusal = psprintf("could not store the response as jsonb: %s", ed->message);
                transient = true;
            }
            FreeErrorData(ed);
        }
        PG_END_TRY();
        MemoryContextSwitchTo(before);
        CurrentResourceOwner = owner;
        if (out != nullptr) return out;
        *error = refusal;
        *retryable = transient;
        return nullptr;
    }
    if (memchr(body, '\0', len) != nullptr || !pg_verifymbstr(body, static_cast<int>(len), true)) {
        *error = "the response body is not valid JSON or text in the database encoding";
        return nullptr;
    }
    JsonbValue v;
    v.type = jbvString;
    v.val.string.val = const_cast<char *>(body);
    v.val.string.len = static_cast<int>(len);
    return JsonbValueToJsonb(&v);
}

// Error texts quote the response body and URLs: keep them valid in the database encoding.
const char *valid_text(char *s) {
    int len = static_cast<int>(strlen(s));
    if (pg_verifymbstr(s, len, true)) return s;
    for (int i = 0; i < len; i++)
        if (static_cast<unsigned char>(s[i]) >= 0x80) s[i] = '?';
    return s;
}

bool may_call_http(Oid owner) {
    Oid http_role = get_role_oid("pipeline_worker_http", true);
    return superuser_arg(owner) || (OidIsValid(http_role) && has_privs_of_role(owner, http_role));
}

}  // namespace

namespace {

shared::SessionExec *volatile my_session_entry = nullptr;

// SIGINT in a session that executes runs: cancel_run's signal (signal_pending) interrupts only a step of a run
// that was asked to stop -- a late one, after the step or the run ended, is dropped instead of cancelling the
// session's next statement. Any other SIGINT (pg_cancel_backend, statement_timeout's own path, ^C) is
// PostgreSQL's usual statement cancel.
void session_sigint(SIGNAL_ARGS) {
    int save_errno = errno;
    shared::SessionExec *e = my_session_entry;
    if (e != nullptr && pg_atomic_exchange_u32(&e->signal_pending, 0) != 0) {
        uint64 run = pg_atomic_read_u64(&e->run_id);
        if (!(in_step_call && run != 0 && cancel_requested(static_cast<int64>(run)))) {
            errno = save_errno;
            return;
        }
    }
    errno = save_errno;
    StatementCancelHandler(postgres_signal_arg);
}

// A backend that ends inside a step (FATAL does not unwind to the step's PG_CATCH) must not leave its entry
// naming the run: cancel_run would signal whatever process gets that pid next.
void session_exit(int, Datum) {
    shared::SessionExec *e = my_session_entry;
    if (e == nullptr) return;
    pg_atomic_write_u64(&e->run_id, 0);
    e->pid = 0;
}

}  // namespace

shared::SessionExec *session_step_begin(int64 run_id) {
    shared::SessionExec *e = shared::my_session();
    if (e == nullptr) return nullptr;
    if (my_session_entry == nullptr) {
        e->pid = MyProcPid;
        pg_atomic_write_u32(&e->signal_pending, 0);
        my_session_entry = e;
        before_shmem_exit(session_exit, 0);
        pqsignal(SIGINT, session_sigint);  // for the rest of this backend's life (see session_sigint)
    }
    pg_atomic_write_u64(&e->run_id, static_cast<uint64>(run_id));
    return e;
}

void free_http_call(HttpCall *call) {
    if (call != nullptr) MemoryContextDelete(call->ctx);
}

const char *execute_claimed(const ClaimedRun *volatile claimed_arg, BetweenSteps between_steps, void *arg, HttpIO *io) {
    MemoryContext run_ctx = CurrentMemoryContext;
    ResourceOwner run_owner = CurrentResourceOwner;
    HttpCall *resume = io != nullptr ? io->resume : nullptr;
    const ClaimedRun *const claimed = resume != nullptr ? &resume->run : claimed_arg;
    int64 run_id = claimed->id;
    if (timeout_id < 0) timeout_id = RegisterTimeout(USER_TIMEOUT, step_timeout_handler);
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");

    RunState *r = static_cast<RunState *>(MemoryContextAllocZero(run_ctx, sizeof(RunState)));
    r->id = run_id;
    r->pipeline_name = claimed->pipeline;
    r->submitter = claimed->submitter;
    r->input = claimed->input;
    r->metadata = claimed->metadata;

    // Never run anything under an identity that no longer exists.
    if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(r->submitter))) {
        buffer_run(claimed, "failed", nullptr,
                   psprintf("the role that submitted this run (OID %u) no longer exists", r->submitter));
        SPI_finish();
        return "failed";
    }
    Pipeline *p = load_pipeline(r->pipeline_name);
    if (p == nullptr || p->id != claimed->pipeline_id) {
        // dropped, or dropped and re-created by someone else: never run another pipeline's steps for it
        buffer_run(claimed, "failed", nullptr,
                   psprintf("pipeline \"%s\" was dropped after this run was submitted", r->pipeline_name));
        SPI_finish();
        return "failed";
    }
    r->pipeline = p;
    r->outputs = static_cast<Jsonb **>(MemoryContextAllocZero(run_ctx, sizeof(Jsonb *) * p->nsteps));
    r->last_attempt = static_cast<int *>(MemoryContextAllocZero(run_ctx, sizeof(int) * p->nsteps));
    bool *interrupted = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * p->nsteps));
    r->next = 0;

    if (resume != nullptr) {
        // continuing a parked run: its earlier outputs came with it
        for (int i = 0; i < resume->pos && i < p->nsteps; i++) r->outputs[i] = resume->outputs[i];
        r->next = resume->pos;
        r->last_attempt[resume->pos] = resume->attempt - 1;
    } else if (claimed->claims != 1) {
        // --- resume after the last committed step: only runs claimed before (crash, retry) have history
        Oid t2[1] = {INT8OID};
        Datum v1[1] = {Int64GetDatum(run_id)};
        SPIPlanPtr plan = prepare(&plan_load_steps,
                                  "/* pw_indexes: run_steps_pkey */ SELECT position, attempt, status, output FROM pipeline_worker.run_steps"
                                  " WHERE run_id = $1 ORDER BY position, attempt",
                                  1, t2);
        exec_as_owner(plan, v1, nullptr, false, 0);
        for (uint64 i = 0; i < SPI_processed; i++) {
            bool isnull;
            int pos = DatumGetInt32(col(i, 1, &isnull)) - 1;
            int attempt = DatumGetInt32(col(i, 2, &isnull));
            char *st = TextDatumGetCString(col(i, 3, &isnull));
            if (pos < 0 || pos >= p->nsteps) continue;
            if (attempt > r->last_attempt[pos]) {
                r->last_attempt[pos] = attempt;
                // an HTTP request interrupted by a crash: re-issued as the same attempt (same idempotency key)
                interrupted[pos] = strcmp(st, "running") == 0;
            }
            if (strcmp(st, "succeeded") == 0) {
                bool onull;
                Datum o = col(i, 4, &onull);
                MemoryContext old = MemoryContextSwitchTo(run_ctx);
                r->outputs[pos] = onull ? json_null() : DatumGetJsonbPCopy(o);
                MemoryContextSwitchTo(old);
                if (pos + 1 > r->next) r->next = pos + 1;
            }
        }
        for (int i = 0; i < p->nsteps; i++)
            if (interrupted[i]) r->last_attempt[i]--;
    }

    const char *final_status = nullptr;
    while (r->next < p->nsteps && final_status == nullptr) {
        int pos = r->next;
        Step *step = &p->steps[pos];
        int attempt = r->last_attempt[pos] + 1;
        bool answered = resume != nullptr && pos == resume->pos && attempt == resume->attempt;
        TimestampTz step_started = answered ? resume->started : GetCurrentTimestamp();
        if (MyBackendType == B_BG_WORKER) {
            // In a worker a step is the statement: statement_timestamp() inside it, and query_start in
            // pg_stat_activity, are the step's start (now() stays the start of the transaction, shared by the
            // runs of a batch: at most commit_interval_ms old).
            SetCurrentStatementStartTimestamp();
            pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s)", (long long)run_id, pos + 1, step->name));
        }

        if (cancel_requested(run_id)) {
            if (answered || interrupted[pos])
                buffer_step(run_id, pos, attempt, step->name, "failed", nullptr, "cancelled", step_started, true);
            buffer_run(claimed, "cancelled", nullptr, "cancelled");
            final_status = "cancelled";
            break;
        }

        Jsonb *volatile output = nullptr;
        ErrorData *volatile edata = nullptr;
        const char *http_error = nullptr;  // HTTP steps fail with a message, not an ErrorData
        volatile bool http_retryable = false;
        volatile long retry_after_ms = 0;

        if (step->is_http) {
            if (!answered) {
                if (!may_call_http(p->owner)) {
                    http_error = psprintf("the owner of pipeline \"%s\" (role \"%s\") is no longer a member of "
                                          "pipeline_worker_http", p->name,
                                          GetUserNameFromId(p->owner, true) ? GetUserNameFromId(p->owner, true)
                                                                            : "(dropped role)");
                } else {
                    MemoryContext old = MemoryContextSwitchTo(run_ctx);
                    Jsonb *context = build_context(r, pos, attempt);
                    MemoryContextSwitchTo(old);
                    HttpCall *call = make_http_call(claimed, r, pos, attempt, step_started, context,
                                                    io != nullptr && io->park_parent != nullptr ? io->park_parent
                                                                                                 : run_ctx);
                    if (io != nullptr && io->park_parent != nullptr) {
                        // The worker commits this row (and the claim) before the request leaves.
                        buffer_step(run_id, pos, attempt, step->name, "running", nullptr, nullptr, step_started, true);
                        io->parked = call;
                        final_status = "http";
                        break;
                    }
                    SPI_finish();
                    httpq::call_sync(call);  // SQL path: inside the caller's transaction
                    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
                    resume = call;
                    answered = true;
                }
            }
            if (answered) {
                if (resume->cancelled) {
                    http_error = "cancelled";
                } else if (resume->ok) {
                    const char *conv_error = nullptr;
                    bool conv_retryable = false;
                    MemoryContext old = MemoryContextSwitchTo(run_ctx);
                    output = body_to_jsonb(resume->resp, resume->resp_len, &conv_error, &conv_retryable);
                    MemoryContextSwitchTo(old);
                    if (output == nullptr) {
                        http_error = conv_error;
                        http_retryable = conv_retryable;
                    }
                } else {
                    http_error = resume->error ? valid_text(resume->error) : "request failed";
                    http_retryable = resume->retryable;
                    retry_after_ms = resume->retry_after_ms;
                }
                resume = nullptr;  // answers one attempt only
            }
        } else {
            MemoryContext old = MemoryContextSwitchTo(run_ctx);
            Jsonb *context = build_context(r, pos, attempt);
            MemoryContextSwitchTo(old);

            MemoryContext before = CurrentMemoryContext;
            BeginInternalSubTransaction(nullptr);
            MemoryContextSwitchTo(before);
            shared::SessionExec *volatile session = in_pw_worker ? nullptr : session_step_begin(run_id);
            if (crash_marker != nullptr) {
                crash_marker->position = pos + 1;
                crash_marker->attempt = attempt;
                pg_compiler_barrier();
                crash_marker->run_id = run_id;
            }
            PG_TRY();
            {
                Jsonb *out = call_function_step(step, r->submitter, context);
                MemoryContext o2 = MemoryContextSwitchTo(run_ctx);
                output = out ? DatumGetJsonbPCopy(JsonbPGetDatum(out)) : json_null();
                MemoryContextSwitchTo(o2);
                if (cancel_requested(run_id))
                    ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("run cancelled")));
                // only subtransactions with an XID occupy the subxid cache (64 per backend)
                if (TransactionIdIsValid(GetCurrentTransactionIdIfAny())) subxacts_in_xact++;
                ReleaseCurrentSubTransaction();
                MemoryContextSwitchTo(before);
                CurrentResourceOwner = run_owner;
            }
            PG_CATCH();
            {
                if (crash_marker != nullptr) crash_marker->run_id = 0;  // whatever happens next is not the step's
                if (session != nullptr) pg_atomic_write_u64(&session->run_id, 0);
                in_step_call = 0;
                if (step->timeout_ms > 0 && timeout_id >= 0) disable_timeout(static_cast<TimeoutId>(timeout_id), false);
                MemoryContextSwitchTo(run_ctx);
                edata = CopyErrorData();
                FlushErrorState();
                subxacts_in_xact++;
                RollbackAndReleaseCurrentSubTransaction();
                MemoryContextSwitchTo(before);
                CurrentResourceOwner = run_owner;
                // A server shutdown is not an error of the step: re-raise it so that the run is recovered.
                if (ProcDiePending) ReThrowError(edata);
            }
            PG_END_TRY();
            // A session-level advisory lock (pg_advisory_lock) a step leaves behind in a worker would outlive the
            // run: it would block other sessions, and whoever runs next here -- possibly another role -- would
            // re-enter it. Released after every step. (Other session state is refused inside the step's
            // security-restricted operation: PREPARE, LISTEN, temporary tables, SET ROLE.) A session's
            // execute_run keeps its locks (that session is its caller's), and so does another extension's
            // background worker calling execute_run.
            if (in_pw_worker) LockReleaseSession(USER_LOCKMETHOD);
            if (crash_marker != nullptr) crash_marker->run_id = 0;
            if (session != nullptr) pg_atomic_write_u64(&session->run_id, 0);
        }

        if (edata == nullptr && http_error == nullptr) {
            buffer_step(run_id, pos, attempt, step->name, "succeeded", output, nullptr, step_started, step->is_http);
            r->outputs[pos] = output;
            r->last_attempt[pos] = attempt;
            r->next = pos + 1;
            if (between_steps != nullptr && r->next < p->nsteps) {
                SPI_finish();
                between_steps(arg);
                if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
            }
            continue;
        }

        // --- the attempt failed
        bool cancelled = cancel_requested(run_id) || (http_error != nullptr && strcmp(http_error, "cancelled") == 0);
        const char *msg;
        bool retry_ok;
        if (cancelled) {
            msg = "cancelled";
            retry_ok = false;
        } else if (http_error != nullptr) {
            msg = http_error;
            retry_ok = http_retryable;
        } else if (step_self_terminated) {
            msg = "the step tried to terminate its own worker (pg_terminate_backend(pg_backend_pid()))";
            retry_ok = false;
        } else {
            if (step_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
                msg = psprintf("step timed out after %d ms", step->timeout_ms);
            else
                msg = format_error(edata);
            retry_ok = edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED;
        }
        step_timed_out = 0;
        step_self_terminated = 0;
        buffer_step(run_id, pos, attempt, step->name, "failed", nullptr, msg, step_started, step->is_http);
        r->last_attempt[pos] = attempt;
        if (cancelled) {
            buffer_run(claimed, "cancelled", nullptr, "cancelled");
            final_status = "cancelled";
        } else if (attempt < step->max_attempts && retry_ok) {
            int delay = core::retry_delay_ms(step->retry_delay_ms, attempt,
                                             static_cast<uint64>(pg_prng_uint64(&pg_global_prng_state)));
            if (retry_after_ms > delay) delay = static_cast<int>(retry_after_ms);
            buffer_run(claimed, "pending", nullptr, nullptr, delay);
            final_status = "pending";
        } else {
            buffer_run(claimed, "failed", nullptr, psprintf("step \"%s\" failed: %s", step->name, msg));
            final_status = "failed";
        }
    }
    if (final_status == nullptr) {
        buffer_run(claimed, "succeeded", r->outputs[p->nsteps - 1], nullptr);
        final_status = "succeeded";
    }
    SPI_finish();
    return final_status;
}

void lock_http_runs(HttpCall **calls, int n, const char **status) {
    for (int i = 0; i < n; i++) status[i] = nullptr;
    if (n == 0) return;
    MemoryContext caller = CurrentMemoryContext;
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Datum *ids = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    for (int i = 0; i < n; i++) ids[i] = Int64GetDatum(calls[i]->run.id);
    Oid types[3] = {INT8ARRAYOID, INT4OID, TIMESTAMPTZOID};
    Datum v[3] = {make_array(ids, nullptr, n, INT8OID), Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp)};
    SPIPlanPtr p = prepare(&plan_lock_http,
                           "/* pw_indexes: runs_pkey */ SELECT id, CASE WHEN status = 'running' AND (worker_pid <> $2 OR worker_started_at <> $3)"
                           " THEN 'taken' ELSE status END FROM pipeline_worker.runs"
                           " WHERE id = ANY ($1) FOR UPDATE",  // a primary-key scan: locks in id order
                           3, types);
    exec_as_owner(p, v, nullptr, false, 0);
    for (uint64 row = 0; row < SPI_processed; row++) {
        bool isnull;
        int64 id = DatumGetInt64(col(row, 1, &isnull));
        char *st = MemoryContextStrdup(caller, TextDatumGetCString(col(row, 2, &isnull)));
        for (int i = 0; i < n; i++)
            if (calls[i]->run.id == id) status[i] = st;
    }
    SPI_finish();
}

void record_cancelled_call(HttpCall *call) {
    buffer_step(call->run.id, call->pos, call->attempt, call->step_name, "failed", nullptr, "cancelled", call->started,
                true);
}

void release_runs(const int64 *ids, int n) {
    if (n <= 0) return;
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Datum *vals = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    for (int i = 0; i < n; i++) vals[i] = Int64GetDatum(ids[i]);
    Datum v[2] = {make_array(vals, nullptr, n, INT8OID), TimestampTzGetDatum(MyStartTimestamp)};
    Oid types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
    SPIPlanPtr p = prepare(&plan_release,
                           "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'pending', worker_pid = NULL, worker_started_at = NULL"
                           " WHERE id = ANY ($1) AND CASE status WHEN 'running' THEN worker_pid = pg_catalog.pg_backend_pid()"
                           "   AND worker_started_at = $2 ELSE false END",
                           2, types);
    exec_as_owner(p, v, nullptr, false, 0);
    SPI_finish();
    xact_runs_created += n;
}

void fail_run(int64 run_id, const char *message) {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Oid types[2] = {INT8OID, TEXTOID};
    SPIPlanPtr p = prepare(&plan_fail,
                           "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'failed', error = $2,"
                           " finished_at = pg_catalog.clock_timestamp()"
                           " WHERE id = $1 AND CASE status WHEN 'running' THEN worker_pid = pg_catalog.pg_backend_pid()"
                           "   WHEN 'pending' THEN worker_pid IS NULL ELSE false END",
                           2, types);
    Datum v[2] = {Int64GetDatum(run_id), CStringGetTextDatum(message)};
    exec_as_owner(p, v, nullptr, false, 0);
    xact_runs_finished = true;
    SPI_finish();
}

bool fail_crashed_run(int64 run_id, int position, int attempt, int crashes) {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    char *step_error = psprintf("the worker process executing this step ended abnormally %d times (a crash, or a "
                                "kill such as the out-of-memory killer's); not retried",
                                crashes);
    Oid types[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
    Datum v[4] = {Int64GetDatum(run_id), Int32GetDatum(position), Int32GetDatum(attempt),
                  CStringGetTextDatum(step_error)};
    // Only a run nobody executes: pending, or running for a claimer that is gone (as recover_runs decides).
    SPIPlanPtr p = prepare(&plan_fail_crashed,
                           "/* pw_indexes: runs_pkey pipelines_id_key */ WITH r AS (SELECT r.id, r.pipeline_id FROM pipeline_worker.runs r WHERE r.id = $1"
                           "   AND CASE r.status WHEN 'pending' THEN true WHEN 'running' THEN NOT EXISTS ("
                           "     SELECT 1 FROM pg_catalog.pg_stat_get_activity(r.worker_pid) a"
                           "     WHERE a.backend_start = r.worker_started_at) ELSE false END FOR UPDATE SKIP LOCKED),"
                           " n AS (SELECT r.id, COALESCE((SELECT p.steps -> ($2 - 1) ->> 'name'"
                           "   FROM pipeline_worker.pipelines p WHERE p.id = r.pipeline_id), 'step ' || $2) AS name FROM r),"
                           " s AS (INSERT INTO pipeline_worker.run_steps"
                           "   (run_id, position, attempt, name, status, error, started_at, finished_at)"
                           "   SELECT n.id, $2, $3, n.name, 'failed', $4, pg_catalog.clock_timestamp(),"
                           "          pg_catalog.clock_timestamp() FROM n"
                           "   ON CONFLICT (run_id, position, attempt) DO UPDATE SET status = 'failed',"
                           "   error = excluded.error, finished_at = excluded.finished_at)"
                           " UPDATE pipeline_worker.runs u SET status = 'failed', worker_pid = NULL,"
                           "  worker_started_at = NULL, not_before = NULL, finished_at = pg_catalog.clock_timestamp(),"
                           "  error = pg_catalog.format('step \"%s\" failed: %s', n.name, $4)"
                           " FROM n WHERE u.id = n.id",
                           4, types);
    exec_as_owner(p, v, nullptr, false, 0);
    bool failed = SPI_processed == 1;
    SPI_finish();
    if (failed) xact_runs_finished = true;
    return failed;
}

bool run_unfinished(int64 run_id) {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    SPIPlanPtr p = prepare(&plan_unfinished,
                           "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1 AND status IN ('pending', 'running')",
                           1, types);
    exec_as_owner(p, v, nullptr, true, 1);
    bool unfinished = SPI_processed == 1;
    SPI_finish();
    return unfinished;
}

int64 recover_runs() {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    // A claim belongs to the backend (pid, start time); if no such backend exists, the claimer is gone.
    SPIPlanPtr p = prepare(&plan_recover,
                           "/* pw_indexes: runs_running_idx */ UPDATE pipeline_worker.runs r SET status = 'pending', worker_pid = NULL,"
                           " worker_started_at = NULL"
                           " WHERE r.status = 'running' AND NOT EXISTS ("
                           "   SELECT 1 FROM pg_catalog.pg_stat_get_activity(r.worker_pid) a"
                           "   WHERE a.backend_start = r.worker_started_at)",
                           0, nullptr);
    exec_as_owner(p, nullptr, nullptr, false, 0);
    int64 n = static_cast<int64>(SPI_processed);
    SPI_finish();
    if (n > 0) xact_runs_created += static_cast<int>(n);  // wake workers for them at commit
    return n;
}

void request_cancel(int64 run_id) {
    shared::State *s = shared::state();
    if (s == nullptr) return;
    uint32 i = pg_atomic_fetch_add_u32(&s->cancel_next, 1) % shared::kCancelRing;
    pg_atomic_write_u64(&s->cancels[i], static_cast<uint64>(run_id));
}

void clear_cancel(int64 run_id) {
    shared::State *s = shared::state();
    if (s == nullptr) return;
    for (int i = 0; i < shared::kCancelRing; i++) {
        uint64 expected = static_cast<uint64>(run_id);
        pg_atomic_compare_exchange_u64(&s->cancels[i], &expected, 0);
    }
}

bool cancel_requested(int64 run_id) {
    shared::State *s = shared::state();
    if (s == nullptr) return false;
    for (int i = 0; i < shared::kCancelRing; i++)
        if (pg_atomic_read_u64(&s->cancels[i]) == static_cast<uint64>(run_id)) return true;
    return false;
}

}  // namespace pw::engine
