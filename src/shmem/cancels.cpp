#include "shmem/cancels.hpp"

#include "shmem/shared.hpp"

namespace pw::shared {

namespace {

// Run ids are per database: the ring holds (database, run) folded into one word.
uint64 cancel_key(int64 run_id) { return static_cast<uint64>(run_id) ^ (static_cast<uint64>(MyDatabaseId) << 40); }

bool same_db(const Slot &s) { return pg_atomic_read_u32(const_cast<pg_atomic_uint32 *>(&s.dboid)) == MyDatabaseId; }

}  // namespace

void request_cancel(int64 run_id) {
    State *s = state();
    if (s == nullptr) return;
    uint32 i = pg_atomic_fetch_add_u32(&s->cancel_next, 1) % kCancelRing;
    pg_atomic_write_u64(&s->cancels[i], cancel_key(run_id));
}

void clear_cancel(int64 run_id) {
    State *s = state();
    if (s == nullptr) return;
    for (int i = 0; i < kCancelRing; i++) {
        uint64 expected = cancel_key(run_id);
        pg_atomic_compare_exchange_u64(&s->cancels[i], &expected, 0);
    }
}

bool cancel_requested(int64 run_id) {
    State *s = state();
    if (s == nullptr) return false;
    for (int i = 0; i < kCancelRing; i++)
        if (pg_atomic_read_u64(&s->cancels[i]) == cancel_key(run_id)) return true;
    return false;
}

namespace {

// The worker executing run_id (shared-memory slots), 0 if none.
int executor_pid(int64 run_id) {
    State *st = state();
    if (st != nullptr)
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && same_db(st->slots[i]) &&
                pg_atomic_read_u64(&st->slots[i].run_id) == static_cast<uint64>(run_id))
                return st->slots[i].pid;
    return 0;
}

}  // namespace

void interrupt_executor(int64 run_id) {
    int pid = executor_pid(run_id);
    SessionExec *session = pid == 0 ? session_executing(run_id) : nullptr;
    if (pid != 0 && pid != MyProcPid) {
        kill(pid, SIGINT);  // the worker checks that it is still this run
    } else if (session != nullptr && session->pid != MyProcPid) {
        // A session's execute_run: its SIGINT handler honours a signal marked as ours only while a step of a
        // cancelled run executes (a late one does not cancel the session's next statement).
        pg_atomic_write_u32(&session->signal_pending, 1);
        kill(session->pid, SIGINT);
    } else if (State *st = state()) {
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && st->slots[i].pid != MyProcPid && same_db(st->slots[i]))
                kill(st->slots[i].pid, SIGINT);
    }
}

}  // namespace pw::shared
