// SQL functions that steer a pipeline's flow: alter_pipeline (options such as limits), pause_pipeline,
// resume_pipeline.
#include "api/access.hpp"
#include "core/definition.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/lanes.hpp"
#include "store/pipelines.hpp"
#include "store/queue.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_alter_pipeline);
PG_FUNCTION_INFO_V1(pw_pause_pipeline);
PG_FUNCTION_INFO_V1(pw_resume_pipeline);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_merge, plan_set_options, plan_unpark_limits, plan_pause, plan_park_paused,
    plan_unpark_paused;

// Runs parked by a limit go back to the queue (the limits changed); the claim parks them again if need be.
void unpark_limited(int64 pipeline_id) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(pipeline_id)};
    pg::run_as_owner(&plan_unpark_limits,
                     "/* pw_indexes: runs_parked_idx */ UPDATE pipeline_worker.runs SET parked = NULL"
                     " WHERE status = 'pending' AND parked IS NOT NULL AND pipeline_id = $1 AND parked IN (1, 2)",
                     1, types, v, nullptr, false);
    notes::runs_queued(SPI_processed);
}

}  // namespace

extern "C" Datum pw_alter_pipeline(PG_FUNCTION_ARGS) {
    require_writable("alter_pipeline");
    char *name = checked_name(fcinfo, 0, "pipeline name");
    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("options must not be null"),
                        errhint("Pass the options to change, e.g. '{\"concurrency\": 5}'; a null value removes one.")));
    Jsonb *given = PG_GETARG_JSONB_P(1);
    if (!JB_ROOT_IS_OBJECT(given))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("options must be a JSON object"),
                        errhint("Pass the options to change, e.g. '{\"concurrency\": 5}'; a null value removes one.")));
    pg::spi_connect();
    require_schema_02();
    int64 id = lock_managed_pipeline(name, "alter");
    char *change = JsonbToCString(nullptr, &given->root, VARSIZE(given));
    pg::CppError err = pg::cpp_call([&] { core::check_option_keys(change); });
    pg::raise_if_failed(err, "invalid pipeline definition");  // (the merge below drops null values unread)
    // merged: the stored options, then the given keys; a null value removes the key
    Oid types[2] = {TEXTOID, JSONBOID};
    Datum v[2] = {CStringGetTextDatum(name), JsonbPGetDatum(given)};
    pg::run_as_owner(&plan_merge,
                     "SELECT p.steps::text, COALESCE((SELECT pg_catalog.jsonb_object_agg(key, value)"
                     "   FROM pg_catalog.jsonb_each(p.options || $2) WHERE value <> 'null'::jsonb), '{}')::text"
                     " FROM pipeline_worker.pipelines p WHERE p.name = $1",
                     2, types, v, nullptr, false);
    bool isnull;
    char *steps = TextDatumGetCString(col(0, 1, &isnull));
    char *merged = TextDatumGetCString(col(0, 2, &isnull));
    (void)store::parse_pipeline(name, steps, merged);  // ERROR 22023 with a hint on invalid options
    Datum sv[2] = {v[0], CStringGetTextDatum(merged)};
    Oid st[2] = {TEXTOID, TEXTOID};
    pg::run_as_owner(&plan_set_options, "UPDATE pipeline_worker.pipelines SET options = $2::jsonb WHERE name = $1",
                     2, st, sv, nullptr, false);
    unpark_limited(id);
    SPI_finish();
    notes::pipelines_changed();
    lanes::note_limits_changed(id);
    PG_RETURN_VOID();
}

// Pausing parks the pipeline's pending runs (runs.parked = 3) and marks it paused, so that create_run parks new
// ones; running runs finish. Resuming puts them back in the queue. The pipeline lock orders both with create_run.
static void set_paused(FunctionCallInfo fcinfo, bool pause) {
    char *name = checked_name(fcinfo, 0, "pipeline name");
    pg::spi_connect();
    require_schema_02();
    int64 id = lock_managed_pipeline(name, pause ? "pause" : "resume");
    Oid types[2] = {INT8OID, BOOLOID};
    Datum v[2] = {Int64GetDatum(id), BoolGetDatum(pause)};
    pg::run_as_owner(&plan_pause, "UPDATE pipeline_worker.pipelines SET paused = $2 WHERE id = $1", 2, types, v,
                     nullptr, false);
    if (pause) {
        pg::run_as_owner(&plan_park_paused,
                         "UPDATE pipeline_worker.runs SET parked = 3 WHERE pipeline_id = $1 AND status = 'pending'"
                         " AND parked IS DISTINCT FROM 3",
                         1, types, v, nullptr, false);
    } else {
        pg::run_as_owner(&plan_unpark_paused,
                         "/* pw_indexes: runs_parked_idx */ UPDATE pipeline_worker.runs SET parked = NULL"
                         " WHERE status = 'pending' AND parked IS NOT NULL AND pipeline_id = $1 AND parked = 3",
                         1, types, v, nullptr, false);
        notes::runs_queued(SPI_processed);
    }
    SPI_finish();
}

extern "C" Datum pw_pause_pipeline(PG_FUNCTION_ARGS) {
    require_writable("pause_pipeline");
    set_paused(fcinfo, true);
    PG_RETURN_VOID();
}

extern "C" Datum pw_resume_pipeline(PG_FUNCTION_ARGS) {
    require_writable("resume_pipeline");
    set_paused(fcinfo, false);
    PG_RETURN_VOID();
}
