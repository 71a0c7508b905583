#include "worker/timer.hpp"

#include "pg/spi.hpp"
#include "shmem/lanes.hpp"
#include "shmem/shared.hpp"
#include "store/queue.hpp"
#include "store/put_back.hpp"
#include "store/schedules.hpp"
#include "worker/serve.hpp"

namespace pw::worker {

namespace {

// The timer (0.2 schema): runs whose not_before has come join the queue, parked runs whose lane has room again go
// back, due schedules fire; then it is set for the next of these moments. One worker does it at a time (the one
// that took the due moment and the database's lease, shared::begin_timer); a run due now is claimed in the same
// round. Without the due moment (due_round false) a round only puts parked runs back: several workers may, a slot
// freed in each of their lanes (a limited pipeline's drain; one at a time cost it 20 % of its runs/s).
void run_timer(bool due_round) {
    pgstat_report_activity(STATE_RUNNING, due_round ? "moving due runs into the queue" : "putting parked runs back");
    begin_work_txn();
    if (store::schema_version() >= 2) {
        if (due_round) store::promote_due_runs();
        store::unpark_runs();
        // Promoting and putting back are redone after a crash (the rows are still due, still parked): no need
        // to wait for the WAL flush -- unless runs of schedules were created, which must not be lost.
        if (!due_round || store::fire_due_schedules() == 0)
            (void)set_config_option("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0,
                                    false);
        TimestampTz next = 0;
        if (due_round) {
            pg::spi_connect();
            next = store::next_due_run();
            TimestampTz sched = store::next_schedule_due();
            SPI_finish();
            if (sched != 0 && (next == 0 || sched < next)) next = sched;
        }
        TimestampTz rate = lanes::next_rate_opening();
        if (rate != 0 && (next == 0 || rate < next)) next = rate;
        if (next != 0) shared::note_retry_due(next);
    } else {
        lanes::forget_unpark_wish();  // (kept, it ran this empty round before every claim of a 0.1 database)
        // (and the fresh start, which only a 0.2 round takes: kept, every last worker leaving the database asked the
        // launcher back for it)
        (void)lanes::take_fresh_start();
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
void run_timer_guarded(bool due_round) {
    MemoryContext ctx = CurrentMemoryContext;
    PG_TRY();
    {
        run_timer(due_round);
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
    bool unpark = lanes::unpark_wanted();
    // (a due moment while another worker's round runs stays: taken once that round is over)
    bool lease = shared::is_due() && shared::begin_timer();
    bool due_round = lease && shared::take_due();
    // (enabled is on here: a worker that was inside one batch while it was off never saw it off, and may take this
    // round before any process that did has noted the 'on' -- which would leave the time off without an end)
    if (due_round) shared::note_enabled();
    if (due_round) lanes::reopen_windows();
    if (due_round || unpark) run_timer_guarded(due_round);
    if (lease) shared::end_timer();
}

}  // namespace pw::worker
