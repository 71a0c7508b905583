#include "pg/spi.hpp"

#include "pg/kept_plans.hpp"

extern "C" {
#include "storage/lmgr.h"
}

namespace pw::pg {

void spi_connect() {
    if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "pipeline_worker: SPI_connect failed");
}

Datum col(uint64 row, int colno, bool *isnull) {
    return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, colno, isnull);
}

// The tables' owner, cached until pg_class or pg_namespace changes (an ALTER ... OWNER, DROP/CREATE EXTENSION;
// also within the transaction that makes the change, and undone with it).
namespace {

Oid cached_tables_owner = InvalidOid;
Oid cached_run_table = InvalidOid;
uint64 owner_invalidations = 0;

void forget_tables_owner(Datum, int, uint32) {
    cached_tables_owner = InvalidOid;
    cached_run_table = InvalidOid;
    owner_invalidations++;
}

void register_callbacks() {
    static bool callbacks = false;
    if (!callbacks) {
        CacheRegisterSyscacheCallback(RELOID, forget_tables_owner, 0);
        CacheRegisterSyscacheCallback(NAMESPACEOID, forget_tables_owner, 0);
        callbacks = true;
    }
}

}  // namespace

Oid run_table() {
    register_callbacks();
    if (OidIsValid(cached_run_table)) return cached_run_table;
    uint64 seen = owner_invalidations;  // an invalidation read during the lookups makes its result stale
    Oid nsp = get_namespace_oid("pipeline_worker", true);
    Oid rel = OidIsValid(nsp) ? get_relname_relid("runs", nsp) : InvalidOid;
    if (owner_invalidations == seen) cached_run_table = rel;
    return rel;
}

void lock_run_table_first() {
    // (a stale OID -- the extension dropped since -- locks nothing that exists; the statements after it fail as they
    // would have)
    Oid rel = run_table();
    if (OidIsValid(rel)) LockRelationOid(rel, AccessShareLock);
}

Oid tables_owner() {
    register_callbacks();
    if (OidIsValid(cached_tables_owner)) return cached_tables_owner;
    uint64 seen = owner_invalidations;  // an invalidation read during the lookups makes its result stale
    Oid nsp = get_namespace_oid("pipeline_worker", false);
    Oid rel = get_relname_relid("runs", nsp);
    if (!OidIsValid(rel)) elog(ERROR, "pipeline_worker.runs does not exist");
    HeapTuple tup = SearchSysCache1(RELOID, ObjectIdGetDatum(rel));
    if (!HeapTupleIsValid(tup)) elog(ERROR, "cache lookup failed for relation %u", rel);
    Oid owner = ((Form_pg_class)GETSTRUCT(tup))->relowner;
    ReleaseSysCache(tup);
    if (owner_invalidations == seen) cached_tables_owner = owner;
    return owner;
}

int exec_as_owner(SPIPlanPtr plan, Datum *values, const char *nulls, bool read_only, long count) {
    Oid saved_user;
    int saved_sec;
    GetUserIdAndSecContext(&saved_user, &saved_sec);
    SetUserIdAndSecContext(tables_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
    // An error restores the user at (sub)transaction abort.
    int rc = exec_shaped(plan, values, nulls, read_only, count);
    SetUserIdAndSecContext(saved_user, saved_sec);
    if (rc < 0) elog(ERROR, "pipeline_worker: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    return rc;
}

int run_as_owner(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                 bool read_only) {
    return exec_as_owner(prepare(cache, sql, nargs, types), values, nulls, read_only, 0);
}

int run_as_caller(SPIPlanPtr *cache, const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
                  bool read_only) {
    int rc = exec_shaped(prepare(cache, sql, nargs, types), values, nulls, read_only, 0);
    if (rc < 0) elog(ERROR, "pipeline_worker: SPI_execute_plan failed: %s", SPI_result_code_string(rc));
    return rc;
}

ArrayColumns *array_columns(int nrows, int ncols, const Oid *elem_types) {
    ArrayColumns *a = static_cast<ArrayColumns *>(palloc(sizeof(ArrayColumns)));
    a->nrows = nrows;
    a->ncols = ncols;
    a->elem_types = elem_types;
    a->values = static_cast<Datum **>(palloc(sizeof(Datum *) * ncols));
    a->nulls = static_cast<bool **>(palloc(sizeof(bool *) * ncols));
    for (int c = 0; c < ncols; c++) {
        a->values[c] = static_cast<Datum *>(palloc0(sizeof(Datum) * (nrows > 0 ? nrows : 1)));
        a->nulls[c] = static_cast<bool *>(palloc0(sizeof(bool) * (nrows > 0 ? nrows : 1)));
    }
    return a;
}

void column_arrays(const ArrayColumns *a, Datum *out) {
    for (int c = 0; c < a->ncols; c++) out[c] = make_array(a->values[c], a->nulls[c], a->nrows, a->elem_types[c]);
}

Datum make_array(Datum *values, bool *nulls, int n, Oid elem_type) {
    int16 typlen;
    bool typbyval;
    char typalign;
    get_typlenbyvalalign(elem_type, &typlen, &typbyval, &typalign);
    int dims[1] = {n};
    int lbs[1] = {1};
    return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, elem_type, typlen, typbyval, typalign));
}

Datum int8_array(const int64 *values, int n) {
    Datum *d = static_cast<Datum *>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) d[i] = Int64GetDatum(values[i]);
    return make_array(d, nullptr, n, INT8OID);
}

void io_cast_init(IoCast *c, Oid from, Oid to, int32 typmod) {
    Oid out;
    bool varlena;
    getTypeOutputInfo(from, &out, &varlena);
    fmgr_info(out, &c->out);
    Oid in;
    getTypeInputInfo(to, &in, &c->ioparam);
    fmgr_info(in, &c->in);
    c->typmod = typmod;
}

Datum io_cast(IoCast *c, Datum v) {
    return InputFunctionCall(&c->in, OutputFunctionCall(&c->out, v), c->ioparam, c->typmod);
}

}  // namespace pw::pg
