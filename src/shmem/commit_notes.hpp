// What the current transaction did that other processes must hear of once it commits: runs created (wake that
// many idle workers), runs finished (wake wait_run callers), pipelines created or dropped (every backend's
// pipeline cache is stale). Noted as it happens; published at commit, forgotten at abort (module.cpp's
// transaction callback).
#pragma once

namespace pw::notes {

void runs_created(int n = 1);
void wake_all_workers();  // e.g. runs made claimable outside the extension's functions
void runs_finished();
void pipelines_changed();

void publish();  // at commit
void forget();   // at abort

}  // namespace pw::notes
