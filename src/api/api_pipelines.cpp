// SQL functions on pipelines: create_pipeline, drop_pipeline, grant_pipeline, revoke_pipeline, pipeline_owner.
#include <string>
#include <vector>

#include "api/access.hpp"
#include "core/definition.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "store/pipelines.hpp"
#include "store/queue.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_create_pipeline);
PG_FUNCTION_INFO_V1(pw_drop_pipeline);
PG_FUNCTION_INFO_V1(pw_grant_pipeline);
PG_FUNCTION_INFO_V1(pw_revoke_pipeline);
PG_FUNCTION_INFO_V1(pw_pipeline_owner);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_insert_secret, plan_insert_pipeline, plan_active_runs, plan_delete_pipeline, plan_insert_grant,
    plan_delete_grant;

char *jsonb_text(Jsonb *j) { return JsonbToCString(nullptr, &j->root, VARSIZE(j)); }

// Which step's function PostgreSQL's own errors of the name's parsing and lookup are about ("public.", a name in
// another database): said as their context (acceptance walk-through, 2026-12-07).
struct FunctionOfStep {
    const char *step;
    const char *fn;
};
void function_of_step_context(void *arg) {
    const FunctionOfStep *f = static_cast<const FunctionOfStep *>(arg);
    errcontext("invalid pipeline definition: step \"%s\", \"function\": \"%s\"", f->step, f->fn);
}

// Resolves a function step's name with the caller's search_path; returns the schema-qualified name.
char *resolve_function(const char *step, const char *fn) {
    Oid argtypes[1] = {JSONBOID};
    if (strchr(fn, '(') != nullptr)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: step \"%s\": \"function\" must be a function name, not %s",
                               step, fn),
                        errhint("Write the name without its argument list, e.g. \"public.my_step\": a step function "
                                "always takes (jsonb).")));
    FunctionOfStep about{step, fn};
    ErrorContextCallback context{error_context_stack, function_of_step_context, &about};
    error_context_stack = &context;
    List *names = stringToQualifiedNameList(fn);
    Oid oid = LookupFuncName(names, 1, argtypes, true);
    error_context_stack = context.previous;
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
    // A function in a temporary schema (pg_temp.f) is gone when its session ends, and the same schema name is then
    // another session's: one that defined its own function of that name had it run as the submitter (acceptance
    // walk-through, 2026-12-07).
    if (isAnyTempNamespace(get_func_namespace(oid)))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: step \"%s\": function %s is temporary", step, fn),
                        errhint("Define step functions in a permanent schema: a temporary one is gone when its session "
                                "ends, and its schema name then belongs to another session.")));
    pg::StepSignature sig = pg::step_signature(oid);
    if (sig == pg::StepSignature::NotAFunction)
        ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                        errmsg("invalid pipeline definition: step \"%s\": %s is not a plain function", step, fn),
                        errhint("Procedures, aggregates and window functions cannot be steps.")));
    if (sig == pg::StepSignature::WrongResult)
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

// Workflow steps need 0.2's tables (waiting status, task rows, events, parent runs): a database still at 0.1 gets
// a clear error instead of runs that fail.
void refuse_workflows_before_02(const store::Pipeline *p) {
    bool workflow = !p->linear;
    for (int i = 0; i < p->nsteps && !workflow; i++)
        workflow = p->steps[i].map || (p->steps[i].kind != core::StepKind::Function && p->steps[i].kind != core::StepKind::Http);
    if (!workflow || store::schema_version() >= 2) return;
    ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                    errmsg("invalid pipeline definition: depends_on, if, map, pipeline, sleep and wait_for steps need "
                           "pipeline_worker 0.2"),
                    errhint("Run ALTER EXTENSION pipeline_worker UPDATE first.")));
}

// A "pipeline" step: its pipeline must exist (or be the one being defined: recursion) and the defining role must be
// allowed to submit to it (checked again, for the run's submitter, when a child run starts).
void check_child(const char *defining, const char *step, const char *child) {
    if (strcmp(child, defining) == 0) return;
    pg::spi_connect();
    Oid owner = pipeline_owner(child, nullptr, true);
    bool allowed = OidIsValid(owner) && may_submit(child, owner);
    SPI_finish();
    // (an invalid definition like any other, as the workflows issue asks: 22023, not create_run's 42704)
    if (!OidIsValid(owner))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: step \"%s\": pipeline \"%s\" does not exist", step, child),
                        errhint("Create that pipeline first; a step may name the pipeline being defined "
                                "(recursion).")));
    if (!allowed)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("invalid pipeline definition: step \"%s\": permission denied to submit runs to pipeline \"%s\"",
                               step, child),
                        errhint("Its owner can grant it with pipeline_worker.grant_pipeline().")));
}

}  // namespace

extern "C" Datum pw_create_pipeline(PG_FUNCTION_ARGS) {
    require_writable("create_pipeline");
    char *name = checked_name(fcinfo, 0, "pipeline name");
    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("steps must not be null"),
                        errhint("Give the steps as a JSON array, e.g. '[{\"name\": \"a\", \"function\": \"my_step\"}]'.")));
    char *steps = jsonb_text(PG_GETARG_JSONB_P(1));
    char *options = PG_ARGISNULL(2) ? pstrdup("{}") : jsonb_text(PG_GETARG_JSONB_P(2));

    store::Pipeline *p = store::parse_pipeline(name, steps, options);  // ERROR on an invalid definition
    refuse_workflows_before_02(p);
    char **resolved = static_cast<char **>(palloc0(sizeof(char *) * p->nsteps));
    for (int i = 0; i < p->nsteps; i++) {
        if (p->steps[i].is_http) {
            if (!pg::may_call_http(GetUserId()))
                ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                                errmsg("permission denied to define HTTP step \"%s\"", p->steps[i].name),
                                errhint("Only members of pipeline_worker_http may define HTTP steps.")));
            continue;
        }
        if (p->steps[i].kind == core::StepKind::Pipeline) {
            check_child(name, p->steps[i].name, p->steps[i].child);
            continue;
        }
        if (p->steps[i].kind != core::StepKind::Function) continue;
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
        normalized = pg::pstrdup_guarded(core::normalized_steps(def, names, &secrets));
        secret_fields = static_cast<char **>(pg::palloc0_guarded(sizeof(char *) * 3 * (secrets.size() + 1)));
        for (const core::Secret &sec : secrets) {
            const std::string *fields[3] = {&sec.step, &sec.header, &sec.value};
            for (int f = 0; f < 3; f++) secret_fields[nsecrets * 3 + f] = pg::pstrdup_guarded(*fields[f]);
            nsecrets++;
        }
    });
    pg::raise_if_failed(err, "invalid pipeline definition");

    pg::spi_connect();
    Oid types[4] = {TEXTOID, TEXTOID, TEXTOID, OIDOID};
    Datum v[4] = {CStringGetTextDatum(name), CStringGetTextDatum(normalized), CStringGetTextDatum(options),
                  ObjectIdGetDatum(GetUserId())};
    pg::run_as_owner(&plan_insert_pipeline,
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
        pg::run_as_owner(&plan_insert_secret,
                         "INSERT INTO pipeline_worker.pipeline_secrets (pipeline_id, step, header, value)"
                         " VALUES ($1, $2, $3, $4)",
                         4, st, sv, nullptr, false);
    }
    SPI_finish();
    notes::pipelines_changed();
    PG_RETURN_VOID();
}

extern "C" Datum pw_drop_pipeline(PG_FUNCTION_ARGS) {
    require_writable("drop_pipeline");
    char *name = checked_name(fcinfo, 0, "pipeline name");
    pg::spi_connect();
    // Checked before the lock too: a role that may not drop it is refused at once, not after waiting for the
    // transactions creating runs of it. Checked again after the wait (with a fresh snapshot).
    // (a role that may not manage it gets the same answer whether it exists or not: managed_pipeline)
    (void)managed_pipeline(name, "drop");
    lock_pipeline(name, ExclusiveLock);  // waits for transactions creating runs of it
    Oid owner = pipeline_owner(name);
    require_manager(name, owner, "drop");
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    // Lock the pipeline first, then count its unfinished runs: a concurrent drop waits for us.
    pg::run_as_owner(&plan_active_runs,
                     "SELECT (SELECT count(*) FROM pipeline_worker.runs r"
                     "         WHERE r.pipeline = p.name AND r.status IN ('pending', 'running', 'waiting'))"
                     " FROM pipeline_worker.pipelines p WHERE p.name = $1 FOR UPDATE OF p",
                     1, types, v, nullptr, false);
    bool isnull;
    int64 active = SPI_processed ? DatumGetInt64(col(0, 1, &isnull)) : 0;
    if (active > 0)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
                        errmsg("pipeline \"%s\" has %lld unfinished run(s) (pending, running or waiting)", name,
                               (long long)active),
                        errhint("Wait for them to finish, or cancel them with pipeline_worker.cancel_run().")));
    pg::run_as_owner(&plan_delete_pipeline, "DELETE FROM pipeline_worker.pipelines WHERE name = $1", 1, types, v,
                     nullptr, false);
    SPI_finish();
    notes::pipelines_changed();
    PG_RETURN_VOID();
}

void change_grant(FunctionCallInfo fcinfo, bool grant) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    Oid role = PG_GETARG_OID(1);
    pg::spi_connect();
    // (a role that may not manage it gets the same answer whether it exists or not)
    (void)managed_pipeline(name, grant ? "grant" : "revoke");
    // ('-'::regrole is 0, and a number casts to regrole unchecked. A revoke stays free: it removes a dropped role's
    // row by its number.)
    if (grant && !SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("role with OID %u does not exist", role),
                        errhint("Name an existing role, e.g. grant_pipeline('p', 'alice').")));
    Oid types[2] = {TEXTOID, OIDOID};
    Datum v[2] = {CStringGetTextDatum(name), ObjectIdGetDatum(role)};
    if (grant)
        pg::run_as_owner(&plan_insert_grant,
                         "INSERT INTO pipeline_worker.pipeline_grants (pipeline, grantee) VALUES ($1, $2::regrole)"
                         " ON CONFLICT DO NOTHING",
                         2, types, v, nullptr, false);
    else
        pg::run_as_owner(&plan_delete_grant,
                         "DELETE FROM pipeline_worker.pipeline_grants WHERE pipeline = $1 AND grantee = $2::regrole",
                         2, types, v, nullptr, false);
    SPI_finish();
}

extern "C" Datum pw_grant_pipeline(PG_FUNCTION_ARGS) {
    require_writable("grant_pipeline");
    change_grant(fcinfo, true);
    PG_RETURN_VOID();
}

extern "C" Datum pw_revoke_pipeline(PG_FUNCTION_ARGS) {
    require_writable("revoke_pipeline");
    change_grant(fcinfo, false);
    PG_RETURN_VOID();
}

// pipeline_owner(name): the owner of the pipeline if the caller may see it (has its owner's privileges, is an admin,
// or was granted it), else NULL -- the helper of the grants' row-level security policy. (0.1's SECURITY DEFINER SQL
// function told anyone the owner of any pipeline by name: 0.2 replaces it with this one.) Reads as the tables' owner,
// so that the policies it serves are not evaluated again inside it.
extern "C" Datum pw_pipeline_owner(PG_FUNCTION_ARGS) {
    char *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
    Oid me = GetUserId();
    static SPIPlanPtr plan_owner_of = nullptr;
    pg::spi_connect();
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    pg::run_as_owner(&plan_owner_of, "SELECT owner::oid FROM pipeline_worker.pipelines WHERE name = $1", 1, types, v,
                     nullptr, true);
    bool isnull;
    Oid owner = SPI_processed == 1 ? DatumGetObjectId(col(0, 1, &isnull)) : InvalidOid;
    bool visible = OidIsValid(owner) && may_submit(name, owner, me);  // (its owner's privileges, an admin, a grantee)
    SPI_finish();
    if (!visible) PG_RETURN_NULL();
    PG_RETURN_OID(owner);
}

