// SQL functions on schedules: schedule, unschedule.
#include "api/access.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_schedule);
PG_FUNCTION_INFO_V1(pw_unschedule);
}

extern "C" Datum pw_schedule(PG_FUNCTION_ARGS) { elog(ERROR, "not yet"); }
extern "C" Datum pw_unschedule(PG_FUNCTION_ARGS) { elog(ERROR, "not yet"); }
