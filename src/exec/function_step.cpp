#include "exec/function_step.hpp"

#include "exec/hooks.hpp"
#include "exec/session.hpp"
#include "exec/sql_steps.hpp"
#include "exec/step_hygiene.hpp"

extern "C" {
#include "catalog/namespace.h"
#include "catalog/pg_language.h"
#include "commands/proclang.h"
#include "utils/fmgrprotos.h"
}
#include "pg/roles.hpp"
#include "shmem/cancels.hpp"

namespace pw::exec {

namespace {

const StepHooks *g_hooks = nullptr;
volatile sig_atomic_t in_step_call = 0;
int64 step_run_id = 0;  // the run whose step is being called (0: none)
int64 own_cancel_id = 0;  // that run, cancelled by its own step (cancel_own_run)
int subxacts = 0;  // subtransactions started in the current transaction

void note_subxact() { subxacts++; }

// ------------------------------------------------------------------ step timeout

int timeout_id = -1;
volatile sig_atomic_t step_timed_out = 0;

void step_timeout_handler() {
    step_timed_out = 1;
    QueryCancelPending = true;
    InterruptPending = true;
    SetLatch(MyLatch);
}

// ------------------------------------------------------------------ kept FmgrInfos of PL/pgSQL step functions

// PL/pgSQL keeps its compiled function in flinfo->fn_extra; with a fresh FmgrInfo per call it looked the function up
// in its hash table every time, hashing a key of ~400 bytes (~2 % of a W1 drain). The FmgrInfos of the PL/pgSQL step
// functions called last are kept, in a context of their own. Safe because PL/pgSQL checks the function's pg_proc row
// at every call, and any change to pg_proc (an invalidation: the only way it could free the compiled function)
// empties the cache before its next use -- not in the callback, where a call using an entry may be on the stack.
// Only PL/pgSQL: another language's handler may keep in fn_extra what it expects to live as long as one query.
constexpr int kKeptFns = 16;
struct KeptFn {
    Oid fn;
    FmgrInfo flinfo;
};
KeptFn kept_fns[kKeptFns];
int nkept_fns = 0;
MemoryContext kept_fns_cxt = nullptr;
bool kept_fns_stale = false;
Oid plpgsql_oid = InvalidOid;

// Bumped at every change to pg_proc: a step's resolved function is looked up by name again after one (a function
// renamed keeps its OID -- kept by OID, the old body ran under a name that now meant another function, or none;
// acceptance walk-through, 2026-12-08).
uint64 proc_generation = 1;
bool watching_procs = false;

void proc_changed(Datum, int, uint32) {
    kept_fns_stale = true;
    proc_generation++;
}

void watch_procs() {
    if (watching_procs) return;
    CacheRegisterSyscacheCallback(PROCOID, proc_changed, 0);
    watching_procs = true;
}

bool is_plpgsql(Oid language) {
    if (!OidIsValid(plpgsql_oid)) plpgsql_oid = get_language_oid("plpgsql", true);
    return OidIsValid(plpgsql_oid) && language == plpgsql_oid;
}

// The kept FmgrInfo of fn (made now if need be); nullptr when nested in another step call (an entry may be in use).
FmgrInfo *kept_flinfo(Oid fn) {
    if (in_step_call) return nullptr;
    if (kept_fns_cxt == nullptr) {
        kept_fns_cxt = AllocSetContextCreate(TopMemoryContext, "pipeline_worker step functions", ALLOCSET_SMALL_SIZES);
        watch_procs();
    }
    if (kept_fns_stale || nkept_fns == kKeptFns) {
        MemoryContextReset(kept_fns_cxt);
        nkept_fns = 0;
        kept_fns_stale = false;
    }
    for (int i = 0; i < nkept_fns; i++)
        if (kept_fns[i].fn == fn) return &kept_fns[i].flinfo;
    KeptFn &k = kept_fns[nkept_fns];
    fmgr_info_cxt(fn, &k.flinfo, kept_fns_cxt);
    k.fn = fn;
    nkept_fns++;
    return &k.flinfo;
}

// ------------------------------------------------------------------ calling the function

// Resolves (or re-resolves) the step's function and checks its signature, with one catalog lookup in the common
// case; *sql: it is written in SQL (see sql_steps.hpp). ERROR with a clear message if it is gone or changed.
Oid resolve_step_function(store::Step *step, bool *sql, bool *plpgsql) {
    watch_procs();
    if (step->fn_generation != proc_generation) step->fn_oid = InvalidOid;  // (pg_proc changed: by name again)
    HeapTuple tup = OidIsValid(step->fn_oid) ? SearchSysCache1(PROCOID, ObjectIdGetDatum(step->fn_oid)) : nullptr;
    if (!HeapTupleIsValid(tup)) {
        Oid argtypes[1] = {JSONBOID};
        List *names = stringToQualifiedNameList(step->function);
        step->fn_generation = proc_generation;
        step->fn_oid = LookupFuncName(names, 1, argtypes, true);
        if (!OidIsValid(step->fn_oid))
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_FUNCTION),
                            errmsg("function %s(jsonb) does not exist", step->function),
                            errhint("It was dropped or renamed after the pipeline was defined.")));
        tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(step->fn_oid));
        if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for function %u", step->fn_oid);
    }
    Form_pg_proc proc = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tup));
    // (a definition stored before create_pipeline refused temporary functions: its pg_temp_N may be another
    // session's now, whose function of that name is not the one defined)
    if (isAnyTempNamespace(proc->pronamespace)) {
        ReleaseSysCache(tup);
        step->fn_oid = InvalidOid;
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("step function %s is temporary", step->function),
                        errhint("Define the pipeline again with a function in a permanent schema.")));
    }
    bool ok = pg::step_signature(proc) == pg::StepSignature::Ok;
    *sql = proc->prolang == SQLlanguageId;
    *plpgsql = !*sql && is_plpgsql(proc->prolang);
    ReleaseSysCache(tup);
    if (!ok)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("function %s no longer has the signature (jsonb) RETURNS jsonb", step->function)));
    return step->fn_oid;
}

// Calls the step function as `submitter` in a security-restricted context; GUC changes are undone.
Jsonb *call_function_step(store::Step *step, Oid submitter, Jsonb *context) {
    bool sql, plpgsql;
    Oid fn = resolve_step_function(step, &sql, &plpgsql);
    if (pg_proc_aclcheck(fn, submitter, ACL_EXECUTE) != ACLCHECK_OK)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("role \"%s\" may not execute function %s", pg::role_name(submitter), step->function)));

    Oid save_user;
    int save_sec;
    GetUserIdAndSecContext(&save_user, &save_sec);
    SetUserIdAndSecContext(submitter, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
    int nest = NewGUCNestLevel();

    if (step->timeout_ms > 0) {
        step_timed_out = 0;
        enable_timeout_after(static_cast<TimeoutId>(timeout_id), step->timeout_ms);
    }
    FmgrInfo *kept = plpgsql ? kept_flinfo(fn) : nullptr;
    in_step_call = 1;
    Datum result;
    bool isnull;
    if (!sql || !call_sql_step(fn, JsonbPGetDatum(context), &result, &isnull)) {
        FmgrInfo flinfo;
        if (kept == nullptr) fmgr_info(fn, &flinfo);
        LOCAL_FCINFO(fcinfo, 1);
        InitFunctionCallInfoData(*fcinfo, kept != nullptr ? kept : &flinfo, 1, InvalidOid, nullptr, nullptr);
        fcinfo->args[0].value = JsonbPGetDatum(context);
        fcinfo->args[0].isnull = false;
        result = FunctionCallInvoke(fcinfo);
        isnull = fcinfo->isnull;
    }
    in_step_call = 0;
    if (step->timeout_ms > 0) disable_timeout(static_cast<TimeoutId>(timeout_id), false);

    AtEOXact_GUC(false, nest);
    SetUserIdAndSecContext(save_user, save_sec);
    if (isnull) return nullptr;
    return DatumGetJsonbPCopy(result);
}

bool has_temp_namespace() {
    Oid temp_ns, temp_toast_ns;
    GetTempNamespaceState(&temp_ns, &temp_toast_ns);
    return OidIsValid(temp_ns);
}

// A temporary object a step creates would outlive the run in this worker, where whoever runs next -- possibly another
// role -- would find it. Temporary tables are refused in the step's security-restricted operation, but a function
// in pg_temp was not (until 2026-12-07; acceptance walk-through). A worker has no temporary schema of its own, so one
// that appeared during the step was made by it: the step fails, and its subtransaction's rollback takes the schema
// back with the object. (Only one that appeared: one from elsewhere -- another library -- fails no step.)
void refuse_temporary_objects(bool had_temp_namespace) {
    if (!had_temp_namespace && has_temp_namespace())
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("a step executed by a background worker cannot create temporary objects"),
                        errhint("Create them in a schema of your own, or use a session's execute_run().")));
}

const char *format_error(ErrorData *e) {
    if (e->detail != nullptr) return psprintf("%s (%s)", e->message, e->detail);
    return e->message ? e->message : "unknown error";
}

}  // namespace

void set_hooks(const StepHooks *hooks) { g_hooks = hooks; }
const StepHooks *hooks() { return g_hooks; }
bool in_step() { return in_step_call != 0; }
int64 step_run() { return in_step_call != 0 ? step_run_id : 0; }
void cancel_own_run() { own_cancel_id = step_run(); }
bool own_cancel(int64 run_id) {
    bool mine = run_id != 0 && own_cancel_id == run_id;
    if (mine) own_cancel_id = 0;
    return mine;
}
int subxacts_in_xact() { return subxacts; }
void reset_subxacts() { subxacts = 0; }

Jsonb *run_function_step(const RunState *r, int pos, int attempt, MemoryContext run_ctx, ResourceOwner run_owner,
                         ErrorData **edata_out) {
    if (timeout_id < 0) timeout_id = RegisterTimeout(USER_TIMEOUT, step_timeout_handler);
    step_timed_out = 0;
    // What the last role's steps left in this worker that the same role may keep (exec/step_hygiene.hpp). (A
    // session's execute_run keeps it: that session is the caller's.)
    static Oid last_submitter = InvalidOid;
    if (in_worker() && r->submitter != last_submitter) {
        before_another_role();
        last_submitter = r->submitter;
    }
    store::Step *step = &r->pipeline->steps[pos];
    MemoryContext old = MemoryContextSwitchTo(run_ctx);
    Jsonb *context = build_context(r, pos, attempt);
    MemoryContextSwitchTo(old);

    Jsonb *volatile output = nullptr;
    ErrorData *volatile edata = nullptr;
    MemoryContext before = CurrentMemoryContext;
    // (the owner to return to is the current one: a commit between steps replaced the one the run started under)
    ResourceOwner owner_before = CurrentResourceOwner;
    (void)run_owner;
    const bool had_temp_namespace = in_worker() && has_temp_namespace();
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(before);
    shared::SessionExec *volatile session = in_worker() ? nullptr : session_step_begin(r->id);
    if (g_hooks != nullptr) g_hooks->step_begin(r->id, pos + 1, attempt, r->task);
    own_cancel_id = 0;  // (one left by a step whose failure was not recorded: not this one's)
    PG_TRY();
    {
        step_run_id = r->id;
        Jsonb *out = call_function_step(step, r->submitter, context);
        step_run_id = 0;
        if (in_worker()) {
            refuse_temporary_objects(had_temp_namespace);
            close_step_leftovers();
        }
        // A timeout, cancel or self-termination that came after the step's last interrupt check (in its RETURN
        // expression, say) is the step's: taken here, inside its subtransaction. (Until 2026-12-05 it stayed pending
        // past the step, and the batch's next statement failed the run with an "internal error".)
        CHECK_FOR_INTERRUPTS();
        MemoryContext o2 = MemoryContextSwitchTo(run_ctx);
        output = out ? DatumGetJsonbPCopy(JsonbPGetDatum(out)) : json_null();
        MemoryContextSwitchTo(o2);
        if (out != nullptr) pfree(out);
        if (shared::cancel_requested(r->id) || own_cancel_id == r->id)
            ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("run cancelled")));
        // Its timeout_ms fired and the step caught the cancel itself (EXCEPTION WHEN query_canceled) and returned:
        // the attempt still ran too long, and fails as timed out, its effects rolled back (until 2026-12-08 it
        // succeeded; acceptance walk-through).
        if (step_timed_out)
            ereport(ERROR, (errcode(ERRCODE_QUERY_CANCELED), errmsg("canceling statement due to step timeout")));
        // only subtransactions with an XID occupy the subxid cache (64 per backend)
        if (TransactionIdIsValid(GetCurrentTransactionIdIfAny())) note_subxact();
        ReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(before);
        CurrentResourceOwner = owner_before;
    }
    PG_CATCH();
    {
        if (g_hooks != nullptr) g_hooks->step_end();  // whatever happens next is not the step's
        session_step_end(session);
        in_step_call = 0;
        step_run_id = 0;
        if (step->timeout_ms > 0 && timeout_id >= 0) disable_timeout(static_cast<TimeoutId>(timeout_id), false);
        MemoryContextSwitchTo(run_ctx);
        edata = CopyErrorData();
        FlushErrorState();
        note_subxact();
        RollbackAndReleaseCurrentSubTransaction();
        MemoryContextSwitchTo(before);
        CurrentResourceOwner = owner_before;
        // A cancel the step's own timeout or cancel_run asked for after the step raised its error: the step is over.
        // (Not in a session's execute_run: there it may be the caller's own cancel or statement_timeout.)
        if (in_worker()) QueryCancelPending = false;
        // A server shutdown is not an error of the step: re-raise it so that the run is recovered.
        if (ProcDiePending) ReThrowError(edata);
        // Nor, in a session's execute_run, is the caller's own cancel (pg_cancel_backend, statement_timeout): the
        // statement ends with it, as any statement's would, and the run stays this session's claim (until 2026-12-07
        // it failed the step: a run failed for good by the caller's statement_timeout; acceptance walk-through).
        // A cancel the step's timeout_ms or cancel_run asked for is the step's.
        if (!in_worker() && edata->sqlerrcode == ERRCODE_QUERY_CANCELED && !step_timed_out &&
            !shared::cancel_requested(r->id) && own_cancel_id != r->id)
            ReThrowError(edata);
    }
    PG_END_TRY();
    // What the step left in this process for whoever runs next here (exec/step_hygiene.hpp). A session's
    // execute_run keeps it (that session is its caller's), and so does another extension's background worker
    // calling execute_run.
    if (in_worker()) leave_step_clean();
    if (g_hooks != nullptr) g_hooks->step_end();
    session_step_end(session);
    // The context holds the previous steps' outputs (and the run's input): a map's tasks each built one, and kept
    // until the batch ended, memory growing with the square of the map's size (until 2026-12-05).
    pfree(context);
    *edata_out = edata;
    return edata == nullptr ? output : nullptr;
}

const char *function_step_error(const store::Step *step, ErrorData *edata, bool *retryable) {
    const char *reason = g_hooks != nullptr ? g_hooks->take_failure_reason() : nullptr;
    bool timed_out = step_timed_out;
    step_timed_out = 0;
    if (reason != nullptr) {
        *retryable = false;
        return reason;
    }
    *retryable = edata->sqlerrcode != ERRCODE_FEATURE_NOT_SUPPORTED;
    if (timed_out && edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
        return psprintf("step timed out after %d ms", step->timeout_ms);
    return format_error(edata);
}

}  // namespace pw::exec
