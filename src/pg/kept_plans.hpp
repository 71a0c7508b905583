// Statements of the extension, prepared once, kept for the backend's life and planned into one shape whatever
// the table statistics say. SPI must be connected to use them.
#pragma once

#include "pg/pg.hpp"

namespace pw::pg {

// Prepares sql once (kept in *cache), parsed with pg_catalog alone as search path. A statement may name the
// only indexes the planner may use for tables of schema pipeline_worker, in a comment anywhere in its text:
//   /* pw_indexes: runs.runs_pending_idx r.runs_pkey pipelines_id_key */
// Names are separated by spaces; "alias.index" applies to the occurrence of the table with that alias (or
// name) in the statement only. A table occurrence none of whose indexes is named for it keeps all of them.
SPIPlanPtr prepare(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types);

// Executes a kept plan under the catalog-only search path; a plan that is (re)built here is built under the
// planner settings and index restrictions that leave one shape (see kept_plans.cpp). Returns the SPI code.
int exec_shaped(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count);

// Pushes pg_catalog alone as the search path, the one the statements are parsed and run under (PopOverrideSearchPath
// ends it; an abort does too): for work done without a statement that must resolve names as they do.
void push_catalog_only_path();

// Installs the planner hook that applies the index restrictions (from _PG_init, once per backend).
void install_plan_hooks();

}  // namespace pw::pg
