// Rows written without a statement: inserted, or updated or deleted at a known row version, through the executor's
// own routines for one row (execReplication.c: constraints, the heap, the index entries), as logical replication's
// apply worker writes them. For the two writes every run makes many times (step rows, the run's outcome), the parse-free part of a
// statement -- plan start-up, a function scan per column, the join, the projection, whole-row values for the
// re-check -- cost more than the row itself.
//
// Only where a statement would do nothing more: a plain table without triggers or rules for the command, generated
// columns or partitions, on which the tables' owner (the statements' user) has the privileges and no row-level
// security applies to it, in a transaction that is not read-only (for a delete also: no inheritance children).
// Otherwise begin() returns nullptr and the caller writes with its statement. Constraints are checked and every index
// gets its entries as an INSERT or UPDATE would (a delete leaves them to VACUUM); everything runs as the tables'
// owner.
// In a transaction; the caller's earlier writes are visible to fetch().
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

struct DirectRows;

// Opens relid for CMD_INSERT, CMD_UPDATE or CMD_DELETE; for an update, `updated` names the columns the caller changes (NULL-
// terminated: which indexes are told the row's key is unchanged). nullptr: not a table this may write (see above).
DirectRows *direct_begin(Oid relid, CmdType cmd, const char *const *updated);
// The table's row descriptor; the attribute number (0-based) of column `name`, -1 if absent.
TupleDesc direct_desc(const DirectRows *d);
int direct_column(const DirectRows *d, const char *name);
// The attribute number (0-based) of the live column `name` of desc, -1 if absent.
int attribute_of(TupleDesc desc, const char *name);
// The row version at *tid if this command's snapshot sees it (all columns deformed in the slot), else nullptr. Valid
// until the next fetch.
TupleTableSlot *direct_fetch(DirectRows *d, ItemPointer tid);
// Replaces the version just fetched by one with these values (natts of them). false: not written, the version
// changed since the fetch (not by this command) -- which cannot happen to a version this transaction holds a row
// lock on; the caller then finds the row another way.
bool direct_update(DirectRows *d, TupleTableSlot *fetched, Datum *values, bool *nulls);
// Deletes the row version at *tid (opened for CMD_DELETE), as a DELETE statement would with SKIP LOCKED if there
// were such a thing: false, nothing deleted, if that version was changed or deleted since, or is locked now, by
// another transaction (no wait, no newer version followed). Its index entries stay for VACUUM, as a statement's.
bool direct_delete(DirectRows *d, ItemPointer tid);
// Inserts a row (its constraints checked now). Rows are written together, heap first, then their index entries
// (as COPY does), at direct_end or once many are pending: the values must stay valid until then.
void direct_insert(DirectRows *d, Datum *values, bool *nulls);
// Writes the rows pending and closes the table; the rows written are visible to the statements after it.
void direct_end(DirectRows *d);

}  // namespace pw::pg
