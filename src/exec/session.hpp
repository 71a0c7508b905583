// Runs executed by a session (claim_run() + execute_run()), not by a worker: the SQL path, and the session's
// registration so that cancel_run can interrupt a step it executes.
#pragma once

#include "pg/pg.hpp"
#include "shmem/shared.hpp"

namespace pw::exec {

// Checks that this backend claimed run_id, executes it in the caller's transaction and writes its rows.
// Returns the status it ends in (a run status, as text). ERROR if not claimed here.
const char *execute_run(int64 run_id);

// A session is about to execute a step of run_id: registers it for cancel_run (and installs the session's guarded
// SIGINT handler once). Returns the entry to clear with session_step_end, nullptr if unavailable.
shared::SessionExec *session_step_begin(int64 run_id);
void session_step_end(shared::SessionExec *entry);

}  // namespace pw::exec
