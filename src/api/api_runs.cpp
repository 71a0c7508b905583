// SQL functions on runs: wait_run, claim_run, execute_run, cancel_run, retry_run, recover_runs,
// workers(), and the helpers the row-level security policies call.
#include "api/access.hpp"

extern "C" {
#include "commands/extension.h"
#include "storage/lock.h"
}

#include "core/status.hpp"
#include "exec/hooks.hpp"
#include "exec/session.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/cancels.hpp"
#include "store/cancel_requests.hpp"
#include "store/children.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/shared.hpp"
#include "store/claims.hpp"
#include "store/queue.hpp"
#include "store/put_back.hpp"
#include "store/stats.hpp"
#include "store/pipelines.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_wait_run);
PG_FUNCTION_INFO_V1(pw_claim_run);
PG_FUNCTION_INFO_V1(pw_execute_run);
PG_FUNCTION_INFO_V1(pw_cancel_run);
PG_FUNCTION_INFO_V1(pw_retry_run);
PG_FUNCTION_INFO_V1(pw_recover_runs);
PG_FUNCTION_INFO_V1(pw_workers);
PG_FUNCTION_INFO_V1(pw_has_role);
PG_FUNCTION_INFO_V1(pw_is_admin);
PG_FUNCTION_INFO_V1(pw_wake_workers);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_cancel_try, plan_cancel_lock, plan_cancel_claim, plan_cancel_running, plan_cancel_running_v2, plan_retry, plan_retry_v2, plan_retry_check;

bool finished(const char *status) {
    core::RunStatus s;
    return core::run_status_from_text(status, &s) && core::is_finished(s);
}

}  // namespace

extern "C" Datum pw_wait_run(PG_FUNCTION_ARGS) {
    int64 run_id = PG_GETARG_INT64(0);
    Interval *span = PG_GETARG_INTERVAL_P(1);
    // (in 128 bits, capped at ~146,000 years: '290000 years' wrapped around to a deadline in the past until
    // 2026-12-05, and wait_run returned at once)
    __int128 span_us = static_cast<__int128>(span->time) + static_cast<__int128>(span->day) * USECS_PER_DAY +
                       static_cast<__int128>(span->month) * DAYS_PER_MONTH * USECS_PER_DAY;
    int64 usecs = span_us < 0 ? 0 : span_us > PG_INT64_MAX / 2 ? PG_INT64_MAX / 2 : static_cast<int64>(span_us);
    TimestampTz deadline = GetCurrentTimestamp() + usecs;
    // (Until 2026-12-07 a step waiting for its own run slept until the timeout, holding its worker; acceptance
    // walk-through.)
    if (exec::step_run() == run_id)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("a step of run %lld cannot wait for that run", (long long)run_id),
                        errdetail("The run finishes only after its steps have returned."),
                        errhint("Wait for it from outside the run, e.g. in the session that submitted it.")));
    shared::State *st = shared::state();
    MemoryContext caller_ctx = CurrentMemoryContext;

    pg::spi_connect();
    char *status = nullptr;
    for (;;) {
        if (st != nullptr) ConditionVariablePrepareToSleep(&st->run_done_cv);
        MemoryContext old = MemoryContextSwitchTo(caller_ctx);
        if (status) pfree(status);
        MemoryContextSwitchTo(old);
        bool written_here = false;
        char *s = run_status(run_id, &written_here);
        // No worker can see (or finish) a run this transaction created, claimed or retried before it commits:
        // waiting would only sleep until the timeout.
        if (written_here && !finished(s))
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("run %lld was created or changed by this transaction, which has not committed",
                                   (long long)run_id),
                            errdetail("No worker can execute the run before this transaction commits."),
                            errhint("Commit first, or call wait_run in a later statement outside the creating "
                                    "transaction.")));
        old = MemoryContextSwitchTo(caller_ctx);
        status = pstrdup(s);
        MemoryContextSwitchTo(old);
        TimestampTz now = GetCurrentTimestamp();
        if (finished(status) || now >= deadline) break;
        long remaining_ms = static_cast<long>((deadline - now + 999) / 1000);
        // Woken when any run finishes; the cap only guards against a missed broadcast.
        long sleep_ms = remaining_ms < 1000 ? remaining_ms : 1000;
        if (st != nullptr) {
            ConditionVariableTimedSleep(&st->run_done_cv, sleep_ms, PG_WAIT_EXTENSION);
        } else {
            (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, sleep_ms < 10 ? sleep_ms : 10,
                            PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
        }
        CHECK_FOR_INTERRUPTS();
    }
    if (st != nullptr) ConditionVariableCancelSleep();
    SPI_finish();
    PG_RETURN_TEXT_P(cstring_to_text(status));
}

namespace {

// A step a worker executes runs inside the worker's batch: claiming or executing another run there would mix that
// run's writes into the batch's (until 2026-12-07 execute_run's reset them). A step of a session's execute_run is
// inside that run's execution: a nested execute_run took over the session's executing state, and of the same run
// wrote its step row twice -- a raw 23505, and the run left running (until 2026-12-07; acceptance walk-through).
void refuse_in_step(const char *fn) {
    if (!exec::in_step()) return;
    if (exec::in_worker())
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("%s cannot be called from a step executed by a background worker", fn),
                        errhint("Submit the work as a run of its own (create_run), or as a child pipeline step.")));
    ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                    errmsg("%s cannot be called from a step of a run that execute_run() is executing", fn),
                    errhint("Submit the work as a run of its own (create_run), or as a child pipeline step.")));
}

}  // namespace

extern "C" Datum pw_claim_run(PG_FUNCTION_ARGS) {
    require_writable("claim_run");
    refuse_in_step("claim_run()");
    store::ClaimedRun run;
    MemoryContext caller = CurrentMemoryContext;
    shared::register_claimer();  // (recovery tells this session alive by it)
    if (store::schema_version() >= 2) {
        store::release_stale_slots();
        // Without the workers' timer (none may run): runs due by now join the queue first.
        store::promote_due_runs();
        store::unpark_runs();
    }
    pg::spi_connect();
    // Superusers claim any run; everyone else (pipeline_worker_admin's members, granted this function by default,
    // included) only its own: executed in the claiming session, a run's steps meet that session's state -- its
    // temporary tables and their triggers, its search_path -- and an admin could have another role's steps, a
    // superuser's, run its code (until 2026-12-05; security audit). execute_run checks it too.
    Oid only = superuser() ? InvalidOid : GetUserId();
    (void)store::take_parked_count();
    int n = store::claim_runs(1, only, &run, caller, true);
    // The candidate was parked (its pipeline or key is at a limit): the next one in the queue may start.
    for (int tries = 0; n == 0 && tries < 100 && store::take_parked_count() > 0; tries++)
        n = store::claim_runs(1, only, &run, caller, true);
    SPI_finish();
    if (n == 0) PG_RETURN_NULL();
    PG_RETURN_INT64(run.id);
}

extern "C" Datum pw_execute_run(PG_FUNCTION_ARGS) {
    require_writable("execute_run");
    refuse_in_step("execute_run()");
    int64 run_id = PG_GETARG_INT64(0);
    store::release_stale_slots();
    const char *status = exec::execute_run(run_id);
    PG_RETURN_TEXT_P(cstring_to_text(status));
}


extern "C" Datum pw_cancel_run(PG_FUNCTION_ARGS) {
    require_writable("cancel_run");
    int64 run_id = PG_GETARG_INT64(0);
    pg::spi_connect();
    char *status = run_status(run_id);  // visibility = permission: submitter, pipeline owner, admin
    if (finished(status)) {
        SPI_finish();
        PG_RETURN_BOOL(false);
    }
    // From a step of that run (visible to its submitter: checked above): the step's end takes it -- its
    // subtransaction is rolled back and the run recorded cancelled. (Until 2026-12-07 the request went with the
    // step's rollback, the attempt counted as failed, and a retry could make the run succeed; acceptance walk-through.)
    if (exec::step_run() == run_id) {
        exec::cancel_own_run();
        SPI_finish();
        PG_RETURN_BOOL(true);
    }
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // 1. Ask whoever executes it to stop: the engine checks the request before and after every step, and
    //    SIGINT interrupts the step running now (like pg_cancel_backend); its subtransaction rolls back.
    shared::request_cancel(run_id);
    // (goes with this transaction: a cancel_run that fails -- its lock wait timed out or was cancelled -- leaves no
    // request to cancel the run's next execution; until 2026-12-05 it did)
    shared::cancel_written(run_id);
    shared::interrupt_executor(run_id);
    bool isnull = true;
    // A child run's parent waits for it to end: woken below -- otherwise it would notice at its once-a-minute look.
    // While workers serve the database its row is not waited for (wake_parents hands a held parent to them), so the
    // child's row is locked first, as execute_run locks it (until 2026-12-04 the parent's always came first, and a
    // session's execute_run of the child could deadlock with it). Without workers the session waits for the parent's
    // row: then it takes it first, the order in which a parent failing or cancelled takes them.
    bool parent_first = !store::parents_go_to_workers();
    int64 parent = parent_first ? store::parent_of(run_id, true) : 0;
    // 2. Take the run's row lock -- an ordinary lock wait (pg_locks, lock_timeout) while a transaction holds
    //    it: a worker's ends at once (it was signalled, or sees the request before its next step), a session's
    //    when it commits or rolls back. Then cancel the run unless it finished meanwhile.
    //    The row free (or this transaction's own): taken at once. Held by another transaction: calls for one run take
    //    turns first, until each one's transaction ends. (Two calls waiting for the row of a run an executor held both
    //    saw it recorded cancelled on their requests, and both returned true; review, 2026-12-07.) The turn is a
    //    heavyweight lock on an advisory tag of our own (field 4 = 4: not a user's advisory lock, 1 or 2, nor a
    //    pipeline's, 3), taken only to wait: a bulk cancel of free rows takes none (the lock table would fill), and a
    //    session that holds the row it cancels does not wait behind another call that waits for that row. Under
    //    REPEATABLE READ or SERIALIZABLE a run finished since the snapshot fails the row lock with 40001, as any such
    //    update does.
    pg::run_as_owner(&plan_cancel_try,
                     "/* pw_indexes: runs_pkey */ SELECT status, worker_pid IS NOT NULL FROM pipeline_worker.runs"
                     " WHERE id = $1 FOR UPDATE SKIP LOCKED",
                     1, types, v, nullptr, false);
    if (SPI_processed == 0) {
        LOCKTAG tag;
        SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, static_cast<uint32>(static_cast<uint64>(run_id) >> 32),
                             static_cast<uint32>(run_id), 4);
        (void)LockAcquire(&tag, ExclusiveLock, false, false);
        // (the row is locked even if the run finished meanwhile: whether its cancel is this call's is decided with
        // the row held -- below. Until 2026-12-07 a run that its executor cancelled between this call's two looks
        // was read finished here, and the call that had asked returned false: CI, semantics.sh.)
        pg::run_as_owner(&plan_cancel_lock,
                         "/* pw_indexes: runs_pkey */ SELECT status, worker_pid IS NOT NULL FROM pipeline_worker.runs"
                         " WHERE id = $1 FOR UPDATE",
                         1, types, v, nullptr, false);
    }
    bool result = false;
    if (SPI_processed == 1) {
        char *now_status = TextDatumGetCString(col(0, 1, &isnull));
        if (!finished(now_status)) {
            if (!parent_first) parent = store::parent_of(run_id, false);
            // (a run parked by a limit or a pause is no longer waiting for room: parked goes with it -- 0.2 schema)
            if (store::schema_version() >= 2)
                pg::run_as_owner(&plan_cancel_running_v2,
                                 "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'cancelled',"
                                 " error = 'cancelled', finished_at = pg_catalog.clock_timestamp(), not_before = NULL,"
                                 " parked = NULL, worker_pid = NULL, worker_started_at = NULL WHERE id = $1"
                                 " RETURNING pipeline",
                                 1, types, v, nullptr, false);
            else
                pg::run_as_owner(&plan_cancel_running,
                                 "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET status = 'cancelled',"
                                 " error = 'cancelled', finished_at = pg_catalog.clock_timestamp(), not_before = NULL,"
                                 " worker_pid = NULL, worker_started_at = NULL WHERE id = $1 RETURNING pipeline",
                                 1, types, v, nullptr, false);
            result = true;
            shared::cancel_written(run_id);  // (rolled back: the request made above is withdrawn)
            if (SPI_processed == 1) store::note_finished(TextDatumGetCString(col(0, 1, &isnull)), run_id, core::RunStatus::Cancelled, -1);
            store::close_waits(pg::int8_array(&run_id, 1));  // a sleep or event wait it was in ends with it
            if (parent != 0) store::wake_parents(&parent, 1);     // it looks at its child again: cancelled
        } else if (strcmp(now_status, "cancelled") == 0 && DatumGetBool(col(0, 2, &isnull)) && !isnull) {
            // Finished since this call first looked: cancelled by whoever executed it (a worker, or a session's
            // execute_run), which writes its own pid -- on a request, this call's or another's still waiting. The
            // first call to hold the row takes the cancel as its own: it clears the pid, as its own write would, and
            // returns true; the others, and later calls, find no pid -- false, as if they had come after. Cancelled by
            // another cancel_run's own write, or by a cascade from a parent, which leave no pid: false. (Until
            // 2026-12-07 two cancel_run calls racing for a run both returned true; acceptance walk-through.)
            pg::run_as_owner(&plan_cancel_claim,
                             "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs SET worker_pid = NULL,"
                             " worker_started_at = NULL WHERE id = $1",
                             1, types, v, nullptr, false);
            result = true;
        }
    }
    // its unfinished child runs (and theirs) are cancelled with it
    if (result && store::schema_version() >= 2) store::cancel_descendants(run_id, "cancelled: its parent run was cancelled");
    SPI_finish();
    if (result) notes::runs_finished();
    PG_RETURN_BOOL(result);
}

extern "C" Datum pw_retry_run(PG_FUNCTION_ARGS) {
    require_writable("retry_run");
    int64 run_id = PG_GETARG_INT64(0);
    pg::spi_connect();
    (void)run_status(run_id);
    Oid types[1] = {INT8OID};
    Datum v[1] = {Int64GetDatum(run_id)};
    // A run belongs to the pipeline it was submitted to: if that was dropped (even if the name exists again),
    // the run cannot be retried.
    pg::run_as_owner(&plan_retry_check,
                     "/* pw_indexes: runs_pkey */ SELECT r.pipeline, EXISTS (SELECT 1 FROM pipeline_worker.pipelines p"
                     "  WHERE p.name = r.pipeline AND p.id = r.pipeline_id), r.submitted_by::oid"
                     " FROM pipeline_worker.runs r WHERE r.id = $1",
                     1, types, v, nullptr, false);
    bool isnull;
    if (SPI_processed == 1 && !DatumGetBool(col(0, 2, &isnull)))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("run %lld cannot be retried: its pipeline \"%s\" was dropped", (long long)run_id,
                               TextDatumGetCString(col(0, 1, &isnull)))));
    if (SPI_processed == 1) {
        // A retry is a new submission in the submitter's name (its steps run as the submitter): the submitter
        // must still be allowed to submit -- a revoked grant is not side-stepped by retrying an old run.
        char *pipeline = TextDatumGetCString(col(0, 1, &isnull));
        Oid submitter = DatumGetObjectId(col(0, 3, &isnull));
        int64 pipeline_id;
        Oid owner = pipeline_owner(pipeline, &pipeline_id);
        if (!may_submit(pipeline, owner, submitter))
            ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                            errmsg("run %lld cannot be retried: its submitter \"%s\" may no longer submit runs to "
                                   "pipeline \"%s\"", (long long)run_id, pg::role_name(submitter), pipeline),
                            errhint("The pipeline's owner can allow it again with pipeline_worker.grant_pipeline().")));
    }
    // (0.2: a run cancelled while parked by a limit is queued again unparked -- left parked, no lane knows of it and
    // nothing would put it back; the claim parks it again if its lane is full. Paused pipeline: parked as create_run.)
    // (0.2: a run whose run_at is still ahead -- cancelled before it came -- waits for it again, as when created;
    // until 2026-12-05 it ran at once)
#define PW_RETRY(not_before, parked, returning)                                                                   \
    "/* pw_indexes: runs_pkey */ UPDATE pipeline_worker.runs r SET status = 'pending', result = NULL,"             \
    " error = NULL, finished_at = NULL, worker_pid = NULL, worker_started_at = NULL, not_before = " not_before      \
    parked " FROM (SELECT finished_at FROM pipeline_worker.runs WHERE id = $1) o"                                  \
    " WHERE r.id = $1 AND r.status IN ('failed', 'cancelled') RETURNING o.finished_at" returning
    bool v2 = store::schema_version() >= 2;
    if (v2)
        pg::run_as_owner(&plan_retry_v2,
                         PW_RETRY("CASE WHEN r.run_at > pg_catalog.clock_timestamp() THEN r.run_at END",
                                  ", parked = (SELECT CASE WHEN p.paused THEN 3 END FROM pipeline_worker.pipelines p"
                                  "   WHERE p.id = r.pipeline_id)",
                                  ", r.priority, r.not_before"),
                         1, types, v, nullptr, false);
    else
        pg::run_as_owner(&plan_retry, PW_RETRY("NULL", "", ""), 1, types, v, nullptr, false);
#undef PW_RETRY
    bool result = SPI_processed == 1;
    bool delayed = false;
    if (result && v2) {
        bool nnull;
        Datum due = col(0, 3, &nnull);
        if (!nnull) {
            notes::due_at(DatumGetTimestampTz(due));  // the timer queues it then
            delayed = true;
        }
    }
    // Its place in the queue is behind the claim hint (its id is old): the commit moves the hint back to it, so that
    // it keeps its turn at once rather than at a worker's next walk from the head of the queue -- and, its place known,
    // keeps the queue's known end (forgotten, the next claims walked to the end of the queue index: with a snapshot
    // held open, through the entry of every run claimed since -- test/scripts/held_snapshot.sh).
    // (Its position: a key, or its id under the 0.1 schema, which keeps no queue end.)
    if (result && !delayed) {
        bool pnull;
        uint64 at = static_cast<uint64>(v2 ? store::queue_key(DatumGetInt32(col(0, 2, &pnull)), run_id) : run_id);
        notes::runs_queued_at(1, at, at + 1);
    }
    if (result && v2) {
        // reopened: pipeline_stats' roll-up of its minute counts it no more
        bool isnull;
        Datum was = col(0, 1, &isnull);
        if (!isnull && DatumGetTimestampTz(was) >= GetCurrentTimestamp() - store::kRollupWindowUs) store::unseal_from(was);
        // a cancel recorded for it earlier (met, or outrun by its end) must not stop it at its next claim
        store::drop_cancel_requests(&run_id, 1);
    }
    SPI_finish();
    if (result) shared::clear_cancel(run_id);
    PG_RETURN_BOOL(result);
}

extern "C" Datum pw_recover_runs(PG_FUNCTION_ARGS) {
    PG_RETURN_INT64(store::recover_runs());
}

extern "C" Datum pw_workers(PG_FUNCTION_ARGS) {
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    InitMaterializedSRF(fcinfo, 0);
    shared::State *st = shared::state();
    if (st == nullptr) return (Datum)0;
    bool with_database = rsinfo->setDesc->natts >= 7;  // 0.2 added the column; 0.1's declaration has 6
    for (int i = 0; i < st->nslots; i++) {
        shared::Slot *s = &st->slots[i];
        int pid = s->pid;
        if (pid == 0) continue;
        Datum values[7];
        bool nulls[7] = {false, false, false, false, false, false, false};
        uint64 run = pg_atomic_read_u64(&s->run_id);
        values[0] = Int32GetDatum(i);
        values[1] = Int32GetDatum(pid);
        values[2] = CStringGetTextDatum(run != 0 ? "running" : (pg_atomic_read_u32(&s->idle) ? "idle" : "busy"));
        values[3] = Int64GetDatum(static_cast<int64>(run));
        nulls[3] = run == 0;
        values[4] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->runs_done)));
        values[5] = Int64GetDatum(static_cast<int64>(pg_atomic_read_u64(&s->batches)));
        if (with_database) {
            char *name = get_database_name(pg_atomic_read_u32(&s->dboid));
            nulls[6] = name == nullptr;
            values[6] = name != nullptr ? DirectFunctionCall1(namein, CStringGetDatum(name)) : (Datum)0;
        }
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}

extern "C" Datum pw_has_role(PG_FUNCTION_ARGS) {
    PG_RETURN_BOOL(has_privs_of_role(GetUserId(), PG_GETARG_OID(0)));
}

extern "C" Datum pw_is_admin(PG_FUNCTION_ARGS) {
    PG_RETURN_BOOL(pg::is_admin(GetUserId()));
}

// Wakes every idle worker when the calling transaction commits. Called last by the install and update scripts:
// there it also forgets the server's cancel requests -- run ids start again at 1 in a re-created extension, and a
// request left for an old run (cancel_run(5), DROP and CREATE EXTENSION) cancelled the new run 5 until 2026-12-05.
// (Requests are keyed by database and run id only; a held run of another database that misses its request runs on,
// as when the ring overflows.)
extern "C" Datum pw_wake_workers(PG_FUNCTION_ARGS) {
    if (creating_extension) shared::forget_all_cancels();
    notes::wake_all_workers();
    PG_RETURN_VOID();
}

