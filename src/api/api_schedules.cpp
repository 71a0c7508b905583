// SQL functions on cron schedules: schedule (create or replace), unschedule.
#include "api/access.hpp"
#include "core/schedule_options.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "store/queue.hpp"
#include "store/schedules.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_schedule);
PG_FUNCTION_INFO_V1(pw_unschedule);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_pipeline, plan_existing, plan_upsert, plan_owner, plan_delete;

Datum jsonb_arg(FunctionCallInfo fcinfo, int argno) {
    return PG_ARGISNULL(argno) ? DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")) : PG_GETARG_DATUM(argno);
}

// The time zone named in the options (validated, "UTC" when absent).
char *checked_options(Jsonb *options) {
    char *text = JsonbToCString(nullptr, &options->root, VARSIZE(options));
    char *tz = nullptr;
    pg::CppError err = pg::cpp_call([&] { tz = pg::pstrdup_guarded(core::parse_schedule_options(text).timezone); });
    pg::raise_if_failed(err, "invalid schedule options");
    return tz;
}

// ERROR 42501 unless the caller may submit runs to the pipeline; a pipeline the caller may not see answers the same
// way as a missing one (admins: "does not exist").
int64 require_submitter(const char *pipeline) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(pipeline)};
    pg::run_as_owner(&plan_pipeline, "SELECT owner::oid, id FROM pipeline_worker.pipelines WHERE name = $1", 1, types,
                     v, nullptr, false);
    bool isnull;
    bool found = SPI_processed == 1;
    Oid owner = found ? DatumGetObjectId(col(0, 1, &isnull)) : InvalidOid;
    int64 id = found ? DatumGetInt64(col(0, 2, &isnull)) : 0;
    if (!found && pg::is_admin(GetUserId()))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" does not exist", pipeline)));
    if (!found || !may_submit(pipeline, owner))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to schedule runs of pipeline \"%s\"", pipeline),
                        errdetail("Only a role that may submit runs to the pipeline may schedule it, if it exists.")));
    return id;
}

}  // namespace

extern "C" Datum pw_schedule(PG_FUNCTION_ARGS) {
    require_writable("schedule");
    char *name = checked_name(fcinfo, 0, "schedule name");
    char *pipeline = checked_name(fcinfo, 1, "pipeline name");
    if (PG_ARGISNULL(2))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("cron must not be null"),
                        errhint("Five fields such as '*/5 * * * *', a macro such as '@daily', or 'N seconds'.")));
    char *cron = text_to_cstring(PG_GETARG_TEXT_PP(2));
    Datum input = jsonb_arg(fcinfo, 3), metadata = jsonb_arg(fcinfo, 4), options = jsonb_arg(fcinfo, 5);
    if (!JB_ROOT_IS_OBJECT(DatumGetJsonbP(metadata)))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("metadata must be a JSON object"),
                        errhint("Each run gets it with \"schedule\" and \"scheduled_for\" added.")));
    char *tz = checked_options(DatumGetJsonbP(options));
    TimestampTz next = store::next_schedule_slot(cron, tz, GetCurrentTimestamp());  // ERROR 22023 when invalid
    // (until 2026-12-05 stored as an active schedule without a next slot: accepted, and never fired)
    if (next == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("cron schedule \"%s\" never matches a date", cron),
                        errhint("A day of the month that the month never has, such as '0 0 30 2 *'?")));
    pg::spi_connect();
    require_schema_02();
    int64 pipeline_id = require_submitter(pipeline);
    // Replacing: only its owner (or an admin); it keeps its history (last slot, last run, skipped), and its owner
    // when the caller has the owner's privileges. An admin without them becomes its owner: its runs are submitted as
    // the role that chose their input and pipeline (until 2026-12-05 an admin could make runs of any input be
    // submitted as another role).
    Oid types[1] = {TEXTOID};
    Datum nv[1] = {CStringGetTextDatum(name)};
    pg::run_as_owner(&plan_existing, "SELECT owner::oid FROM pipeline_worker.schedules WHERE name = $1 FOR UPDATE", 1,
                     types, nv, nullptr, false);
    bool isnull;
    Oid me = GetUserId();
    Oid seen = me, owner_after = me;  // the owner the replaced row must still have; the owner it gets
    if (SPI_processed == 1) {
        seen = DatumGetObjectId(col(0, 1, &isnull));
        if (has_privs_of_role(me, seen))
            owner_after = seen;
        else if (!pg::is_admin(me))
            ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                            errmsg("permission denied to replace schedule \"%s\"", name),
                            errdetail("Only its owner or members of pipeline_worker_admin may."),
                            errhint("Choose another schedule name.")));
    }
    // A schedule of that name inserted by a transaction not committed when it was read above: the upsert waits for
    // it, and replaces it only if it has the owner checked (the caller's own).
    Oid ut[11] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID, JSONBOID, OIDOID, TIMESTAMPTZOID, INT8OID, OIDOID, OIDOID};
    Datum uv[11] = {nv[0], CStringGetTextDatum(pipeline), CStringGetTextDatum(cron), input, metadata, options,
                    ObjectIdGetDatum(me), TimestampTzGetDatum(next), Int64GetDatum(pipeline_id),
                    ObjectIdGetDatum(seen), ObjectIdGetDatum(owner_after)};
    char nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', next == 0 ? 'n' : ' ', ' ', ' ', ' '};
    pg::run_as_owner(&plan_upsert,
                     "INSERT INTO pipeline_worker.schedules (name, pipeline, cron, input, metadata, options, owner,"
                     " next_run_at, pipeline_id) VALUES ($1, $2, $3, $4, $5, $6, $7::regrole, $8, $9)"
                     " ON CONFLICT (name) DO UPDATE SET pipeline = excluded.pipeline, cron = excluded.cron,"
                     "  pipeline_id = excluded.pipeline_id,"
                     "  input = excluded.input, metadata = excluded.metadata, options = excluded.options,"
                     "  active = true, owner = $11::regrole,"
                     // The same cron in the same time zone, re-issued (a deploy script's idempotent schedule() call):
                     // a slot due but not fired yet stays due -- recomputed from now it was skipped, never fired.
                     "  next_run_at = CASE WHEN schedules.active AND schedules.cron = excluded.cron"
                     "   AND schedules.options->>'timezone' IS NOT DISTINCT FROM excluded.options->>'timezone'"
                     "   THEN LEAST(schedules.next_run_at, excluded.next_run_at) ELSE excluded.next_run_at END"
                     " WHERE schedules.owner::oid = $10",
                     11, ut, uv, nulls, false);
    if (SPI_processed != 1)
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to replace schedule \"%s\"", name),
                        errdetail("Another role created a schedule of that name meanwhile."),
                        errhint("Choose another schedule name.")));
    SPI_finish();
    if (next != 0) notes::due_at(next);
    PG_RETURN_VOID();
}

extern "C" Datum pw_unschedule(PG_FUNCTION_ARGS) {
    require_writable("unschedule");
    char *name = checked_name(fcinfo, 0, "schedule name");
    pg::spi_connect();
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(name)};
    bool removed = false;
    Oid me = GetUserId();
    bool admin = pg::is_admin(me);
    auto may_remove = [&] {  // (the row just read: its owner)
        bool isnull;
        return SPI_processed == 1 && (admin || has_privs_of_role(me, DatumGetObjectId(col(0, 1, &isnull))));
    };
    // One the caller may not see answers as a missing one: false. Looked at without a lock first: locked before the
    // owner was checked, another role's schedule stayed locked in the caller's open transaction (its runs not fired,
    // its owner's unschedule waiting) -- until 2026-12-05.
    pg::run_as_owner(&plan_owner, "SELECT owner::oid FROM pipeline_worker.schedules WHERE name = $1", 1, types, v,
                     nullptr, false);
    if (may_remove()) {
        // the row the caller may remove, locked and looked at again (a concurrent replace may have changed it)
        static SPIPlanPtr plan_lock_owner = nullptr;
        pg::run_as_owner(&plan_lock_owner,
                         "SELECT owner::oid FROM pipeline_worker.schedules WHERE name = $1 FOR UPDATE", 1, types, v,
                         nullptr, false);
        if (may_remove()) {
            pg::run_as_owner(&plan_delete, "DELETE FROM pipeline_worker.schedules WHERE name = $1", 1, types, v,
                             nullptr, false);
            removed = SPI_processed == 1;
        }
    }
    SPI_finish();
    PG_RETURN_BOOL(removed);
}
