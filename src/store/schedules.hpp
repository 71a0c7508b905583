// Cron schedules: their next slot (core/cron in the schedule's time zone, through Postgres' tz database) and the
// timer's firing of due schedules -- one run per (schedule, slot), made certain by the run's idempotency key and by
// updating the schedule in the transaction that creates the run.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// The first slot of `cron` in zone `timezone` strictly after `after`; 0 if there is none. ERROR 22023 (naming the
// field) for an invalid cron text or an unknown time zone.
TimestampTz next_schedule_slot(const char *cron, const char *timezone, TimestampTz after);

// Fires the schedules that are due (at most a bounded number of slots per call); returns the runs created.
// SPI not connected.
int64 fire_due_schedules();
// The earliest next_run_at of an active schedule (0: none). SPI connected.
TimestampTz next_schedule_due();

}  // namespace pw::store
