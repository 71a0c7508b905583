// A piece of work in a subtransaction of its own, whose failure the caller may survive (the pattern of PL/pgSQL's
// EXCEPTION blocks). The one place that begins, releases and rolls back internal subtransactions for the store's
// bookkeeping (the steps' own subtransactions, with their replays, are exec/function_step's and exec/http_step's).
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// Runs fn(arg) in a new subtransaction, with lock_timeout lowered to lock_timeout_ms while it runs (0, or a lower
// setting in force: left alone). nullptr: fn returned and the subtransaction was released into the caller's
// transaction. Otherwise the subtransaction was rolled back and its error is returned, copied into the caller's
// memory context with the error state flushed: the caller carries on, or ends with ReThrowError(). The caller's
// memory context and resource owner are current again in both cases. fn is Postgres-style code (no object with a
// destructor alive in its frames: an ERROR longjmps out of it). SPI may be connected by the caller.
ErrorData *try_subtransaction(void (*fn)(void *), void *arg, int lock_timeout_ms = 0);

}  // namespace pw::pg
