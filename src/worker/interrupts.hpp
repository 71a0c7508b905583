// The one way the launcher and the workers wait and take their interrupts (worker_spi's discipline): latch,
// postmaster death, CHECK_FOR_INTERRUPTS, configuration reload on SIGHUP.
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// CHECK_FOR_INTERRUPTS, then a pending SIGHUP: reload the configuration and call on_reload (may be NULL).
void absorb_interrupts(void (*on_reload)());
// Sleeps on the latch for at most timeout_ms (ends the process if the postmaster dies), resets it, then
// absorb_interrupts(on_reload). No transaction may be open.
void wait_latch(long timeout_ms, void (*on_reload)());

}  // namespace pw::worker
