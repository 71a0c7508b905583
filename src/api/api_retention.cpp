// purge_runs: deleting finished runs now (the workers do it in the background by pipeline_worker.retention).
#include "api/access.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "store/queue.hpp"
#include "store/retention.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_purge_runs);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_owner;
constexpr int kPurgeBatch = 10000;

}  // namespace

extern "C" Datum pw_purge_runs(PG_FUNCTION_ARGS) {
    if (PG_ARGISNULL(0))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("older_than must not be null"),
                        errhint("Pass an interval: finished runs older than that are deleted, e.g. '30 days'.")));
    Interval *iv = PG_GETARG_INTERVAL_P(0);
    int64 us = iv->time + iv->day * USECS_PER_DAY + int64(iv->month) * DAYS_PER_MONTH * USECS_PER_DAY;
    if (us < 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("older_than must not be negative"),
                        errhint("'0' deletes every finished run the caller may purge.")));
    char *pipeline = PG_ARGISNULL(1) ? nullptr : checked_name(fcinfo, 1, "pipeline name");
    Oid me = GetUserId();
    bool admin = pg::is_admin(me);
    pg::spi_connect();
    if (store::schema_version() < 2)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED), errmsg("pipeline_worker is installed at version 0.1"),
                        errhint("Run ALTER EXTENSION pipeline_worker UPDATE.")));
    if (pipeline != nullptr && !admin) {
        // its owner (or an admin); a pipeline the caller may not see answers as a missing one
        Oid types[1] = {TEXTOID};
        Datum v[1] = {CStringGetTextDatum(pipeline)};
        pg::run_as_owner(&plan_owner, "SELECT owner::oid FROM pipeline_worker.pipelines WHERE name = $1", 1, types, v,
                         nullptr, true);
        bool isnull;
        if (SPI_processed == 0 || !has_privs_of_role(me, DatumGetObjectId(col(0, 1, &isnull))))
            ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                            errmsg("permission denied to purge runs of pipeline \"%s\"", pipeline),
                            errdetail("Only its owner or members of pipeline_worker_admin may, if it exists.")));
    }
    SPI_finish();
    int64 total = 0;
    for (;;) {
        int64 n = store::purge_finished_runs(us, pipeline, admin, kPurgeBatch);
        total += n;
        if (n < kPurgeBatch) break;
        CHECK_FOR_INTERRUPTS();
    }
    PG_RETURN_INT64(total);
}
