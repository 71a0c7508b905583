#include "worker/interrupts.hpp"

#include "shmem/gucs.hpp"
#include "shmem/shared.hpp"

namespace pw::worker {

void absorb_interrupts(void (*on_reload)()) {
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
        ConfigReloadPending = false;
        bool was_enabled = guc::enabled;
        ProcessConfigFile(PGC_SIGHUP);
        // (the first process to see it, launcher or worker, notes the moment before any timer round of its own: slots
        // of a schedule due while it was off count as missed while down -- not fired all at once now)
        if (!was_enabled && guc::enabled) shared::note_enabled();
        if (was_enabled && !guc::enabled) shared::note_disabled();
        if (on_reload != nullptr) on_reload();
    }
}

void wait_latch(long timeout_ms, void (*on_reload)()) {
    Assert(!IsTransactionState());
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms, PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    absorb_interrupts(on_reload);
}

}  // namespace pw::worker
