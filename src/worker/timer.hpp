// The timer's round, done by the worker that took the due moment (shared::take_due): due runs join the queue, parked
// runs whose lane has room go back, due schedules fire, and the timer is set for the next of these moments.
#pragma once

namespace pw::worker {

// One round in a transaction of its own; a failure is reported and the round tried again in a second.
void run_timer_guarded(bool due_round);
// The timer's round if one is due and no other worker of the database runs one; or one that only puts parked runs
// back, if a lane asks for that.
void run_timer_if_due();
// False for a second after a round failed (ask before shared::take_due(), which takes the due moment).
bool timer_may_run();

}  // namespace pw::worker
