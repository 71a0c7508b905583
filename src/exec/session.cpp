#include "exec/session.hpp"

#include "shmem/lanes.hpp"

#include "exec/executor.hpp"
#include "pg/spi.hpp"
#include "exec/hooks.hpp"
#include "shmem/cancels.hpp"
#include "store/run_rows.hpp"
#include "store/writes.hpp"

namespace pw::exec {

namespace {

shared::SessionExec *volatile my_session_entry = nullptr;

// SIGINT in a session that executes runs: cancel_run's signal (signal_pending) interrupts only a step of a run
// that was asked to stop -- a late one, after the step or the run ended, is dropped instead of cancelling the
// session's next statement. Any other SIGINT (pg_cancel_backend, statement_timeout's own path, ^C) is
// PostgreSQL's usual statement cancel.
void session_sigint(SIGNAL_ARGS) {
    int save_errno = errno;
    shared::SessionExec *e = my_session_entry;
    if (e != nullptr && pg_atomic_exchange_u32(&e->signal_pending, 0) != 0) {
        uint64 run = pg_atomic_read_u64(&e->run_id);
        if (!(in_step() && run != 0 && shared::cancel_requested(static_cast<int64>(run), true))) {
            errno = save_errno;
            return;
        }
    }
    errno = save_errno;
    StatementCancelHandler(postgres_signal_arg);
}

// A backend that ends inside a step (FATAL does not unwind to the step's PG_CATCH) must not leave its entry
// naming the run: cancel_run would signal whatever process gets that pid next.
void session_exit(int, Datum) {
    shared::SessionExec *e = my_session_entry;
    if (e == nullptr) return;
    pg_atomic_write_u64(&e->run_id, 0);
    e->pid = 0;
}

}  // namespace

shared::SessionExec *session_step_begin(int64 run_id) {
    shared::SessionExec *e = shared::my_session();
    if (e == nullptr) return nullptr;
    if (my_session_entry == nullptr) {
        e->pid = MyProcPid;
        pg_atomic_write_u32(&e->signal_pending, 0);
        my_session_entry = e;
        before_shmem_exit(session_exit, 0);
        pqsignal(SIGINT, session_sigint);  // for the rest of this backend's life (see session_sigint)
    }
    pg_atomic_write_u32(&e->dboid, MyDatabaseId);  // (before the run id: a reader matching the id sees the database)
    pg_write_barrier();
    pg_atomic_write_u64(&e->run_id, static_cast<uint64>(run_id));
    return e;
}

void session_step_end(shared::SessionExec *entry) {
    if (entry != nullptr) pg_atomic_write_u64(&entry->run_id, 0);
}

const char *execute_run(int64 run_id) {
    store::reset_writes();  // leftovers of a call that failed inside a caller's savepoint
    MemoryContext caller = CurrentMemoryContext;
    pg::spi_connect();
    store::RunRecord rec;
    if (!store::read_run(run_id, &rec, caller))
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("run %lld does not exist", (long long)run_id)));
    if (strcmp(rec.status, "running") != 0 || rec.worker_pid != MyProcPid || rec.worker_started_at != MyStartTimestamp)
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("run %lld was not claimed by this session", (long long)run_id),
                        errdetail("Its status is \"%s\"%s.", rec.status,
                                  rec.worker_pid == 0
                                      ? ""
                                      : psprintf(" and it was claimed by the backend with PID %d", rec.worker_pid)),
                        strcmp(rec.status, "pending") == 0 || strcmp(rec.status, "running") == 0
                            ? errhint("Claim it first with pipeline_worker.claim_run().")
                            : errhint("It has finished; pipeline_worker.retry_run() puts a failed or cancelled run back "
                                      "in the queue.")));
    // Only as a role with the submitter's privileges (or a superuser): the steps run as the submitter in this session,
    // whose state (temporary objects, search_path) the caller controls.
    if (!superuser() && !has_privs_of_role(GetUserId(), rec.run.submitter))
        ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                        errmsg("permission denied to execute run %lld in this session", (long long)run_id),
                        errdetail("Its steps run as the role that submitted it, which the current role is not."),
                        errhint("Leave it to the workers, or execute it as that role or a superuser.")));
    SPI_finish();
    int wait_ms;
    if (!lanes::begin(run_id, &wait_ms)) {
        // its pipeline's rate window filled up since the claim: back to the queue, due when it has room
        store::buffer_run(&rec.run, core::RunStatus::Pending, nullptr, nullptr, wait_ms);
        store::flush_writes();
        return "pending";
    }
    Outcome outcome = execute_claimed(&rec.run, nullptr, nullptr);
    store::flush_writes();
    return outcome_text(outcome);
}

}  // namespace pw::exec
