// SQL-language step functions, called through a kept plan of `SELECT fn($1)`. PostgreSQL inlines a simple one (a
// single SELECT of an expression, not SECURITY DEFINER, no SET clause) into that plan, so its body is parsed and
// planned once per backend -- called directly, fmgr_sql plans it again in every new subtransaction, that is for
// every step. A function found not to be inlined is called directly from then on.
#pragma once

#include "pg/pg.hpp"

namespace pw::exec {

// Calls fn -- a SQL-language function -- with arg through its kept plan, unless it was found not to be inlined:
// then returns false (and does nothing), and the caller calls it directly. The caller has checked EXECUTE and set the identity; errors
// propagate as from a direct call. *result is copied into CurrentMemoryContext.
bool call_sql_step(Oid fn, Datum arg, Datum *result, bool *isnull);

}  // namespace pw::exec
