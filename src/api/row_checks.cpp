// The run tables' CHECK constraints and the WHEN clause of their insert trigger, as C functions. PostgreSQL reads a
// table's CHECK expressions and a trigger's WHEN clause from their stored node text and plans them again in every
// statement that writes a row: with the expressions written out in SQL (`status IN (...)`, whose text array is
// stored byte by byte) that was a third of a create_run call. A call of one of these with the column is a short text
// to read; the rule it checks is the same (NULL passes a CHECK, as in SQL).
// The status words are core/status.hpp's (one list). One library serves every database's installed version, and
// PostgreSQL never re-checks stored rows when a function changes: a status added there, or any other rule changed
// here, comes with an update script that moves the schema with it (a new symbol and SQL function where a database at
// the older version must keep the old rule, and ALTER TABLE ... ADD CONSTRAINT, which checks the rows).
#include "api/access.hpp"
#include "core/status.hpp"
#include "pg/pg.hpp"
#include "store/stats.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_run_status_ok);
PG_FUNCTION_INFO_V1(pw_step_status_ok);
PG_FUNCTION_INFO_V1(pw_priority_ok);
PG_FUNCTION_INFO_V1(pw_key_ok);
PG_FUNCTION_INFO_V1(pw_parked_ok);
PG_FUNCTION_INFO_V1(pw_finished_within_rollups);
}

// runs.status: pending, running, waiting, succeeded, failed, cancelled
extern "C" Datum pw_run_status_ok(PG_FUNCTION_ARGS) {
    text *t = PG_GETARG_TEXT_PP(0);
    PG_RETURN_BOOL(pw::core::is_run_status(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

// run_steps.status: running, waiting, succeeded, failed, skipped
extern "C" Datum pw_step_status_ok(PG_FUNCTION_ARGS) {
    text *t = PG_GETARG_TEXT_PP(0);
    PG_RETURN_BOOL(pw::core::is_step_status(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)));
}

// runs.priority: a smallint's range
extern "C" Datum pw_priority_ok(PG_FUNCTION_ARGS) {
    int32 p = PG_GETARG_INT32(0);
    PG_RETURN_BOOL(p >= -32768 && p <= 32767);
}

// runs.idempotency_key: not empty, at most 1000 bytes
extern "C" Datum pw_key_ok(PG_FUNCTION_ARGS) {
    size_t n = VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0));
    PG_RETURN_BOOL(n > 0 && n <= static_cast<size_t>(pw::api::kMaxKeyBytes));
}

// runs.parked: 1 (a pipeline-wide limit), 2 (a per-key limit), 3 (a pause)
extern "C" Datum pw_parked_ok(PG_FUNCTION_ARGS) {
    int16 p = PG_GETARG_INT16(0);
    PG_RETURN_BOOL(p >= 1 && p <= 3);
}

// The trigger run_inserted_finished's WHEN clause: a run inserted already finished within the minutes the roll-ups
// keep (a restore, a hand-made history) must have its minute counted again; older ones (most of a restore) are not
// queued as trigger events at all. As `finished_at > now() - interval '62 minutes'`.
extern "C" Datum pw_finished_within_rollups(PG_FUNCTION_ARGS) {
    TimestampTz finished = PG_GETARG_TIMESTAMPTZ(0);
    PG_RETURN_BOOL(finished > GetCurrentTransactionStartTimestamp() - pw::store::kRollupWindowUs);
}
