#include "engine/engine.hpp"

#include <utility>

#include "core/backoff.hpp"
#include "core/definition.hpp"
#include "pg/boundary.hpp"
#include "worker/shared.hpp"

namespace pw::engine {

int xact_runs_created = 0;
volatile sig_atomic_t in_step_call = 0;
volatile sig_atomic_t step_self_terminated = 0;
bool xact_runs_finished = false;

namespace {

// ------------------------------------------------------------------ SPI plans (prepared once, kept)

SPIPlanPtr prepare(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types) {
    if (*cache == nullptr) {
        SPIPlanPtr p = SPI_prepare(sql, nargs, types);
        if (p == nullptr) elog(ERROR, "pipeline_worker: SPI_prepare failed (%s): %s", SPI_result_code_string(SPI_result), sql);
        SPI_keepplan(p);
        *cache = p;
    }
    return *cache;
}

SPIPlanPtr plan_load_pipeline, plan_load_run, plan_load_steps, plan_insert_step, plan_finish, plan_claim,
    plan_claim_mine, plan_recover, plan_retry_later, plan_fail;

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
    int rc = SPI_execute_plan(plan, values, nulls, read_only, count);
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
    TransactionId xmin;
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

void insert_step_row(int64 run_id, int pos, int attempt, const char *name, const char *status, Jsonb *output,
                     const char *error, TimestampTz started) {
    Oid types[8] = {INT8OID, INT4OID, INT4OID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, TIMESTAMPTZOID};
    SPIPlanPtr p = prepare(&plan_insert_step,
                           "INSERT INTO pipeline_worker.run_steps"
                           " (run_id, position, attempt, name, status, output, error, started_at, finished_at)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, pg_catalog.clock_timestamp())",
                           8, types);
    Datum v[8] = {Int64GetDatum(run_id), Int32GetDatum(pos + 1), Int32GetDatum(attempt),
                  CStringGetTextDatum(name), CStringGetTextDatum(status), output ? JsonbPGetDatum(output) : 0,
                  error ? CStringGetTextDatum(error) : 0, TimestampTzGetDatum(started)};
    char nulls[8] = {' ', ' ', ' ', ' ', ' ', output ? ' ' : 'n', error ? ' ' : 'n', ' '};
    exec_as_owner(p, v, nulls, false, 0);
}

// Final state of a claimed run. Only a run still 'running' changes (a concurrent cancel wins).
bool finish_run(int64 run_id, const char *status, Jsonb *result, const char *error) {
    Oid types[4] = {INT8OID, TEXTOID, JSONBOID, TEXTOID};
    SPIPlanPtr p = prepare(&plan_finish,
                           "UPDATE pipeline_worker.runs SET status = $2, result = $3, error = $4,"
                           " finished_at = pg_catalog.clock_timestamp()"
                           " WHERE id = $1 AND status = 'running'",
                           4, types);
    Datum v[4] = {Int64GetDatum(run_id), CStringGetTextDatum(status), result ? JsonbPGetDatum(result) : 0,
                  error ? CStringGetTextDatum(error) : 0};
    char nulls[4] = {' ', ' ', result ? ' ' : 'n', error ? ' ' : 'n'};
    exec_as_owner(p, v, nulls, false, 0);
    xact_runs_finished = true;
    return SPI_processed == 1;
}

void retry_later(int64 run_id, int delay_ms) {
    Oid types[2] = {INT8OID, INT4OID};
    SPIPlanPtr p = prepare(&plan_retry_later,
                           "UPDATE pipeline_worker.runs SET status = 'pending', worker_pid = NULL,"
                           " worker_started_at = NULL,"
                           " not_before = pg_catalog.clock_timestamp() + $2 * interval '1 millisecond'"
                           " WHERE id = $1 AND status = 'running'",
                           2, types);
    Datum v[2] = {Int64GetDatum(run_id), Int32GetDatum(delay_ms)};
    exec_as_owner(p, v, nullptr, false, 0);
    // Tell idle workers when the retry is due (they sleep until the earliest one).
    shared::note_retry_due(GetCurrentTimestamp() + int64(delay_ms) * 1000);
    xact_runs_created++;
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
    int rc = SPI_execute_plan(prepare(cache, sql, nargs, types), values, nulls, read_only, 0);
    if (rc < 0) elog(ERROR, "pipeline_worker: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    return rc;
}

Oid tables_owner() {
    Oid nsp = get_namespace_oid("pipeline_worker", false);
    Oid rel = get_relname_relid("runs", nsp);
    if (!OidIsValid(rel)) elog(ERROR, "pipeline_worker.runs does not exist");
    HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
    if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for relation %u", rel);
    Oid owner = ((Form_pg_class)GETSTRUCT(tup))->relowner;
    ReleaseSysCache(tup);
    return owner;
}

Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json) {
    Pipeline *p = static_cast<Pipeline *>(palloc0(sizeof(Pipeline)));
    p->name = pstrdup(name);
    // Parsed in pure C++; copied out with no-throw allocation before the C++ objects die.
    int nsteps = 0;
    Step *steps = nullptr;
    pg::CppError err = pg::cpp_call([&] {
        core::Definition def = core::parse_definition(steps_json, options_json);
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
            steps[i].timeout_ms = s.is_http ? s.http.timeout_ms : def.timeout_ms(i);
        }
        nsteps = static_cast<int>(def.steps.size());
    });
    pg::raise_if_failed(err, "invalid pipeline definition");
    p->nsteps = nsteps;
    p->steps = steps;
    return p;
}

Pipeline *load_pipeline(const char *name) {
    pipeline_cache_init();
    Oid types[1] = {TEXTOID};
    SPIPlanPtr plan = prepare(&plan_load_pipeline,
                              "SELECT steps::text, options::text, owner::oid, xmin::text::bigint"
                              " FROM pipeline_worker.pipelines WHERE name = $1",
                              1, types);
    Datum v[1] = {CStringGetTextDatum(name)};
    exec_as_owner(plan, v, nullptr, true, 1);
    if (SPI_processed == 0) return nullptr;
    bool isnull;
    TransactionId xmin = static_cast<TransactionId>(DatumGetInt64(col(0, 4, &isnull)));
    Oid owner = DatumGetObjectId(col(0, 3, &isnull));
    char key[256];
    strlcpy(key, name, sizeof(key));
    bool found;
    CacheEntry *e = static_cast<CacheEntry *>(hash_search(pipeline_cache, key, HASH_ENTER, &found));
    if (found && e->xmin == xmin && e->pipeline != nullptr && strcmp(e->pipeline->name, name) == 0) return e->pipeline;
    if (!found) e->pipeline = nullptr;
    char *steps = TextDatumGetCString(col(0, 1, &isnull));
    char *options = TextDatumGetCString(col(0, 2, &isnull));
    MemoryContext old = MemoryContextSwitchTo(cache_ctx);
    Pipeline *p = parse_pipeline(name, steps, options);  // old versions stay in cache_ctx: pipelines are rarely redefined
    p->owner = owner;
    MemoryContextSwitchTo(old);
    e->xmin = xmin;
    e->pipeline = p;
    return p;
}

int claim_runs(int max, Oid submitter, int64 *ids) {
    // The CTE locks the oldest claimable rows, skipping rows another session is claiming right now.
    Oid types[4] = {INT4OID, TIMESTAMPTZOID, INT4OID, OIDOID};
    SPIPlanPtr plan;
    Datum v[4] = {Int32GetDatum(MyProcPid), TimestampTzGetDatum(MyStartTimestamp), Int32GetDatum(max),
                  ObjectIdGetDatum(submitter)};
    if (OidIsValid(submitter)) {
        plan = prepare(&plan_claim_mine,
                       "WITH c AS (SELECT id FROM pipeline_worker.runs"
                       "  WHERE status = 'pending' AND submitted_by = $4::regrole"
                       "    AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       "  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                       " UPDATE pipeline_worker.runs r SET status = 'running', worker_pid = $1, worker_started_at = $2,"
                       "  started_at = pg_catalog.clock_timestamp(), not_before = NULL"
                       " FROM c WHERE r.id = c.id RETURNING r.id",
                       4, types);
    } else {
        plan = prepare(&plan_claim,
                       "WITH c AS (SELECT id FROM pipeline_worker.runs"
                       "  WHERE status = 'pending'"
                       "    AND (not_before IS NULL OR not_before <= pg_catalog.clock_timestamp())"
                       "  ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)"
                       " UPDATE pipeline_worker.runs r SET status = 'running', worker_pid = $1, worker_started_at = $2,"
                       "  started_at = pg_catalog.clock_timestamp(), not_before = NULL"
                       " FROM c WHERE r.id = c.id RETURNING r.id",
                       3, types);
    }
    exec_as_owner(plan, v, nullptr, false, 0);
    int n = static_cast<int>(SPI_processed);
    for (int i = 0; i < n; i++) {
        bool isnull;
        ids[i] = DatumGetInt64(col(i, 1, &isnull));
    }
    // ascending: FIFO within the batch
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) std::swap(ids[j - 1], ids[j]);
    return n;
}

const char *execute_run(int64 run_id, BetweenSteps between_steps, void *arg) {
    MemoryContext run_ctx = CurrentMemoryContext;
    ResourceOwner run_owner = CurrentResourceOwner;
    if (timeout_id < 0) timeout_id = RegisterTimeout(USER_TIMEOUT, step_timeout_handler);

    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");

    // --- load the run and check that this backend claimed it
    Oid t1[1] = {INT8OID};
    SPIPlanPtr plan = prepare(&plan_load_run,
                              "SELECT pipeline, submitted_by::oid, input, metadata, status, worker_pid,"
                              " worker_started_at FROM pipeline_worker.runs WHERE id = $1",
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
                        errhint("Claim it first with pipeline_worker.claim_run().")));

    MemoryContext old = MemoryContextSwitchTo(run_ctx);
    RunState *r = static_cast<RunState *>(palloc0(sizeof(RunState)));
    r->id = run_id;
    r->pipeline_name = TextDatumGetCString(col(0, 1, &isnull));
    r->submitter = DatumGetObjectId(col(0, 2, &isnull));
    r->input = DatumGetJsonbPCopy(col(0, 3, &isnull));
    r->metadata = DatumGetJsonbPCopy(col(0, 4, &isnull));
    MemoryContextSwitchTo(old);

    Pipeline *p = load_pipeline(r->pipeline_name);
    if (p == nullptr) {
        finish_run(run_id, "failed", nullptr, psprintf("pipeline \"%s\" no longer exists", r->pipeline_name));
        SPI_finish();
        return "failed";
    }
    r->pipeline = p;
    old = MemoryContextSwitchTo(run_ctx);
    r->outputs = static_cast<Jsonb **>(palloc0(sizeof(Jsonb *) * p->nsteps));
    r->last_attempt = static_cast<int *>(palloc0(sizeof(int) * p->nsteps));
    MemoryContextSwitchTo(old);

    // --- resume after the last committed step (runs recovered after a crash, retried runs)
    Oid t2[1] = {INT8OID};
    plan = prepare(&plan_load_steps,
                   "SELECT position, attempt, status, output FROM pipeline_worker.run_steps"
                   " WHERE run_id = $1 ORDER BY position, attempt",
                   1, t2);
    exec_as_owner(plan, v1, nullptr, false, 0);
    r->next = 0;
    for (uint64 i = 0; i < SPI_processed; i++) {
        int pos = DatumGetInt32(col(i, 1, &isnull)) - 1;
        int attempt = DatumGetInt32(col(i, 2, &isnull));
        char *st = TextDatumGetCString(col(i, 3, &isnull));
        if (pos < 0 || pos >= p->nsteps) continue;
        if (attempt > r->last_attempt[pos]) r->last_attempt[pos] = attempt;
        if (strcmp(st, "succeeded") == 0) {
            bool onull;
            Datum o = col(i, 4, &onull);
            old = MemoryContextSwitchTo(run_ctx);
            r->outputs[pos] = onull ? json_null() : DatumGetJsonbPCopy(o);
            MemoryContextSwitchTo(old);
            if (pos + 1 > r->next) r->next = pos + 1;
        }
    }

    const char *final_status = nullptr;
    while (r->next < p->nsteps && final_status == nullptr) {
        int pos = r->next;
        Step *step = &p->steps[pos];
        int attempt = r->last_attempt[pos] + 1;
        TimestampTz step_started = GetCurrentTimestamp();
        if (MyBackendType == B_BG_WORKER) pgstat_report_activity(STATE_RUNNING, psprintf("run %lld step %d (%s)", (long long)run_id, pos + 1, step->name));

        if (cancel_requested(run_id)) {
            finish_run(run_id, "cancelled", nullptr, "cancelled");
            final_status = "cancelled";
            break;
        }

        Jsonb *volatile output = nullptr;
        ErrorData *volatile edata = nullptr;
        old = MemoryContextSwitchTo(run_ctx);
        Jsonb *context = build_context(r, pos, attempt);
        MemoryContextSwitchTo(old);

        MemoryContext before = CurrentMemoryContext;
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(before);
        PG_TRY();
        {
            if (step->is_http)
                ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                                errmsg("HTTP steps are not supported by this version of pipeline_worker")));
            Jsonb *out = call_function_step(step, r->submitter, context);
            MemoryContext o2 = MemoryContextSwitchTo(run_ctx);
            output = out ? DatumGetJsonbPCopy(JsonbPGetDatum(out)) : json_null();
            MemoryContextSwitchTo(o2);
            insert_step_row(run_id, pos, attempt, step->name, "succeeded", output, nullptr, step_started);
            if (cancel_requested(run_id))
                ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("run cancelled")));
            ReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(before);
            CurrentResourceOwner = run_owner;
        }
        PG_CATCH();
        {
            in_step_call = 0;
            if (step->timeout_ms > 0 && timeout_id >= 0) disable_timeout(static_cast<TimeoutId>(timeout_id), false);
            MemoryContextSwitchTo(run_ctx);
            edata = CopyErrorData();
            FlushErrorState();
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(before);
            CurrentResourceOwner = run_owner;
            // A cancel of the statement that is not ours (timeout, cancel_run) is still an error of the step;
            // a server shutdown is not: re-raise it so that the run is recovered, not failed.
            if (ProcDiePending) ReThrowError(edata);
        }
        PG_END_TRY();

        if (edata == nullptr) {
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
        bool cancelled = cancel_requested(run_id);
        const char *msg;
        bool fatal = false;  // no retry: the step itself is broken
        if (cancelled) msg = "cancelled";
        else if (step_self_terminated) {
            msg = "the step tried to terminate its own worker (pg_terminate_backend(pg_backend_pid()))";
            fatal = true;
        }
        else if (step_timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
            msg = psprintf("step timed out after %d ms", step->timeout_ms);
        else msg = format_error(edata);
        step_timed_out = 0;
        step_self_terminated = 0;
        insert_step_row(run_id, pos, attempt, step->name, "failed", nullptr, msg, step_started);
        r->last_attempt[pos] = attempt;
        if (cancelled) {
            finish_run(run_id, "cancelled", nullptr, "cancelled");
            final_status = "cancelled";
        } else if (attempt < step->max_attempts && !fatal && edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED) {
            retry_later(run_id, core::retry_delay_ms(step->retry_delay_ms, attempt, static_cast<uint64>(pg_prng_uint64(&pg_global_prng_state))));
            final_status = "pending";
        } else {
            finish_run(run_id, "failed", nullptr, psprintf("step \"%s\" failed: %s", step->name, msg));
            final_status = "failed";
        }
    }
    if (final_status == nullptr) {
        final_status = finish_run(run_id, "succeeded", r->outputs[p->nsteps - 1], nullptr) ? "succeeded" : "cancelled";
    }
    SPI_finish();
    return final_status;
}

void fail_run(int64 run_id, const char *message) {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    Oid types[2] = {INT8OID, TEXTOID};
    SPIPlanPtr p = prepare(&plan_fail,
                           "UPDATE pipeline_worker.runs SET status = 'failed', error = $2,"
                           " finished_at = pg_catalog.clock_timestamp()"
                           " WHERE id = $1 AND status = 'running' AND worker_pid = pg_catalog.pg_backend_pid()",
                           2, types);
    Datum v[2] = {Int64GetDatum(run_id), CStringGetTextDatum(message)};
    exec_as_owner(p, v, nullptr, false, 0);
    xact_runs_finished = true;
    SPI_finish();
}

int64 recover_runs() {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
    // A claim belongs to the backend (pid, start time); if no such backend exists, the claimer is gone.
    SPIPlanPtr p = prepare(&plan_recover,
                           "UPDATE pipeline_worker.runs r SET status = 'pending', worker_pid = NULL,"
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
