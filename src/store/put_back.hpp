// Parked runs back into the queue: the runs a limit parked, once their lane has room again (the workers' timer
// round, and a session's claim_run() without workers). See shmem/lanes.hpp for what the lanes remember.
#pragma once

#include "pg/pg.hpp"

namespace pw::store {

// Puts parked runs back in the queue for lanes that have room again; returns how many. SPI not connected.
// Never waits long for a row lock: a parked run that another transaction keeps locked (a cancel_run() or a
// SELECT ... FOR UPDATE not yet committed) is left for a look a second later, and its lane's other runs go back.
int64 unpark_runs();

}  // namespace pw::store
