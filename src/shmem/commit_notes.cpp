#include "shmem/commit_notes.hpp"

#include <climits>

#include "shmem/shared.hpp"

namespace pw::notes {

namespace {

int created = 0;
bool finished = false;
bool pipelines = false;

}  // namespace

void runs_created(int n) {
    if (n > 0 && created < INT_MAX / 2) created += n;
}

void wake_all_workers() { created = INT_MAX / 2; }

void runs_finished() { finished = true; }

void pipelines_changed() { pipelines = true; }

void publish() {
    if (created > 0) shared::wake_workers(created);
    if (finished) shared::broadcast_run_done();
    if (pipelines) shared::bump_pipelines_generation();
    forget();
}

void forget() {
    created = 0;
    finished = false;
    pipelines = false;
}

}  // namespace pw::notes
