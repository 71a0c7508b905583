// Retries that wait while other requests of their run are out. A step (or map task) that fails with attempts left
// while its run has requests out cannot send the run back to the queue: it is tried again when an answer resumes the
// run. Until 2026-12-07 that was at once, whatever its back-off or the server's Retry-After said (acceptance
// walk-through: a retry_delay_ms of 4 s was retried after 1.5 s, when the other branch answered). Its earliest time
// is now kept in this process -- the run stays with it while its requests are out -- and a resume before that time
// leaves the step for later. A run that goes back to the queue takes the time left as its own delay; a process that
// exits forgets its holds (its runs are recovered, and retried at once, as before).
#pragma once

#include "pg/pg.hpp"

namespace pw::exec {

// Attempt `attempt` of step pos (task: a map task's index, -1 for a step) of the run failed: the next one not before
// delay_ms from now.
void hold_retry(int64 run_id, int pos, int task, int attempt, long delay_ms);
// The milliseconds left before the attempt after `attempt` of (run, pos, task) may start: 0 when it may now (a hold
// that is over is forgotten).
long held_retry_ms(int64 run_id, int pos, int task, int attempt);

}  // namespace pw::exec
