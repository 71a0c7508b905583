// The run tables' CHECK constraints and the WHEN clause of their insert trigger, as C functions. PostgreSQL reads a
// table's CHECK expressions and a trigger's WHEN clause from their stored node text and plans them again in every
// statement that writes a row: with the expressions written out in SQL (`status IN (...)`, whose text array is
// stored byte by byte) that was a third of a create_run call. A call of one of these with the column is a short text
// to read; the rule it checks is the same (NULL passes a CHECK, as in SQL).
// These rules are frozen with the schema that uses them: one library serves every database's installed version, and
// PostgreSQL never re-checks stored rows when a function changes. A new rule is a new C symbol and SQL function, put in
// place by an update script's ALTER TABLE ... ADD CONSTRAINT (which checks the rows), never an edit of these.
#include "core/status.hpp"
#include "pg/pg.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_run_status_ok);
PG_FUNCTION_INFO_V1(pw_step_status_ok);
PG_FUNCTION_INFO_V1(pw_priority_ok);
PG_FUNCTION_INFO_V1(pw_key_ok);
PG_FUNCTION_INFO_V1(pw_parked_ok);
PG_FUNCTION_INFO_V1(pw_finished_within_rollups);
}

namespace {

// an idempotency key's bound in bytes (api_submit.cpp checks the same bound, with a hint)
constexpr int kMaxKeyBytes = 1000;
// the minutes pipeline_stats' roll-ups keep (stats.cpp trims finished_minutes at the same age)
constexpr int64 kRollupWindowUs = 62 * 60 * USECS_PER_SEC;

// true when the text (not NUL-terminated) equals one of the words
bool one_of(const text *t, std::initializer_list<const char *> words) {
    const char *s = VARDATA_ANY(t);
    size_t n = VARSIZE_ANY_EXHDR(t);
    for (const char *w : words)
        if (strlen(w) == n && memcmp(s, w, n) == 0) return true;
    return false;
}

}  // namespace

// runs.status: pending, running, waiting, succeeded, failed, cancelled
extern "C" Datum pw_run_status_ok(PG_FUNCTION_ARGS) {
    using pw::core::RunStatus;
    using pw::core::to_text;
    PG_RETURN_BOOL(one_of(PG_GETARG_TEXT_PP(0),
                          {to_text(RunStatus::Pending), to_text(RunStatus::Running), to_text(RunStatus::Waiting),
                           to_text(RunStatus::Succeeded), to_text(RunStatus::Failed), to_text(RunStatus::Cancelled)}));
}

// run_steps.status: running, waiting, succeeded, failed, skipped
extern "C" Datum pw_step_status_ok(PG_FUNCTION_ARGS) {
    using pw::core::StepStatus;
    using pw::core::to_text;
    PG_RETURN_BOOL(one_of(PG_GETARG_TEXT_PP(0),
                          {to_text(StepStatus::Running), to_text(StepStatus::Waiting), to_text(StepStatus::Succeeded),
                           to_text(StepStatus::Failed), to_text(StepStatus::Skipped)}));
}

// runs.priority: a smallint's range
extern "C" Datum pw_priority_ok(PG_FUNCTION_ARGS) {
    int32 p = PG_GETARG_INT32(0);
    PG_RETURN_BOOL(p >= -32768 && p <= 32767);
}

// runs.idempotency_key: not empty, at most 1000 bytes
extern "C" Datum pw_key_ok(PG_FUNCTION_ARGS) {
    size_t n = VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(0));
    PG_RETURN_BOOL(n > 0 && n <= static_cast<size_t>(kMaxKeyBytes));
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
    PG_RETURN_BOOL(finished > GetCurrentTransactionStartTimestamp() - kRollupWindowUs);
}
