// DROP DATABASE, ALTER DATABASE ... RENAME / SET TABLESPACE and CREATE DATABASE ... TEMPLATE need a database
// nobody is connected to. When it is one the workers serve, they leave it first (a run one was executing is
// recovered and finishes later, as after a worker termination) and stay out until the command is over.
// And ALTER DATABASE / ALTER ROLE ... SET or RESET of default_transaction_read_only: once committed, the launcher
// forgets which databases it saw read-only (worker/read_only.hpp) and sends workers to find out again.
#pragma once

namespace pw::worker {

void install_db_guard();  // a ProcessUtility hook (from _PG_init, with shared memory)
bool holds_databases();  // this transaction keeps the workers out of a database (until it ends)
void release_held_databases();  // at the end of the transaction (commit or abort): the workers may go back
void settings_at_end(bool committed);  // at the end of the transaction: a read-only setting changed, if committed

}  // namespace pw::worker
