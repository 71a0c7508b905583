#include "store/events.hpp"

#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "store/queue.hpp"

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_lock_own, plan_take, plan_visible, plan_lock, plan_insert, plan_wake, plan_by_key;

}  // namespace

Jsonb *take_event(int64 run_id, const char *event, int pos, MemoryContext dest) {
    Oid types[3] = {INT8OID, TEXTOID, INT4OID};
    Datum v[3] = {Int64GetDatum(run_id), CStringGetTextDatum(event), Int32GetDatum(pos + 1)};
    pg::run_as_owner(&plan_lock_own,
                     "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1 FOR UPDATE", 1,
                     types, v, nullptr, false);
    pg::run_as_owner(&plan_take,
                     "/* pw_indexes: events_unconsumed_idx events_pkey */ UPDATE pipeline_worker.events e"
                     " SET consumed_at = pg_catalog.clock_timestamp(), position = $3"
                     " WHERE e.id = (SELECT id FROM pipeline_worker.events WHERE run_id = $1 AND event = $2"
                     "   AND consumed_at IS NULL ORDER BY id LIMIT 1)"
                     " RETURNING e.payload",
                     3, types, v, nullptr, false);
    if (SPI_processed == 0) return nullptr;
    bool isnull;
    Datum d = col(0, 1, &isnull);
    if (isnull) return nullptr;
    MemoryContext old = MemoryContextSwitchTo(dest);
    Jsonb *payload = DatumGetJsonbPCopy(d);
    MemoryContextSwitchTo(old);
    return payload;
}

SendResult send_event(int64 run_id, const char *event, Jsonb *payload, Oid sender) {
    Oid t1[1] = {INT8OID};
    Datum v1[1] = {Int64GetDatum(run_id)};
    // Visible to the caller (its submitter, its pipeline's owner, admins): row-level security decides -- with a fresh
    // snapshot (not read-only): the statement's would hide a run created earlier in the same statement, as in
    // SELECT send_event(id, ...) FROM create_runs(...), and its submitter would be refused (until 2026-12-07).
    pg::run_as_caller(&plan_visible, "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1", 1,
                      t1, v1, nullptr, false);
    if (SPI_processed == 0) return SendResult::NotVisible;
    // The row lock orders this with the run's executor taking events (take_event).
    pg::run_as_owner(&plan_lock,
                     "/* pw_indexes: runs_pkey */ SELECT priority, id, status = 'pending', status, waiting_for"
                     " FROM pipeline_worker.runs WHERE id = $1 FOR UPDATE",
                     1, t1, v1, nullptr, false);
    if (SPI_processed == 0) return SendResult::NotVisible;  // deleted meanwhile
    note_locked_queued();  // (a queued run locked: a claim meanwhile skipped it)
    bool isnull, wf_null;
    char *status = TextDatumGetCString(col(0, 4, &isnull));
    Datum wf = col(0, 5, &wf_null);
    // ("*": several steps of the run wait for different events)
    const char *waiting_for = wf_null ? nullptr : TextDatumGetCString(wf);
    bool wakes = strcmp(status, "waiting") == 0 && waiting_for != nullptr &&
                 (strcmp(waiting_for, event) == 0 || strcmp(waiting_for, "*") == 0);
    if (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 || strcmp(status, "cancelled") == 0)
        return SendResult::Finished;
    Oid t4[4] = {INT8OID, TEXTOID, JSONBOID, OIDOID};
    Datum v4[4] = {Int64GetDatum(run_id), CStringGetTextDatum(event), JsonbPGetDatum(payload), ObjectIdGetDatum(sender)};
    pg::run_as_owner(&plan_insert,
                     "INSERT INTO pipeline_worker.events (run_id, event, payload, sent_by) VALUES ($1, $2, $3, $4::regrole)",
                     4, t4, v4, nullptr, false);
    if (wakes) {
        pg::run_as_owner(&plan_wake,
                         "/* pw_indexes: runs_pkey pipelines_id_key */ UPDATE pipeline_worker.runs r"
                         " SET status = 'pending', not_before = NULL, waiting_for = NULL," PW_PARKED_IF_PAUSED
                         " WHERE id = $1 AND status = 'waiting'"
                         " RETURNING priority, id, parked",
                         1, t1, v1, nullptr, false);
        note_woken();
    }
    return SendResult::Stored;
}

int64 run_by_key(const char *pipeline, const char *key, Oid submitter) {
    Oid types[3] = {TEXTOID, TEXTOID, OIDOID};
    Datum v[3] = {CStringGetTextDatum(pipeline), CStringGetTextDatum(key), ObjectIdGetDatum(submitter)};
    pg::run_as_owner(&plan_by_key,
                     "/* pw_indexes: r.runs_idempotency_idx */ SELECT r.id FROM pipeline_worker.pipelines p"
                     " JOIN pipeline_worker.runs r ON r.pipeline_id = p.id"
                     " WHERE p.name = $1 AND r.submitted_by = $3::regrole AND r.idempotency_key = $2",
                     3, types, v, nullptr, false);  // (a fresh snapshot: see send_event)
    if (SPI_processed == 0) return 0;
    bool isnull;
    return DatumGetInt64(col(0, 1, &isnull));
}

}  // namespace pw::store
