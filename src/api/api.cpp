// SQL-callable functions: argument checks, privilege checks, and calls into the engine. Nothing more.
#include <string>
#include <vector>

#include "core/definition.hpp"
#include "engine/engine.hpp"
#include "pg/boundary.hpp"
#include "worker/shared.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_create_pipeline);
PG_FUNCTION_INFO_V1(pw_drop_pipeline);
PG_FUNCTION_INFO_V1(pw_grant_pipeline);
PG_FUNCTION_INFO_V1(pw_revoke_pipeline);
PG_FUNCTION_INFO_V1(pw_create_run);
PG_FUNCTION_INFO_V1(pw_wait_run);
PG_FUNCTION_INFO_V1(pw_claim_run);
PG_FUNCTION_INFO_V1(pw_execute_run);
PG_FUNCTION_INFO_V1(pw_cancel_run);
PG_FUNCTION_INFO_V1(pw_retry_run);
PG_FUNCTION_INFO_V1(pw_recover_runs);
PG_FUNCTION_INFO_V1(pw_workers);
PG_FUNCTION_INFO_V1(pw_has_role);
PG_FUNCTION_INFO_V1(pw_is_admin);
PG_FUNCTION_INFO_V1(pw_wake_workers);
}

using namespace pw;

namespace {

constexpr int kMaxPipelineName = 200;

SPIPlanPtr plan_insert_secret, plan_insert_pipeline, plan_pipeline_owner, plan_grantees, plan_active_runs, plan_delete_pipeline,
    plan_insert_grant, plan_delete_grant, plan_insert_run, plan_run_status, plan_cancel_lock, plan_cancel_running,
    plan_retry, plan_retry_check;

void spi_connect() {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
}

Datum col(int row, int colno, bool *isnull) {
    return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, colno, isnull);
}

bool is_admin(Oid role) {
    Oid admin = get_role_oid("pipeline_worker_admin", true);
    return superuser_arg(role) || (OidIsValid(admin) && has_privs_of_role(role, admin));
}

const char *role_name(Oid role) {
    char *n = GetUserNameFromId(role, true);
    return n ? n : "(dropped role)";
}

// create_run holds this lock in share mode and drop_pipeline in exclusive mode until their transactions end,
// so a run is never created for a pipeline being dropped. A heavyweight lock on an advisory tag (no row lock:
// concurrent create_runs would otherwise pile up MultiXacts on the pipeline's row).
static void lock_pipeline(const char *name, LOCKMODE mode) {
    LOCKTAG tag;
    uint32 h = hash_bytes(reinterpret_cast<const unsigned char *>(name), static_cast<int>(strlen(name)));
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, 0x50574B52 /* "PWKR" */, h, 3);
    (void)LockAcquire(&tag, mode, false, false);
}

// Owner of pipeline `name`; ERROR if it does not exist. Reads with a fresh snapshot (not read-only): callers
// may have just waited for the pipeline lock, and must see what the transaction they waited for did.
Oid pipeline_owner(const char *name, int64 *id = nullptr) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    engine::run_as_owner(&plan_pipeline_owner, "SELECT owner::oid, id FROM pipeline_worker.pipelines WHERE name = $1",
                         1, types, v, nullptr, false);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" does not exist", name),
                        errhint("Create it with pipeline_worker.create_pipeline().")));
    bool isnull;
    if (id != nullptr) *id = DatumGetInt64(col(0, 2, &isnull));
    return DatumGetObjectId(col(0, 1, &isnull));
}

void require_manager(const char *pipeline, Oid owner, const char *action) {
    Oid me = GetUserId();
    if (!has_privs_of_role(me, owner) && !is_admin(me))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to %s pipeline \"%s\"", action, pipeline),
                        errdetail("Only its owner (\"%s\") or members of pipeline_worker_admin may.", role_name(owner))));
}

// May this role (default: the current one) submit runs to this pipeline?
bool may_submit(const char *pipeline, Oid owner, Oid me = InvalidOid) {
    if (!OidIsValid(me)) me = GetUserId();
    if (has_privs_of_role(me, owner) || is_admin(me)) return true;
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(pipeline)};
    engine::run_as_owner(&plan_grantees, "SELECT grantee::oid FROM pipeline_worker.pipeline_grants WHERE pipeline = $1",
                         1, types, v, nullptr, true);
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        if (has_privs_of_role(me, DatumGetObjectId(col(i, 1, &isnull)))) return true;
    }
    return false;
}

char *checked_name(FunctionCallInfo fcinfo, int argno, const char *what) {
    if (PG_ARGISNULL(argno)) ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("%s must not be null", what)));
    char *name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
    if (name[0] == '\0') ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be empty", what)));
    if (strlen(name) > kMaxPipelineName)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s is longer than %d bytes", what, kMaxPipelineName)));
    return name;
}

char *jsonb_text(Jsonb *j) { return JsonbToCString(nullptr, &j->root, VARSIZE(j)); }

// Resolves a function step's name with the caller's search_path; returns the schema-qualified name.
char *resolve_function(const char *step, const char *fn) {
    Oid argtypes[1] = {JSONBOID};
    if (strchr(fn, '(') != nullptr)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: step \"%s\": \"function\" must be a function name, not %s",
                               step, fn),
                        errhint("Write the name without its argument list, e.g. \"public.my_step\": a step function "
                                "always takes (jsonb).")));
    List *names = stringToQualifiedNameList(fn);
    Oid oid = LookupFuncName(names, 1, argtypes, true);
    if (!OidIsValid(oid)) {
        // the same name with other arguments (or a procedure): say what exists
        FuncCandidateList other = FuncnameGetCandidates(names, -1, NIL, false, false, false, true);
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                        errmsg("invalid pipeline definition: step \"%s\": function %s(jsonb) does not exist", step, fn),
                        other != nullptr ? errdetail("There is %s %s.",
                                                     get_func_prokind(other->oid) == PROKIND_PROCEDURE ? "a procedure"
                                                                                                       : "a function",
                                                     format_procedure(other->oid))
                                         : 0,
                        errhint("A function step needs a function with the signature (jsonb) RETURNS jsonb.")));
    }
    if (get_func_prokind(oid) != PROKIND_FUNCTION)
        ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                        errmsg("invalid pipeline definition: step \"%s\": %s is not a plain function", step, fn),
                        errhint("Procedures, aggregates and window functions cannot be steps.")));
    if (get_func_rettype(oid) != JSONBOID || get_func_retset(oid))
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("invalid pipeline definition: step \"%s\": function %s must return jsonb", step, fn),
                        errdetail("It returns %s%s.", get_func_retset(oid) ? "SETOF " : "",
                                  format_type_be(get_func_rettype(oid))),
                        errhint("A function step needs a function with the signature (jsonb) RETURNS jsonb.")));
    if (pg_proc_aclcheck(oid, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("invalid pipeline definition: step \"%s\": permission denied for function %s", step, fn),
                        errhint("The role defining the pipeline needs EXECUTE on its step functions.")));
    return quote_qualified_identifier(get_namespace_name(get_func_namespace(oid)), get_func_name(oid));
}

}  // namespace

// ---------------------------------------------------------------------------------------------- pipelines

extern "C" Datum pw_create_pipeline(PG_FUNCTION_ARGS) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    if (PG_ARGISNULL(1)) ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED), errmsg("steps must not be null")));
    char *steps = jsonb_text(PG_GETARG_JSONB_P(1));
    char *options = PG_ARGISNULL(2) ? pstrdup("{}") : jsonb_text(PG_GETARG_JSONB_P(2));

    engine::Pipeline *p = engine::parse_pipeline(name, steps, options);  // ERROR on an invalid definition
    Oid http_role = get_role_oid("pipeline_worker_http", true);
    char **resolved = static_cast<char **>(palloc0(sizeof(char *) * p->nsteps));
    for (int i = 0; i < p->nsteps; i++) {
        if (p->steps[i].is_http) {
            if (!superuser() && !(OidIsValid(http_role) && has_privs_of_role(GetUserId(), http_role)))
                ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                                errmsg("permission denied to define HTTP step \"%s\"", p->steps[i].name),
                                errhint("Only members of pipeline_worker_http may define HTTP steps.")));
            continue;
        }
        resolved[i] = resolve_function(p->steps[i].name, p->steps[i].function);
    }
    char *normalized = nullptr;
    int nsecrets = 0;
    char **secret_fields = nullptr;  // step, header, value per secret
    pg::CppError err = pg::cpp_call([&] {
        core::Definition def = core::parse_definition(steps, options);
        std::vector<std::string> names;
        for (int i = 0; i < p->nsteps; i++) names.emplace_back(resolved[i] ? resolved[i] : "");
        std::vector<core::Secret> secrets;
        normalized = pg::pstrdup_nothrow(core::normalized_steps(def, names, &secrets));
        if (normalized == nullptr) throw std::bad_alloc();
        secret_fields = static_cast<char **>(
            MemoryContextAllocExtended(CurrentMemoryContext, sizeof(char *) * 3 * (secrets.size() + 1), MCXT_ALLOC_NO_OOM));
        if (secret_fields == nullptr) throw std::bad_alloc();
        for (const core::Secret &sec : secrets) {
            const std::string *fields[3] = {&sec.step, &sec.header, &sec.value};
            for (int f = 0; f < 3; f++)
                if ((secret_fields[nsecrets * 3 + f] = pg::pstrdup_nothrow(*fields[f])) == nullptr) throw std::bad_alloc();
            nsecrets++;
        }
    });
    pg::raise_if_failed(err, "invalid pipeline definition");

    spi_connect();
    Oid types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
    Datum v[4] = {CStringGetTextDatum(name), CStringGetTextDatum(normalized), CStringGetTextDatum(options),
                  ObjectIdGetDatum(GetUserId())};
    engine::run_as_owner(&plan_insert_pipeline,
                         "INSERT INTO pipeline_worker.pipelines (name, steps, options, owner)"
                         " VALUES ($1, $2::jsonb, $3::jsonb, $4::regrole) ON CONFLICT (name) DO NOTHING RETURNING id",
                         4, types, v, nullptr, false);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_DUPLICATE_OBJECT), errmsg("pipeline \"%s\" already exists", name),
                        errhint("Drop it first with pipeline_worker.drop_pipeline(), or choose another name.")));
    bool isnull;
    int64 pipeline_id = DatumGetInt64(col(0, 1, &isnull));
    for (int i = 0; i < nsecrets; i++) {
        Oid st[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
        Datum sv[4] = {Int64GetDatum(pipeline_id), CStringGetTextDatum(secret_fields[i * 3]),
                       CStringGetTextDatum(secret_fields[i * 3 + 1]), CStringGetTextDatum(secret_fields[i * 3 + 2])};
        engine::run_as_owner(&plan_insert_secret,
                             "INSERT INTO pipeline_worker.pipeline_secrets (pipeline_id, step, header, value)"
                             " VALUES ($1, $2, $3, $4)",
                             4, st, sv, nullptr, false);
    }
    SPI_finish();
    engine::xact_pipelines_changed = true;
    PG_RETURN_VOID();
}

extern "C" Datum pw_drop_pipeline(PG_FUNCTION_ARGS) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    lock_pipeline(name, ExclusiveLock);  // waits for transactions creating runs of it
    spi_connect();
    Oid owner = pipeline_owner(name);
    require_manager(name, owner, "drop");
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    // Lock the pipeline first, then count its unfinished runs: a concurrent drop waits for us.
    engine::run_as_owner(&plan_active_runs,
                         "SELECT (SELECT count(*) FROM pipeline_worker.runs r"
                         "         WHERE r.pipeline = p.name AND r.status IN ('pending', 'running'))"
                         " FROM pipeline_worker.pipelines p WHERE p.name = $1 FOR UPDATE OF p",
                         1, types, v, nullptr, false);
    bool isnull;
    int64 active = SPI_processed ? DatumGetInt64(col(0, 1, &isnull)) : 0;
    if (active > 0)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                        errmsg("pipeline \"%s\" has %lld pending or running run(s)", name, (long long)active),
                        errhint("Wait for them to finish, or cancel them with pipeline_worker.cancel_run().")));
    engine::run_as_owner(&plan_delete_pipeline, "DELETE FROM pipeline_worker.pipelines WHERE name = $1", 1, types, v,
                         nullptr, false);
    SPI_finish();
    engine::xact_pipelines_changed = true;
    PG_RETURN_VOID();
}

static void change_grant(FunctionCallInfo fcinfo, bool grant) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    Oid role = PG_GETARG_OID(1);
    spi_connect();
    Oid owner = pipeline_owner(name);
    require_manager(name, owner, grant ? "grant" : "revoke");
    Oid types[2] = {TEXTOID, OIDOID};
    Datum v[2] = {CStringGetTextDatum(name), ObjectIdGetDatum(role)};
    if (grant)
        engine::run_as_owner(&plan_insert_grant,
                             "INSERT INTO pipeline_worker.pipeline_grants (pipeline, grantee) VALUES ($1, $2::regrole)"
                             " ON CONFLICT DO NOTHING",
                             2, types, v, nullptr, false);
    else
        engine::run_as_owner(&plan_delete_grant,
                             "DELETE FROM pipeline_worker.pipeline_grants WHERE pipeline = $1 AND grantee = $2::regrole",
                             2, types, v, nullptr, false);
    SPI_finish();
}

extern "C" Datum pw_grant_pipeline(PG_FUNCTION_ARGS) {
    change_grant(fcinfo, true);
    PG_RETURN_VOID();
}

extern "C" Datum pw_revoke_pipeline(PG_FUNCTION_ARGS) {
    change_grant(fcinfo, false);
    PG_RETURN_VOID();
}

// ---------------------------------------------------------------------------------------------- runs

extern "C" Datum pw_create_run(PG_FUNCTION_ARGS) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    Datum input = PG_ARGISNULL(1) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(1);
    Datum metadata = PG_ARGISNULL(2) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(2);
    Oid me = GetUserId();
    lock_pipeline(name, ShareLock);  // a concurrent drop_pipeline waits for this transaction, and we for it
    spi_connect();
    int64 pipeline_id;
    Oid owner = pipeline_owner(name, &pipeline_id);
    if (!may_submit(name, owner))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to submit runs to pipeline \"%s\"", name),
                        errhint("Its owner can allow it with pipeline_worker.grant_pipeline('%s', '%s').", name,
                                role_name(me))));
    Oid types[6] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID};
    Datum v[6] = {CStringGetTextDatum(name), input, metadata, ObjectIdGetDatum(me), Int64GetDatum(pipeline_id),
                  ObjectIdGetDatum(owner)};
    engine::run_as_owner(&plan_insert_run,
                         "INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                         " pipeline_owner) VALUES ($1, $2, $3, $4::regrole, $5, $6::regrole) RETURNING id",
                         6, types, v, nullptr, false);
    bool isnull;
    int64 id = DatumGetInt64(col(0, 1, &isnull));
    SPI_finish();
    engine::xact_runs_created++;  // wakes an idle worker when this transaction commits
    PG_RETURN_INT64(id);
}

static bool finished(const char *status) {
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0;
}

// Status of a run as the caller sees it (row-level security applies); ERROR if invisible or missing.
// *written_here (optional): whether this transaction wrote the run's current row (created, claimed, retried it).
static char *run_status(int64 run_id, bool *written_here = nullptr) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    engine::run_as_caller(&plan_run_status,
                          "/* pw_indexes: runs_pkey */ SELECT status, xmin FROM pipeline_worker.runs WHERE id = $1", 1,
                          types, v, nullptr, false);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("run %lld does not exist", (long long)run_id)));
    bool isnull;
    char *s = TextDatumGetCString(col(0, 1, &isnull));
    if (written_here != nullptr) *written_here = TransactionIdIsCurrentTransactionId(DatumGetTransactionId(col(0, 2, &isnull)));
    SPI_freetuptable(SPI_tuptable);
    return s;
}

extern "C" Datum pw_wait_run(PG_FUNCTION_ARGS) {
    int64 run_id = PG_GETARG_INT64(0);
    Interval *span = PG_GETARG_INTERVAL_P(1);
    int64 usecs = span->time + span->day * USECS_PER_DAY + int64(span->month) * DAYS_PER_MONTH * USECS_PER_DAY;
    if (usecs < 0) usecs = 0;
    TimestampTz deadline = GetCurrentTimestamp() + usecs;
    shared::State *st = shared::state();
    MemoryContext caller_ctx = CurrentMemoryContext;

    spi_connect();
    char *status = nullptr;
    for (;;) {
        if (st != nullptr) ConditionVariablePrepareToSleep(&st->run_done_cv);
        MemoryContext old = MemoryContextSwitchTo(caller_ctx);
        if (status) pfree(status);
        MemoryContextSwitchTo(old);
        bool written_here = false;
        char *s = run_status(run_id, &written_here);
        // No worker can see (or finish) a run this transaction created, claimed or retried before it commits:
        // waiting would only sleep until the timeout.
        if (written_here && !finished(s))
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("run %lld was created or changed by this transaction, which has not committed",
                                   (long long)run_id),
                            errdetail("No worker can execute the run before this transaction commits."),
                            errhint("Commit first, or call wait_run in a later statement outside the creating "
                                    "transaction.")));
        old = MemoryContextSwitchTo(caller_ctx);
        status = pstrdup(s);
        MemoryContextSwitchTo(old);
        TimestampTz now = GetCurrentTimestamp();
        if (finished(status) || now >= deadline) break;
        long remaining_ms = static_cast<long>((deadline - now + 999) / 1000);
        // Woken when any run finishes; the cap only guards against a missed broadcast.
        long sleep_ms = remaining_ms < 1000 ? remaining_ms : 1000;
        if (st != nullptr) {
            ConditionVariableTimedSleep(&st->run_done_cv, sleep_ms, PG_WAIT_EXTENSION);
        } else {
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms < 10 ? sleep_ms : 10,
                            PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
        }
        CHECK_FOR_INTERRUPTS();
    }
    if (st != nullptr) ConditionVariableCancelSleep();
    SPI_finish();
    PG_RETURN_TEXT_P(cstring_to_text(status));
}

extern "C" Datum pw_claim_run(PG_FUNCTION_ARGS) {
    engine::ClaimedRun run;
    MemoryContext caller = CurrentMemoryContext;
    spi_connect();
    // Administrators (the only ones granted this function by default) claim any run; others only their own.
    Oid only = is_admin(GetUserId()) ? InvalidOid : GetUserId();
    int n = engine::claim_runs(1, only, &run, caller, true);
    SPI_finish();
    if (n == 0) PG_RETURN_NULL();
    PG_RETURN_INT64(run.id);
}

extern "C" Datum pw_execute_run(PG_FUNCTION_ARGS) {
    int64 run_id = PG_GETARG_INT64(0);
    const char *status = engine::execute_run(run_id);
    PG_RETURN_TEXT_P(cstring_to_text(status));
}

// The worker executing run_id (shared-memory slots), 0 if none.
static int executor_pid(int64 run_id) {
    shared::State *st = shared::state();
    if (st != nullptr)
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && pg_atomic_read_u64(&st->slots[i].run_id) == static_cast<uint64>(run_id))
                return st->slots[i].pid;
    return 0;
}

extern "C" Datum pw_cancel_run(PG_FUNCTION_ARGS) {
    int64 run_id = PG_GETARG_INT64(0);
    spi_connect();
    char *status = run_status(run_id);  // visibility = permission: submitter, pipeline owner, admin
    if (finished(status)) {
        SPI_finish();
        PG_RETURN_BOOL(false);
    }
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // 1. Ask whoever executes it to stop: the engine checks the request before and after every step, and
    //    SIGINT interrupts the step running now (like pg_cancel_backend); its subtransaction rolls back.
    engine::request_cancel(run_id);
    int pid = executor_pid(run_id);
    shared::SessionExec *session = pid == 0 ? shared::session_executing(run_id) : nullptr;
    if (pid != 0 && pid != MyProcPid) {
        kill(pid, SIGINT);  // the worker checks that it is still this run
    } else if (session != nullptr && session->pid != MyProcPid) {
        // A session's execute_run: its SIGINT handler honours a signal marked as ours only while a step of a
        // cancelled run executes (a late one does not cancel the session's next statement).
        pg_atomic_write_u32(&session->signal_pending, 1);
        kill(session->pid, SIGINT);
    } else if (shared::State *st = shared::state()) {
        // Not being executed by a worker right now; it may be waiting for an HTTP answer in one. Wake the
        // workers: a worker's SIGINT handler only interrupts a step of a run that has a cancel request, and
        // sets its latch so that it checks its requests in flight at once.
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && st->slots[i].pid != MyProcPid) kill(st->slots[i].pid, SIGINT);
    }
    bool isnull = true;

    // 2. Take the run's row lock -- an ordinary lock wait (pg_locks, lock_timeout) while a transaction holds
    //    it: a worker's ends at once (it was signalled, or sees the request before its next step), a session's
    //    when it commits or rolls back. Then cancel the run unless it finished meanwhile.
    engine::run_as_owner(&plan_cancel_lock, "/* pw_indexes: runs_pkey */ SELECT status FROM pipeline_worker.runs WHERE id = $1 FOR UPDATE", 1,
                         types, v, nullptr, false);
    bool result = false;
    if (SPI_processed == 1) {
        char *now_status = TextDatumGetCString(col(0, 1, &isnull));
        if (!finished(now_status)) {
            engine::run_as_owner(&plan_cancel_running,
                                 "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'cancelled', error = 'cancelled',"
                                 " finished_at = pg_catalog.clock_timestamp(), not_before = NULL WHERE id = $1",
                                 1, types, v, nullptr, false);
            result = true;
        } else {
            result = strcmp(now_status, "cancelled") == 0;
        }
    }
    SPI_finish();
    if (result) engine::xact_runs_finished = true;
    PG_RETURN_BOOL(result);
}

extern "C" Datum pw_retry_run(PG_FUNCTION_ARGS) {
    int64 run_id = PG_GETARG_INT64(0);
    spi_connect();
    (void)run_status(run_id);
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // A run belongs to the pipeline it was submitted to: if that was dropped (even if the name exists again),
    // the run cannot be retried.
    engine::run_as_owner(&plan_retry_check,
                         "/* pw_indexes: runs_pkey */ SELECT r.pipeline, EXISTS (SELECT 1 FROM pipeline_worker.pipelines p"
                         "  WHERE p.name = r.pipeline AND p.id = r.pipeline_id), r.submitted_by::oid"
                         " FROM pipeline_worker.runs r WHERE r.id = $1",
                         1, types, v, nullptr, false);
    bool isnull;
    if (SPI_processed == 1 && !DatumGetBool(col(0, 2, &isnull)))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("run %lld cannot be retried: its pipeline \"%s\" was dropped", (long long)run_id,
                               TextDatumGetCString(col(0, 1, &isnull)))));
    if (SPI_processed == 1) {
        // A retry is a new submission in the submitter's name (its steps run as the submitter): the submitter
        // must still be allowed to submit -- a revoked grant is not side-stepped by retrying an old run.
        char *pipeline = TextDatumGetCString(col(0, 1, &isnull));
        Oid submitter = DatumGetObjectId(col(0, 3, &isnull));
        int64 pipeline_id;
        Oid owner = pipeline_owner(pipeline, &pipeline_id);
        if (!may_submit(pipeline, owner, submitter))
            ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                            errmsg("run %lld cannot be retried: its submitter \"%s\" may no longer submit runs to "
                                   "pipeline \"%s\"", (long long)run_id, role_name(submitter), pipeline),
                            errhint("The pipeline's owner can allow it again with pipeline_worker.grant_pipeline().")));
    }
    engine::run_as_owner(&plan_retry,
                         "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'pending', result = NULL, error = NULL,"
                         " finished_at = NULL, worker_pid = NULL, worker_started_at = NULL, not_before = NULL"
                         " WHERE id = $1 AND status IN ('failed', 'cancelled')",
                         1, types, v, nullptr, false);
    bool result = SPI_processed == 1;
    SPI_finish();
    if (result) {
        engine::clear_cancel(run_id);
        engine::xact_runs_created++;
    }
    PG_RETURN_BOOL(result);
}

extern "C" Datum pw_recover_runs(PG_FUNCTION_ARGS) {
    PG_RETURN_INT64(engine::recover_runs());
}

extern "C" Datum pw_workers(PG_FUNCTION_ARGS) {
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    InitMaterializedSRF(fcinfo, 0);
    shared::State *st = shared::state();
    if (st == nullptr) return (Datum)0;
    for (int i = 0; i < st->nslots; i++) {
        shared::Slot *s = &st->slots[i];
        int pid = s->pid;
        if (pid == 0) continue;
        Datum values[6];
        bool nulls[6] = {false, false, false, false, false, false};
        uint64 run = pg_atomic_read_u64(&s->run_id);
        values[0] = Int32GetDatum(i);
        values[1] = Int32GetDatum(pid);
        values[2] = CStringGetTextDatum(run != 0 ? "running" : (pg_atomic_read_u32(&s->idle) ? "idle" : "busy"));
        values[3] = Int64GetDatum(static_cast<int64>(run));
        nulls[3] = run == 0;
        values[4] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->runs_done)));
        values[5] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->batches)));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}

extern "C" Datum pw_has_role(PG_FUNCTION_ARGS) {
    PG_RETURN_BOOL(has_privs_of_role(GetUserId(), PG_GETARG_OID(0)));
}

extern "C" Datum pw_is_admin(PG_FUNCTION_ARGS) {
    PG_RETURN_BOOL(is_admin(GetUserId()));
}

// Wakes every idle worker when the calling transaction commits.
extern "C" Datum pw_wake_workers(PG_FUNCTION_ARGS) {
    engine::xact_runs_created = INT_MAX / 2;
    PG_RETURN_VOID();
}
