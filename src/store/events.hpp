// The event mailbox of "wait_for" steps (pipeline_worker.events): sending, and taking the oldest one.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// Takes (marks consumed by step pos, 0-based) the oldest unconsumed `event` of the run; NULL if there is none.
// Locks the run's row first, so that a send_event() either committed before (its event is found here) or waits
// until this transaction ends (and then finds the run waiting, and wakes it). The payload is copied into dest.
// SPI connected.
Jsonb *take_event(int64 run_id, const char *event, int pos, MemoryContext dest);

enum class SendResult { Stored, Finished, NotVisible };
// Stores an event for run_id, sent by role sender, unless the run is finished; wakes the run if it waits for that
// event. The run is looked up as the caller, with a fresh snapshot (row-level security: NotVisible whether or not it
// exists; for an admin, who sees every run, NotVisible means that it does not exist). SPI connected.
SendResult send_event(int64 run_id, const char *event, Jsonb *payload, Oid sender);

// The id of the run of `pipeline` the caller submitted with this idempotency key; 0 if none. SPI connected.
int64 run_by_key(const char *pipeline, const char *key, Oid submitter);

}  // namespace pw::store
