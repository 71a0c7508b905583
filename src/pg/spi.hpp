// SPI helpers: connecting, executing the extension's kept statements as the tables' owner or as the caller,
// reading columns, and passing a batch of rows as arrays (read back with ROWS FROM (unnest($1), ...)).
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// SPI_connect, ERROR on failure.
void spi_connect();

// Column colno (1-based) of row `row` of SPI_tuptable.
Datum col(uint64 row, int colno, bool *isnull);

// Owner of the extension's tables (cached until pg_class or pg_namespace changes): bookkeeping runs as it.
Oid tables_owner();

// The workers' lock order: every transaction of theirs locks pipeline_worker.runs (AccessShareLock, nothing if the
// extension is not there) before any other table of the extension, right after it starts and before its snapshot.
// DDL that begins with the run table (ALTER EXTENSION ... UPDATE's script) then either waits for a worker's
// transaction holding nothing it needs next, or makes the worker wait holding nothing: never a deadlock. (Until
// 2026-12-05 a worker's transaction in the middle of a run wrote step rows first, then the run: the update, holding
// the runs, waited for the step rows -- deadlock detected, the update rolled back.) Later stronger locks on the table
// go ahead of DDL waiting for it (the lock manager lets a holder through). In a transaction, not SPI connected.
void lock_run_table_first();
// pipeline_worker.runs' OID (InvalidOid without the extension), cached like tables_owner(). In a transaction.
Oid run_table();

// Executes a kept plan (pg/kept_plans.hpp) as the tables' owner, whatever role the caller or step is; ERROR if
// SPI fails. Returns the SPI result code.
int exec_as_owner(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count);
// Prepares sql once (kept in *cache) and executes it as the tables' owner / as the current user (row-level
// security applies). SPI must be connected.
int run_as_owner(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                 bool read_only);
int run_as_caller(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                  bool read_only);

// A batch of rows passed as one array per column. Allocated in CurrentMemoryContext.
struct ArrayColumns {
    int nrows;
    int ncols;
    const Oid *elem_types;
    Datum **values;  // [col][row]
    bool **nulls;    // [col][row]
};
ArrayColumns *array_columns(int nrows, int ncols, const Oid *elem_types);
inline void set_cell(ArrayColumns *a, int row, int col, Datum v) { a->values[col][row] = v; }
inline void set_null(ArrayColumns *a, int row, int col) { a->nulls[col][row] = true; }
// The columns as arrays: out[0..ncols-1].
void column_arrays(const ArrayColumns *a, Datum *out);
// A one-dimensional array of n values of `elem_type` (nulls may be NULL).
Datum make_array(Datum *values, bool *nulls, int n, Oid elem_type);
Datum int8_array(const int64 *values, int n);

// A value of type `from` as a value of type `to` (with typmod), through their text forms: what a cast by I/O does.
// For a column whose type the tables' owner changed, written without the assignment a statement would make.
struct IoCast {
    FmgrInfo out, in;
    Oid ioparam;
    int32 typmod;
};
void io_cast_init(IoCast *c, Oid from, Oid to, int32 typmod);
Datum io_cast(IoCast *c, Datum v);

}  // namespace pw::pg
