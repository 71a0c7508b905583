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

// Signals the workers executing run_id (shared-memory slots: its own worker, and those helping with its map tasks
// or steps); false if none is.
bool signal_executors(int64 run_id) {
    State *st = state();
    bool found = false;
    if (st != nullptr)
        for (int i = 0; i < st->nslots; i++)
            if (st->slots[i].pid != 0 && same_db(st->slots[i]) &&
                pg_atomic_read_u64(&st->slots[i].run_id) == static_cast<uint64>(run_id)) {
                found = true;
                if (st->slots[i].pid != MyProcPid) kill(st->slots[i].pid, SIGINT);  // each checks it is still this run
            }
    return found;
}

}  // namespace

void interrupt_executor(int64 run_id, bool broadcast) {
    if (signal_executors(run_id) || !broadcast) return;
    SessionExec *session = session_executing(run_id);
    if (session != nullptr && session->pid != MyProcPid) {
        // A session's execute_run: its SIGINT handler honours a signal marked as ours only while a step of a
        // cancelled run executes (a late one does not cancel the session's next statement).
        pg_atomic_write_u32(&session->signal_pending, 1);
        kill(session->pid, SIGINT);
    } else if (session == nullptr) {
        if (State *st = state())
            for (int i = 0; i < st->nslots; i++)
                if (st->slots[i].pid != 0 && st->slots[i].pid != MyProcPid && same_db(st->slots[i]))
                    kill(st->slots[i].pid, SIGINT);
    }
}

}  // namespace pw::shared
