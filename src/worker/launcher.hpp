// The launcher background worker (registered from _PG_init when the library is preloaded).
#pragma once

namespace pw::worker {

void register_launcher();

}  // namespace pw::worker
