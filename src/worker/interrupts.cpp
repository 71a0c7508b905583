#include "worker/interrupts.hpp"

namespace pw::worker {

void absorb_interrupts(void (*on_reload)()) {
    CHECK_FOR_INTERRUPTS();
    if (ConfigReloadPending) {
        ConfigReloadPending = false;
        ProcessConfigFile(PGC_SIGHUP);
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
