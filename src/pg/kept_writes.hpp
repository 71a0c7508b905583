// What the direct writes (direct_rows.hpp) need to write a table, built once per table and kept across
// transactions: each btree index's IndexInfo, with its predicate and expressions ready to evaluate, and the table's
// CHECK constraints ready to evaluate. An executor builds all of it again for every statement (ExecOpenIndices,
// ExecConstraints, ExecInsertIndexTuples); the workers write the same two tables every batch, and that rebuilding --
// a CHECK constraint parsed and planned, every partial index's predicate planned -- was ~2 % of a W1 run's CPU.
//
// Kept only while it is what the executor would build now: checked at every open against the relation cache (the
// table's index list, each index's readiness for inserts, each CHECK constraint's expression text) and the user,
// and dropped when a function changes (a predicate's or a constraint's function replaced, its EXECUTE privilege
// changed) or a type an expression coerces to (a domain's constraints are compiled in); an invalidation read while
// building counts. Not kept: other indexes than btree (GIN, BRIN, ... keep state in the IndexInfo), expressions whose
// evaluation keeps something in the executor's per-query memory (a whole-row reference's row descriptor), and
// anything while the table is already open (one executor at a time). Functions called from a kept expression keep
// their FmgrInfo across transactions, as a domain's CHECK constraints kept by the type cache do.
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// For a ResultRelInfo of a table opened with RowExclusiveLock, in estate: opens its indexes for inserting entries
// (as ExecOpenIndices(rri, false)) and sets its CHECK constraints' expressions (ri_ConstraintExprs).
void open_for_writes(ResultRelInfo *rri, EState *estate);
// Closes them (ExecCloseIndices); the kept parts stay for the next open.
void close_for_writes(ResultRelInfo *rri);

}  // namespace pw::pg
