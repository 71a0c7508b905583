#include "pg/subxact.hpp"

extern "C" {
#include "utils/guc.h"
}

namespace pw::pg {

ErrorData *try_subtransaction(void (*fn)(void *), void *arg, int lock_timeout_ms) {
    MemoryContext before = CurrentMemoryContext;
    ResourceOwner owner = CurrentResourceOwner;
    ErrorData *volatile failure = nullptr;
    BeginInternalSubTransaction(nullptr);
    MemoryContextSwitchTo(before);
    PG_TRY();
    {
        // (A nest level of its own, as a function's SET clause: the setting ends with fn, committed or not -- a
        // SET LOCAL would outlive the subtransaction's release, up to the end of the caller's transaction.)
        int level = NewGUCNestLevel();
        if (lock_timeout_ms > 0 && (LockTimeout == 0 || LockTimeout > lock_timeout_ms)) {
            char value[16];
            snprintf(value, sizeof value, "%d", lock_timeout_ms);
            (void)set_config_option("lock_timeout", value, PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
        }
        fn(arg);
        AtEOXact_GUC(true, level);
        ReleaseCurrentSubTransaction();
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(before);
        failure = CopyErrorData();
        FlushErrorState();
        RollbackAndReleaseCurrentSubTransaction();  // (undoes the nest level above with the rest)
    }
    PG_END_TRY();
    MemoryContextSwitchTo(before);
    CurrentResourceOwner = owner;
    return failure;
}

}  // namespace pw::pg
