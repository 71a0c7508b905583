#include "worker/helping.hpp"

#include "exec/http_queue.hpp"
#include "exec/shared_tasks.hpp"
#include "pg/spi.hpp"
#include "shmem/gucs.hpp"
#include "shmem/task_board.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// A helper goes back to its own loop now and then (new runs, the timer, the lead worker's chores, being retired) and
// joins again if there is still nothing else to do.
constexpr long kHelpAtMostMs = 1000;

}  // namespace

int help_with_tasks(MemoryContext iter_ctx) {
    // (a worker with HTTP requests of its own out keeps driving them instead)
    if (!board::any_open() || !guc::enabled || claims_stopped || httpq::pending() > 0) return 0;
    board::Ticket t;
    if (!board::join(&t)) return 0;
    pg_atomic_write_u32(&my_slot->idle, 0);  // (wake-ups go to workers that are really idle)
    pg_atomic_write_u64(&my_slot->run_id, static_cast<uint64>(t.run_id));
    volatile int ran = 0;
    MemoryContext chunk_ctx = AllocSetContextCreate(iter_ctx, "pipeline_worker helping", ALLOCSET_DEFAULT_SIZES);
    MemoryContextSwitchTo(iter_ctx);
    TimestampTz start = GetCurrentTimestamp();
    PG_TRY();
    {
        exec::Helping *h = nullptr;
        int from, to;
        while (pg_atomic_read_u32(&my_slot->retire) == 0 && !TimestampDifferenceExceeds(start, GetCurrentTimestamp(), kHelpAtMostMs)) {
            // Nothing left to take: of shared steps, one that became ready meanwhile is taken up here (its owner
            // may be busy with a long step of its own until then).
            bool added = !board::take(t.slot, t.generation, &from, &to);
            if (added && t.pos >= 0) break;
            begin_work_txn();
            pg::spi_connect();
            MemoryContextSwitchTo(iter_ctx);
            if (h == nullptr) h = exec::start_helping(t, iter_ctx);  // (what it read lives as long as the helping)
            MemoryContextReset(chunk_ctx);
            if (added) {
                from = h != nullptr ? exec::extend_help(h, &t, iter_ctx) : -1;
                if (from < 0) {
                    SPI_finish();
                    commit_work_txn();  // (it read only)
                    break;
                }
                to = from + 1;
            }
            int k = h != nullptr ? exec::help_with(h, t, from, to, chunk_ctx) : -1;
            SPI_finish();
            if (k < 0) {
                // the run is no longer executed by the worker that shared it (or cannot be helped): what this chunk
                // did is rolled back, and the tasks are left to whoever executes the run
                AbortCurrentTransaction();
                break;
            }
            commit_work_txn();
            ran += k;
            CHECK_FOR_INTERRUPTS();
        }
    }
    PG_CATCH();
    {
        // (the chunk rolls back; the owner executes the tasks that have no row once every helper has left)
        abort_work_txn(iter_ctx);
    }
    PG_END_TRY();
    board::leave(&t);
    pg_atomic_write_u64(&my_slot->run_id, 0);
    MemoryContextReset(iter_ctx);
    return ran > 0 ? ran : 1;
}

}  // namespace pw::worker
