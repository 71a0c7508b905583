// A database whose transactions are read-only by default (default_transaction_read_only: a managed service's answer
// to a nearly full disk, an administrator's maintenance window). A worker writes nothing there: it claims nothing,
// runs no upkeep, and says so once, rather than failing every round with "cannot execute ... in a read-only
// transaction".
#pragma once

#include "pg/pg.hpp"

namespace pw::worker {

// Whether this worker's transactions are read-only by default now (no transaction open). Logs once when that starts
// and once when it ends. A change in postgresql.conf reaches the worker with the reload (SIGHUP).
// While it is, the database's shared-memory entry says so (the launcher does not count its queued runs, due
// moments or sweeps as work: its workers would not do it), for 5 minutes past the paused workers' last look: until a
// change of the settings (forget_read_only_notes) or a resume or leave ends it sooner.
bool read_only_now(int slot_no);
// Whether this worker paused (read_only_now said true last).
bool read_only_paused();

// While read-only: whether the setting came from ALTER DATABASE / ALTER ROLE ... SET and is no longer there. Those
// apply when a session starts: the worker must leave for a new one to see the change (the launcher starts it).
// Opens and commits a transaction of its own; false after an error (reported).
bool read_only_setting_gone();

// This worker leaves its database for a new session: the entry no longer says read-only (the new session finds out).
void read_only_leaving();

// A paused worker's look, every second: the entry's note renewed -- false when it was forgotten (a setting may have
// changed): then it is noted again only after a look at the settings (note_read_only), so that a worker whose session
// is older than the change does not bring it back and leave it behind.
bool renew_read_only_note();
void note_read_only();

// Forgets what the entry of database dboid (InvalidOid: every database) says: a setting the workers' sessions take
// may have changed (a reload; ALTER DATABASE / ALTER ROLE ... SET or RESET committed). A worker sent there finds out.
void forget_read_only_notes(Oid dboid);

}  // namespace pw::worker
