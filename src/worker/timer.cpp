#include "worker/timer.hpp"

#include "pg/spi.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/queue.hpp"
#include "store/schedules.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// The timer (0.2 schema): runs whose not_before has come join the queue, parked runs whose lane has room again go
// back, due schedules fire; then it is set for the next of these moments. One worker does it at a time (the one
// that took the due moment); a run due now is claimed in the same round.
void run_timer() {
    pgstat_report_activity(STATE_RUNNING, "moving due runs into the queue");
    begin_work_txn();
    if (store::schema_version() >= 2) {
        store::promote_due_runs();
        store::unpark_runs();
        // Promoting and putting back are redone after a crash (the rows are still due, still parked): no need
        // to wait for the WAL flush -- unless runs of schedules were created, which must not be lost.
        if (store::fire_due_schedules() == 0)
            (void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
                                    false);
        pg::spi_connect();
        TimestampTz next = store::next_due_run();
        TimestampTz sched = store::next_schedule_due();
        SPI_finish();
        if (sched != 0 && (next == 0 || sched < next)) next = sched;
        TimestampTz rate = lanes::next_rate_opening();
        if (rate != 0 && (next == 0 || rate < next)) next = rate;
        if (next != 0) shared::note_retry_due(next);
    } else {
        lanes::forget_unpark_wish();  // (kept, it ran this empty round before every claim of a 0.1 database)
    }
    commit_work_txn();
}

}  // namespace

namespace {
TimestampTz failed_until = 0;  // after a failed round: no other before this (see timer_may_run)
}  // namespace

bool timer_may_run() { return failed_until == 0 || GetCurrentTimestamp() >= failed_until; }

// A timer that fails (a schedule it cannot fire, say) must not stop the claims: report it, try again in a second --
// not at the next claim, which a wish to put parked runs back (an abort asks for it again) would otherwise bring.
void run_timer_guarded() {
    MemoryContext ctx = CurrentMemoryContext;
    PG_TRY();
    {
        run_timer();
        failed_until = 0;
    }
    PG_CATCH();
    {
        abort_work_txn(ctx);
        failed_until = GetCurrentTimestamp() + USECS_PER_SEC;
        shared::note_retry_due(failed_until);
    }
    PG_END_TRY();
}

void run_timer_if_due() {
    if (!timer_may_run()) return;
    TimestampTz now = GetCurrentTimestamp();
    if (!shared::is_due(now) && !lanes::unpark_wanted()) return;
    if (!shared::begin_timer(now)) return;  // (its due moment stays: taken once that round is over)
    if (shared::take_due() | lanes::unpark_wanted()) run_timer_guarded();
    shared::end_timer();
}

}  // namespace pw::worker
