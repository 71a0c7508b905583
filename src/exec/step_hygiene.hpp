// What a step executed by a background worker must not leave in the worker process, where whoever runs next --
// another run, possibly another role's, often in the same transaction -- would find it. Some of it PostgreSQL
// refuses inside the step's security-restricted operation (PREPARE, LISTEN, temporary tables, SET ROLE);
// function_step.cpp fails a step that creates other temporary objects; the rest is cleaned here. A session's
// execute_run keeps all of it: that session is its caller's.
#pragma once

#include "pg/pg.hpp"

namespace pw::exec {

// At the end of a step in a worker that succeeded, inside its subtransaction (an error here is the step's): the
// cursors and large-object descriptors it left open closed -- they would pass to the worker's transaction, shared
// with the next runs. (A failed step's are closed by its subtransaction's rollback.)
void close_step_leftovers();
// After every step in a worker, whether it succeeded or not: session advisory locks released.
void leave_step_clean();

// Before a step of another role than the last one's runs in this worker: the sequence state of the steps before
// (lastval(), currval(), cached values) forgotten, random() reseeded, dblink's connections closed. Only then: the
// same role keeps its sequences' caches and its connections.
void before_another_role();

// A ProcessUtility hook (installed once, at preload): inside a step in a worker, SET CONSTRAINTS fails (0A000). Its
// setting lasts until the transaction ends -- over the later steps and runs of the worker's batch -- and a deferred
// constraint can never fire inside a step's security-restricted operation anyway.
void install_step_guard();

}  // namespace pw::exec
