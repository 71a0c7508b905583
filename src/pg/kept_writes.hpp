// What the direct writes (direct_rows.hpp) need to write a table, built once per table and kept across
// transactions: each btree index's IndexInfo, with its predicate and expressions ready to evaluate, and the table's
// CHECK constraints ready to evaluate. An executor builds all of it again for every statement (ExecOpenIndices,
// ExecConstraints, ExecInsertIndexTuples); the workers write the same two tables every batch, and that rebuilding --
// a CHECK constraint parsed and planned, every partial index's predicate planned -- was ~2 % of a W1 run's CPU.
//
// Kept only while it is what the executor would build now: checked at every open against the relation cache (the
// table's index list, each index's readiness for inserts, each CHECK constraint's expression text), and dropped when
// a function changes (a predicate's or a constraint's function replaced). Other indexes (GIN, BRIN, ...) get a fresh
// IndexInfo every time, as their access methods keep state in it.
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// For a ResultRelInfo of a table opened with RowExclusiveLock, in estate: opens its indexes for inserting entries
// (as ExecOpenIndices(rri, false)) and sets its CHECK constraints' expressions (ri_ConstraintExprs).
void open_for_writes(ResultRelInfo *rri, EState *estate);
// Closes them (ExecCloseIndices); the kept parts stay for the next open.
void close_for_writes(ResultRelInfo *rri);

}  // namespace pw::pg
