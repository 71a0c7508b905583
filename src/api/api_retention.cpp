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

namespace {

constexpr int kPurgeBatch = 10000;

}  // namespace

extern "C" Datum pw_purge_runs(PG_FUNCTION_ARGS) {
    require_writable("purge_runs");
    if (PG_ARGISNULL(0))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("older_than must not be null"),
                        errhint("Pass an interval: finished runs older than that are deleted, e.g. '30 days'.")));
    Interval *iv = PG_GETARG_INTERVAL_P(0);
    // (in 128 bits: '178000000 years' is 5.5e21 microseconds; past the int64 range it means "older than any run")
    __int128 us128 = static_cast<__int128>(iv->time) + static_cast<__int128>(iv->day) * USECS_PER_DAY +
                     static_cast<__int128>(iv->month) * DAYS_PER_MONTH * USECS_PER_DAY;
    int64 us = us128 > PG_INT64_MAX ? PG_INT64_MAX : us128 < PG_INT64_MIN ? PG_INT64_MIN : static_cast<int64>(us128);
    if (us < 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("older_than must not be negative"),
                        errhint("'0' deletes every finished run the caller may purge.")));
    char *pipeline = PG_ARGISNULL(1) ? nullptr : checked_name(fcinfo, 1, "pipeline name");
    bool admin = pg::is_admin(GetUserId());
    pg::spi_connect();
    require_schema_02();
    if (pipeline != nullptr) (void)managed_pipeline(pipeline, "purge runs of");
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
