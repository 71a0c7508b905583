#include "store/children.hpp"

#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "store/cancel_requests.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"
#include "store/pipelines.hpp"
#include "store/queue.hpp"

namespace pw::store {

using pg::col;

namespace {

SPIPlanPtr plan_grantees, plan_child_pipeline, plan_depth, plan_insert, plan_read, plan_wake_lock, plan_wake,
    plan_descendants;

}  // namespace

bool may_submit(const char *pipeline, Oid owner, Oid role) {
    if (has_privs_of_role(role, owner) || pg::is_admin(role)) return true;
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(pipeline)};
    pg::run_as_owner(&plan_grantees, "SELECT grantee::oid FROM pipeline_worker.pipeline_grants WHERE pipeline = $1",
                     1, types, v, nullptr, true);
    for (uint64 i = 0; i < SPI_processed; i++) {
        bool isnull;
        if (has_privs_of_role(role, DatumGetObjectId(col(i, 1, &isnull)))) return true;
    }
    return false;
}

const ChildPipeline *child_pipeline(const char *pipeline, Oid submitter, const char **why) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(pipeline)};
    pg::run_as_owner(&plan_child_pipeline,
                     "SELECT id, owner::oid, paused FROM pipeline_worker.pipelines WHERE name = $1", 1, types, v,
                     nullptr, true);
    if (SPI_processed == 0) {
        *why = psprintf("pipeline \"%s\" does not exist", pipeline);
        return nullptr;
    }
    bool isnull;
    ChildPipeline *p = static_cast<ChildPipeline *>(palloc(sizeof(ChildPipeline)));
    p->id = DatumGetInt64(col(0, 1, &isnull));
    p->owner = DatumGetObjectId(col(0, 2, &isnull));
    p->paused = DatumGetBool(col(0, 3, &isnull));
    if (!may_submit(pipeline, p->owner, submitter)) {
        *why = psprintf("role \"%s\" may not submit runs to pipeline \"%s\"", pg::role_name(submitter), pipeline);
        return nullptr;
    }
    return p;
}

int run_depth(int64 run_id) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    pg::run_as_owner(&plan_depth,
                     "WITH RECURSIVE a(id, parent, depth) AS ("
                     "   SELECT id, parent_run_id, 0 FROM pipeline_worker.runs WHERE id = $1"
                     " UNION ALL"
                     "   SELECT r.id, r.parent_run_id, a.depth + 1 FROM a JOIN pipeline_worker.runs r ON r.id = a.parent"
                     "   WHERE a.depth < 10000)"
                     " SELECT max(depth) FROM a",
                     1, types, v, nullptr, true);
    bool isnull;
    Datum d = SPI_processed > 0 ? col(0, 1, &isnull) : 0;
    return SPI_processed > 0 && !isnull ? DatumGetInt32(d) : 0;
}

int64 create_child_run(const char *pipeline, const ChildPipeline *p, Oid submitter, Jsonb *input, Jsonb *metadata,
                       int64 parent_id, const char *parent_step) {
    Oid types[8] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID, INT8OID, TEXTOID};
    Datum v[8] = {CStringGetTextDatum(pipeline), JsonbPGetDatum(input), JsonbPGetDatum(metadata),
                  ObjectIdGetDatum(submitter), Int64GetDatum(p->id), ObjectIdGetDatum(p->owner),
                  Int64GetDatum(parent_id), CStringGetTextDatum(parent_step)};
    pg::run_as_owner(&plan_insert,
                     "INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                     "  pipeline_owner, parent_run_id, parked)"
                     " SELECT $1, $2, CASE WHEN pg_catalog.jsonb_typeof($3) = 'object' THEN $3 ELSE '{}' END"
                     "   || pg_catalog.jsonb_build_object('parent_run_id', $7, 'parent_step', $8),"
                     "  $4::regrole, $5, $6::regrole, $7, CASE WHEN p.paused THEN 3 END"
                     " FROM pipeline_worker.pipelines p WHERE p.id = $5 RETURNING id",
                     8, types, v, nullptr, false);
    if (SPI_processed != 1)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" was dropped meanwhile", pipeline)));
    bool isnull;
    int64 id = DatumGetInt64(col(0, 1, &isnull));
    // (priority 0, a new id: past the claim hint, at the end of the queue -- the queue's known end moves up past it)
    notes::runs_created_upto(1, static_cast<uint64>(queue_key(0, id)) + 1);
    metrics::runs_created(pipeline);  // (at commit; taken back if the step's subtransaction rolls back)
    return id;
}

void lock_parent(int64 run_id) {
    static SPIPlanPtr plan_lock_parent = nullptr;
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    pg::run_as_owner(&plan_lock_parent,
                     "/* pw_indexes: runs_pkey */ SELECT priority, id, status = 'pending' FROM pipeline_worker.runs"
                     " WHERE id = $1 FOR UPDATE",
                     1, types, v, nullptr, false);
    note_locked_queued();
}

const char *read_child(int64 child_id, Jsonb **result, char **error, MemoryContext dest) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(child_id)};
    // (not read-only: a statement of its own snapshot, taken after lock_parent)
    pg::run_as_owner(&plan_read,
                     "/* pw_indexes: runs_pkey */ SELECT status, result, error FROM pipeline_worker.runs WHERE id = $1",
                     1, types, v, nullptr, false);
    if (SPI_processed == 0) return nullptr;
    bool isnull;
    MemoryContext old = MemoryContextSwitchTo(dest);
    char *status = TextDatumGetCString(col(0, 1, &isnull));
    Datum r = col(0, 2, &isnull);
    *result = isnull ? nullptr : DatumGetJsonbPCopy(r);
    Datum e = col(0, 3, &isnull);
    *error = isnull ? nullptr : TextDatumGetCString(e);
    MemoryContextSwitchTo(old);
    return status;
}

namespace {

// In a worker: where a parent another transaction holds goes, to be woken after the commit (worker/parent_wakes.cpp).
void (*defer_parent)(int64 id) = nullptr;

// Locks those of the rows no other transaction holds, waiting for none; their ids into *locked (n at most).
int lock_free_rows(const int64 *ids, int n, int64 *locked) {
    static SPIPlanPtr plan_lock_free = nullptr;
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {pg::int8_array(ids, n)};
    pg::run_as_owner(&plan_lock_free,
                     "/* pw_indexes: runs_pkey */ SELECT priority, id, status = 'pending' FROM pipeline_worker.runs"
                     " WHERE id = ANY ($1) FOR NO KEY UPDATE SKIP LOCKED",
                     1, types, v, nullptr, false);
    int nlocked = static_cast<int>(SPI_processed);
    for (int k = 0; k < nlocked; k++) {
        bool isnull;
        locked[k] = DatumGetInt64(col(k, 2, &isnull));
    }
    note_locked_queued();
    return nlocked;
}

// Locks the rows (waiting for whoever holds them), then the waiting ones among them become pending. Two statements:
// the UPDATE's snapshot is taken after the wait, and sees a parent that went waiting meanwhile.
void lock_and_wake(Datum ids, bool lock = true) {
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {ids};
    if (lock) {
        pg::run_as_owner(&plan_wake_lock,
                         "/* pw_indexes: runs_pkey */ SELECT priority, id, status = 'pending' FROM pipeline_worker.runs"
                         " WHERE id = ANY ($1) ORDER BY id FOR NO KEY UPDATE",
                         1, types, v, nullptr, false);
        note_locked_queued();
    }
    pg::run_as_owner(&plan_wake,
                     "/* pw_indexes: runs_pkey pipelines_id_key */ UPDATE pipeline_worker.runs r SET status = 'pending',"
                     " not_before = NULL, waiting_for = NULL," PW_PARKED_IF_PAUSED
                     " WHERE id = ANY ($1) AND CASE status WHEN 'waiting' THEN true ELSE false END"
                     " RETURNING priority, id, parked",
                     1, types, v, nullptr, false);
    note_woken();
}

}  // namespace

void defer_held_parents(void (*defer)(int64 id)) { defer_parent = defer; }

void wake_parents(const int64 *parent_ids, int n) {
    if (n == 0) return;
    // The parents' rows are locked before the wake-up, waiting or not: a parent that looks at its children next
    // (lock_parent, then a fresh snapshot) waits for this transaction, and sees the child finished. Without the lock,
    // a parent that was not waiting yet when the UPDATE ran, and read its children before this commit was visible,
    // went waiting and missed the wake-up (a child map in workflows.sh, seen once: the parent slept until its poll).
    // A session (execute_run, cancel_run) where no worker serves the database: its own transaction waits for a
    // parent held elsewhere.
    if (!parents_go_to_workers()) {
        lock_and_wake(pg::int8_array(parent_ids, n));
        return;
    }
    // A worker waits for no parent inside its batch's transaction: that transaction holds its batch's runs, and two
    // workers each finishing a child of a parent the other holds deadlocked (workflow_faults.sh: a map over a child
    // pipeline, 4 workers). Parents held elsewhere are woken after the commit, in a transaction of their own that
    // waits for nothing either (try_wake_held_parent; worker/parent_wakes.cpp tries again until the row is free).
    // (Should this transaction roll back, they are woken all the same: a parent that looks at a child still
    // unfinished goes back to waiting.) A session hands them to the workers, who wake them once its transaction has
    // ended (until 2026-12-04 it waited: cancel_run of a child, which locks the child, and a session's execute_run of
    // it could deadlock); only when the database's list is full does it wait.
    int64 *locked = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int nlocked = lock_free_rows(parent_ids, n, locked);
    int64 *wait_for = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int nwait = 0;
    for (int i = 0; i < n; i++) {
        bool got = false;
        for (int k = 0; k < nlocked && !got; k++) got = locked[k] == parent_ids[i];
        if (got) continue;
        // (a parent deleted meanwhile too: its wake-up finds nothing)
        if (defer_parent != nullptr) defer_parent(parent_ids[i]);
        else if (shared::offer_parent_wake(parent_ids[i], GetTopTransactionId())) notes::parents_handed_over();
        else wait_for[nwait++] = parent_ids[i];  // (the list is full)
    }
    if (nlocked > 0) lock_and_wake(pg::int8_array(locked, nlocked), false);  // (locked just now)
    if (nwait > 0) lock_and_wake(pg::int8_array(wait_for, nwait));
}

bool try_wake_held_parent(int64 id) {
    static SPIPlanPtr plan_exists = nullptr;
    int64 locked;
    if (lock_free_rows(&id, 1, &locked) == 1) {
        lock_and_wake(pg::int8_array(&id, 1), false);  // (locked just now)
        return true;
    }
    // Skipped, or gone (deleted by retention or purge_runs meanwhile: nothing to wake)
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(id)};
    pg::run_as_owner(&plan_exists, "/* pw_indexes: runs_pkey */ SELECT 1 FROM pipeline_worker.runs WHERE id = $1", 1,
                     types, v, nullptr, true);
    return SPI_processed == 0;
}

bool parents_go_to_workers() { return defer_parent != nullptr || shared::staying_workers_in(MyDatabaseId) > 0; }

int64 parent_of(int64 child_id, bool lock) {
    if (schema_version() < 2) return 0;
    static SPIPlanPtr plan_parent_of = nullptr, plan_lock_parent_of = nullptr;
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(child_id)};
    if (lock)
        pg::run_as_owner(&plan_lock_parent_of,
                         "/* pw_indexes: runs_pkey */ SELECT p.id FROM pipeline_worker.runs c"
                         " JOIN pipeline_worker.runs p ON p.id = c.parent_run_id WHERE c.id = $1 FOR NO KEY UPDATE OF p",
                         1, types, v, nullptr, false);
    else
        pg::run_as_owner(&plan_parent_of,
                         "/* pw_indexes: runs_pkey */ SELECT parent_run_id FROM pipeline_worker.runs"
                         " WHERE id = $1 AND parent_run_id IS NOT NULL",
                         1, types, v, nullptr, false);
    bool isnull;
    return SPI_processed == 1 ? DatumGetInt64(col(0, 1, &isnull)) : 0;
}

int64 *unfinished_descendants(int64 run_id, int *n) {
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    pg::run_as_owner(&plan_descendants,
                     "/* pw_indexes: runs_parent_idx runs_pkey */ WITH RECURSIVE d(id, depth) AS ("
                     "   SELECT id, 1 FROM pipeline_worker.runs WHERE parent_run_id = $1"
                     " UNION ALL"
                     "   SELECT r.id, d.depth + 1 FROM d JOIN pipeline_worker.runs r ON r.parent_run_id = d.id"
                     "   WHERE d.depth < 10000)"
                     " SELECT d.id FROM d JOIN pipeline_worker.runs r ON r.id = d.id"
                     " WHERE r.status NOT IN ('succeeded', 'failed', 'cancelled') ORDER BY d.depth, d.id",
                     1, types, v, nullptr, false);  // (not read-only: children started earlier in this transaction too)
    *n = static_cast<int>(SPI_processed);
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * (*n + 1)));
    for (int i = 0; i < *n; i++) {
        bool isnull;
        ids[i] = DatumGetInt64(col(i, 1, &isnull));
    }
    return ids;
}

namespace {

// broadcast: a running child may have a request in flight in some worker (which no slot shows): every worker is
// signalled if none executes it; a held child is signalled only if a worker executes it now.
void tell_executor(int64 id, bool at_commit, bool broadcast) {
    if (at_commit) {
        notes::cancel_at_commit(id, broadcast);
    } else {
        shared::request_cancel(id);
        shared::cancel_written(id);  // (withdrawn if the cancel that made it rolls back)
        shared::interrupt_executor(id, broadcast);
    }
}

}  // namespace

void cancel_descendants(int64 run_id, const char *why, bool signal_at_commit, bool wait_for_waiting) {
    int n;
    int64 *ids = unfinished_descendants(run_id, &n);
    if (n == 0) return;
    // Rows nobody holds are changed here. A child a worker holds -- executing it under a lazy claim, writing its
    // outcome, waking its parent -- is left to that worker and told: waiting for its row could take as long as its
    // step, and that worker may be waiting for this transaction's lock on the parent (a deadlock). A waiting child
    // held by someone else (send_event, a wake-up, the timer) has no executor to tell: its row is waited for.
    static SPIPlanPtr plan_lock_children = nullptr, plan_waiting_children = nullptr;
    Oid ltypes[1] = {INT8ARRAYOID};
    Datum lv[1] = {pg::int8_array(ids, n)};
    pg::run_as_owner(&plan_lock_children,
                     "/* pw_indexes: runs_pkey */ SELECT id, status FROM pipeline_worker.runs WHERE id = ANY ($1)"
                     " FOR UPDATE SKIP LOCKED",
                     1, ltypes, lv, nullptr, false);
    int64 *cancel = static_cast<int64 *>(palloc(sizeof(int64) * n));   // rows the UPDATE below changes
    int64 *close = static_cast<int64 *>(palloc(sizeof(int64) * n));    // whose waiting rows are closed here
    bool *held = static_cast<bool *>(palloc(sizeof(bool) * n));
    int ncancel = 0, nclose = 0;
    for (int i = 0; i < n; i++) held[i] = true;
    for (uint64 k = 0; k < SPI_processed; k++) {
        bool isnull;
        int64 id = DatumGetInt64(col(k, 1, &isnull));
        bool running = strcmp(TextDatumGetCString(col(k, 2, &isnull)), "running") == 0;
        for (int i = 0; i < n; i++)
            if (ids[i] == id) held[i] = false;
        cancel[ncancel++] = id;
        // a running child's executor closes its own rows when it records the cancel (closing them here could
        // deadlock with its flush, which locks its step rows before its run)
        if (running) tell_executor(id, signal_at_commit, true);
        else close[nclose++] = id;
    }
    int nheld = 0;
    for (int i = 0; i < n; i++)
        if (held[i]) ids[nheld++] = ids[i];
    if (nheld > 0) {
        Datum hv[1] = {pg::int8_array(ids, nheld)};
        // (not waited for -- the lead worker's look: recorded like the others, and cancelled by a later look once free)
        uint64 nwaiting = 0;
        if (wait_for_waiting) {
            pg::run_as_owner(&plan_waiting_children,
                             "/* pw_indexes: runs_pkey */ SELECT id FROM pipeline_worker.runs WHERE id = ANY ($1)"
                             " AND CASE status WHEN 'waiting' THEN true ELSE false END",
                             1, ltypes, hv, nullptr, false);
            nwaiting = SPI_processed;
        }
        int64 *told = static_cast<int64 *>(palloc(sizeof(int64) * nheld));
        int ntold = 0;
        for (int i = 0; i < nheld; i++) {
            bool waiting = false;
            for (uint64 k = 0; k < nwaiting && !waiting; k++) {
                bool isnull;
                waiting = DatumGetInt64(col(k, 1, &isnull)) == ids[i];
            }
            if (waiting) {
                cancel[ncancel++] = ids[i];
                close[nclose++] = ids[i];
            } else {
                tell_executor(ids[i], signal_at_commit, false);
                told[ntold++] = ids[i];
            }
        }
        // What shared memory is told, a crash forgets: recorded with this transaction too, the word reaches the
        // run's next claim (store/cancel_requests). Until 2026-12-06 such a child ran after a restart.
        record_cancel_requests(told, ntold, why);
    }
    if (ncancel == 0) return;
    static SPIPlanPtr plan_cancel_children = nullptr;
    Oid types[2] = {INT8ARRAYOID, TEXTOID};
    Datum v[2] = {pg::int8_array(cancel, ncancel), CStringGetTextDatum(why)};
    pg::run_as_owner(&plan_cancel_children,
                     "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'cancelled',"
                     " error = $2, finished_at = pg_catalog.clock_timestamp(),"
                     " not_before = NULL, parked = NULL, worker_pid = NULL, worker_started_at = NULL WHERE id = ANY ($1)"
                     " AND CASE status WHEN 'succeeded' THEN false WHEN 'failed' THEN false WHEN 'cancelled' THEN false"
                     "   ELSE true END RETURNING id, pipeline",
                     2, types, v, nullptr, false);
    // (copied first: note_finished may run statements of its own -- a pipeline's definition not cached yet -- and
    // until 2026-12-06 the loop read the rows of those, stopping after the first cancelled child)
    int ndone = static_cast<int>(SPI_processed);
    int64 *done = static_cast<int64 *>(palloc(sizeof(int64) * (ndone > 0 ? ndone : 1)));
    char **pipelines = static_cast<char **>(palloc(sizeof(char *) * (ndone > 0 ? ndone : 1)));
    for (int i = 0; i < ndone; i++) {
        bool isnull;
        done[i] = DatumGetInt64(col(i, 1, &isnull));
        pipelines[i] = TextDatumGetCString(col(i, 2, &isnull));
    }
    for (int i = 0; i < ndone; i++) {
        note_finished(pipelines[i], done[i], core::RunStatus::Cancelled, -1);
        // (a request made at once above goes with this write: withdrawn if it is rolled back -- a cancel_run of the
        // parent rolled back left its running children's requests, and they were cancelled, until 2026-12-05)
        if (!signal_at_commit) shared::cancel_written(done[i]);
    }
    if (ndone > 0) notes::runs_finished();
    if (nclose == 0) return;
    close_waits(pg::int8_array(close, nclose));  // a sleep or event wait they were in ends with them
}

void cancel_recorded_runs() {
    pg::spi_connect();
    RecordedRun *locked;
    int64 *held;
    int nheld;
    int n = lock_recorded_runs(&locked, &held, &nheld);
    // Still held: the request goes back into shared memory if it left it (a crash, 4,096 newer cancels) -- the
    // executor, if any, stops at its next look; the claim of a run held by a session's lock cancels it then.
    // (at most kRearmPerLook a look: thousands of held records would churn the ring, and signal every worker for each)
    constexpr int kRearmPerLook = 64;
    for (int i = 0, rearmed = 0; i < nheld && rearmed < kRearmPerLook; i++)
        if (!shared::cancel_requested(held[i])) {
            shared::request_cancel(held[i]);
            shared::interrupt_executor(held[i], true);
            rearmed++;
        }
    if (n == 0) {
        SPI_finish();
        return;
    }
    // Free now: cancelled here as the cascade would have (a running one's executor -- a worker between its commits --
    // told at commit), with the runs they started since; a parent waiting for one (retried meanwhile) is woken.
    // (all of them are changed below: this transaction holds their rows, and they were unfinished)
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * n));
    Datum *errors = static_cast<Datum *>(palloc(sizeof(Datum) * n));
    int64 *close = static_cast<int64 *>(palloc(sizeof(int64) * n));
    int nclose = 0;
    for (int i = 0; i < n; i++) {
        ids[i] = locked[i].id;
        errors[i] = CStringGetTextDatum(locked[i].error);
        // (a running one's worker closes its own waits when it records the cancel)
        if (locked[i].running) notes::cancel_at_commit(ids[i], true);
        else close[nclose++] = ids[i];
    }
    static SPIPlanPtr plan_cancel_recorded = nullptr;
    Oid types[2] = {INT8ARRAYOID, TEXTARRAYOID};
    Datum v[2] = {pg::int8_array(ids, n), pg::make_array(errors, nullptr, n, TEXTOID)};
    pg::run_as_owner(&plan_cancel_recorded,
                     "/* pw_indexes: r.runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'cancelled', error = u.error,"
                     " finished_at = pg_catalog.clock_timestamp(), not_before = NULL, parked = NULL,"
                     " worker_pid = NULL, worker_started_at = NULL"
                     " FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS u(id, error)"
                     " WHERE r.id = ANY (ARRAY[u.id]) RETURNING r.id, r.pipeline, r.parent_run_id",
                     2, types, v, nullptr, false);
    // (copied first: note_finished may run statements of its own)
    int ndone = static_cast<int>(SPI_processed), nparents = 0;
    char **pipelines = static_cast<char **>(palloc(sizeof(char *) * (ndone > 0 ? ndone : 1)));
    int64 *done = static_cast<int64 *>(palloc(sizeof(int64) * (ndone > 0 ? ndone : 1)));
    int64 *parents = static_cast<int64 *>(palloc(sizeof(int64) * (ndone > 0 ? ndone : 1)));
    for (int i = 0; i < ndone; i++) {
        bool isnull, pnull;
        done[i] = DatumGetInt64(col(i, 1, &isnull));
        pipelines[i] = TextDatumGetCString(col(i, 2, &isnull));
        Datum parent = col(i, 3, &pnull);
        if (!pnull) parents[nparents++] = DatumGetInt64(parent);
    }
    for (int i = 0; i < ndone; i++) note_finished(pipelines[i], done[i], core::RunStatus::Cancelled, -1);
    if (ndone > 0) notes::runs_finished();
    if (nclose > 0) close_waits(pg::int8_array(close, nclose));
    // (their descendants held elsewhere are recorded, not waited for: this look waits for no row)
    for (int i = 0; i < ndone; i++) cancel_descendants(done[i], "cancelled: its parent run was cancelled", true, false);
    drop_cancel_requests(ids, n);
    if (nparents > 0) wake_parents(parents, nparents);
    SPI_finish();
}

// A child run that succeeded before its parent ended (failed by another branch, or cancelled before it woke) is
// recorded as the success it was: its row still said waiting, was closed as failed, and retry_run started a second
// child for it (until 2026-12-07; acceptance walk-through and its review).
void keep_succeeded_children(Datum run_ids) {
    static SPIPlanPtr plan_children_done = nullptr;
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {run_ids};
    pg::run_as_owner(&plan_children_done,
                     "/* pw_indexes: run_steps_pkey runs_pkey */ UPDATE pipeline_worker.run_steps s"
                     " SET status = 'succeeded', output = COALESCE(ch.result, 'null'::jsonb), error = NULL,"
                     "  finished_at = ch.finished_at"
                     " FROM pipeline_worker.runs ch"
                     " WHERE s.run_id = ANY ($1) AND s.status = 'waiting' AND s.output ? 'child_run_id'"
                     "  AND ch.id = (s.output->>'child_run_id')::bigint"
                     "  AND CASE WHEN ch.status = 'succeeded' THEN true ELSE false END",
                     1, types, v, nullptr, false);
}

void close_waits(Datum run_ids) {
    keep_succeeded_children(run_ids);
    static SPIPlanPtr plan_close_waits = nullptr;
    Oid types[1] = {INT8ARRAYOID};
    Datum v[1] = {run_ids};
    pg::run_as_owner(&plan_close_waits,
                     "/* pw_indexes: run_steps_pkey */ UPDATE pipeline_worker.run_steps SET status = 'failed',"
                     " error = 'cancelled', finished_at = pg_catalog.clock_timestamp()"
                     " WHERE run_id = ANY ($1) AND status = 'waiting'",
                     1, types, v, nullptr, false);
}

}  // namespace pw::store
