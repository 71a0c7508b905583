// Submitting runs: create_run (0.1's three arguments, 0.2's priority, run_at and keys) and create_runs.
#include <algorithm>

#include "api/access.hpp"
#include "pg/kept_plans.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/commit_notes.hpp"
#include "shmem/metrics.hpp"
#include "store/queue.hpp"

extern "C" {
#include "catalog/pg_collation.h"
#include "utils/timestamp.h"
PG_FUNCTION_INFO_V1(pw_create_run);
PG_FUNCTION_INFO_V1(pw_create_runs);
}

using namespace pw;
using namespace pw::api;
using pg::col;

namespace {

SPIPlanPtr plan_insert_run_v1, plan_target, plan_target_v1, plan_insert_run, plan_existing_run, plan_insert_runs, plan_insert_runs_nokey, plan_existing_runs;

Datum empty_object() { return DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")); }

// What create_run(s) checked about its arguments.
struct Submission {
    char *pipeline;
    int64 pipeline_id;
    Oid owner;
    bool paused;
    Datum metadata;
    int priority;
    bool has_run_at;
    TimestampTz run_at;
    // Before the INSERT, which sets not_before for a run_at past its own clock_timestamp(): a run_at after this
    // moment is told to the timer (note_submitted) -- taken after, a run_at in between got not_before with no timer
    // set, and waited for an unrelated round.
    TimestampTz checked_at;
    int schema;  // store::schema_version()
};

int checked_priority(FunctionCallInfo fcinfo, int argno) {
    if (PG_NARGS() <= argno || PG_ARGISNULL(argno)) return 0;
    int32 p = PG_GETARG_INT32(argno);
    if (p < -32768 || p > 32767)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("priority %d is out of range", p),
                        errhint("A priority is between -32768 and 32767; higher runs first, the default is 0.")));
    return p;
}

void check_key(const char *key, const char *what) {
    size_t len = strlen(key);
    if (len == 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s must not be empty", what),
                        errhint("Pass NULL for no key.")));
    if (len > kMaxKeyBytes)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s is %zu bytes long, more than %d", what, len, kMaxKeyBytes),
                        errhint("Use a shorter key, for example a hash of the request.")));
}

// ERROR 42501: the caller may not submit to the pipeline -- or, for a role that is not an admin, it does not exist:
// the same answer, so that nobody learns another tenant's pipeline names (admins get 42704 for a missing one).
void refuse_submitter(const Submission *s) {
    ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                    errmsg("permission denied to submit runs to pipeline \"%s\"", s->pipeline),
                    errdetail("Only its owner, the roles it was granted to and members of pipeline_worker_admin may, "
                              "if it exists."),
                    errhint("Its owner can allow it with pipeline_worker.grant_pipeline('%s', '%s').", s->pipeline,
                            pg::role_name(GetUserId()))));
}

// ERROR 42501 unless the caller may submit to the pipeline owned by `owner`.
void require_submitter(const Submission *s, Oid owner) {
    if (!may_submit(s->pipeline, owner)) refuse_submitter(s);
}

// Locks the pipeline against a concurrent drop (and pause), checks the caller may submit to it.
void prepare_submission(Submission *s) {
    Oid types[1] = {TEXTOID};
    Datum v[1] = {CStringGetTextDatum(s->pipeline)};
    if (!lock_pipeline(s->pipeline, ShareLock, false)) {
        // A pause, alter or drop of the pipeline is in progress: a caller that may not submit to it is refused at
        // once, not queued behind the owner's transaction first (until 2026-12-05). Checked again after the wait.
        static SPIPlanPtr plan_owner_first = nullptr;
        pg::run_as_owner(&plan_owner_first, "SELECT owner::oid FROM pipeline_worker.pipelines WHERE name = $1", 1,
                         types, v, nullptr, false);
        bool isnull;
        if (SPI_processed == 1) require_submitter(s, DatumGetObjectId(col(0, 1, &isnull)));
        lock_pipeline(s->pipeline, ShareLock);
    }
    s->schema = store::schema_version();
    if (s->schema >= 2)
        pg::run_as_owner(&plan_target, "SELECT owner::oid, id, paused FROM pipeline_worker.pipelines WHERE name = $1",
                         1, types, v, nullptr, false);
    else  // 0.1: no pause
        pg::run_as_owner(&plan_target_v1, "SELECT owner::oid, id, false FROM pipeline_worker.pipelines WHERE name = $1",
                         1, types, v, nullptr, false);
    if (SPI_processed == 0 && !pg::is_admin(GetUserId())) refuse_submitter(s);
    if (SPI_processed == 0)
        ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT), errmsg("pipeline \"%s\" does not exist", s->pipeline),
                        errhint("Create it with pipeline_worker.create_pipeline().")));
    bool isnull;
    s->owner = DatumGetObjectId(col(0, 1, &isnull));
    s->pipeline_id = DatumGetInt64(col(0, 2, &isnull));
    s->paused = DatumGetBool(col(0, 3, &isnull));
    require_submitter(s, s->owner);
}

// At commit: wake workers, set the timer for a future run_at, move the claim hint for a high priority. The runs are
// queued at keys up to that of max_id (the queue's known end moves up to there).
void note_submitted(const Submission &s, int n, int64 max_id) {
    if (s.has_run_at && s.run_at > s.checked_at) {
        notes::due_at(s.run_at);
    } else {
        notes::runs_created_upto(n, static_cast<uint64>(store::queue_key(s.priority, max_id)) + 1);
        notes::run_queued_with_priority(s.priority);
    }
}

void raise_key_conflict(const char *key, int64 existing) {
    ereport(ERROR, (errcode(ERRCODE_UNIQUE_VIOLATION),
                    errmsg("idempotency key \"%s\" is already used with another input", key),
                    errdetail("Run %lld was submitted with this key and a different input.", (long long)existing),
                    errhint("Reuse a key only to submit the same request again; use a new key for a new request.")));
}

// 0.1's create_run, for a database whose extension has not been updated yet.
int64 create_run_v1(const Submission &s, Datum input) {
    Oid types[6] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID};
    Datum v[6] = {CStringGetTextDatum(s.pipeline), input, s.metadata, ObjectIdGetDatum(GetUserId()),
                  Int64GetDatum(s.pipeline_id), ObjectIdGetDatum(s.owner)};
    pg::run_as_owner(&plan_insert_run_v1,
                     "INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                     " pipeline_owner) VALUES ($1, $2, $3, $4::regrole, $5, $6::regrole) RETURNING id",
                     6, types, v, nullptr, false);
    bool isnull;
    return DatumGetInt64(col(0, 1, &isnull));
}

}  // namespace

extern "C" Datum pw_create_run(PG_FUNCTION_ARGS) {
    require_writable("create_run");
    Submission s;
    s.pipeline = checked_name(fcinfo, 0, "pipeline name");
    Datum input = PG_ARGISNULL(1) ? empty_object() : PG_GETARG_DATUM(1);
    s.metadata = PG_ARGISNULL(2) ? empty_object() : PG_GETARG_DATUM(2);
    s.priority = checked_priority(fcinfo, 3);
    s.has_run_at = PG_NARGS() > 4 && !PG_ARGISNULL(4);
    s.run_at = s.has_run_at ? PG_GETARG_TIMESTAMPTZ(4) : 0;
    s.checked_at = GetCurrentTimestamp();
    if (s.has_run_at && TIMESTAMP_NOT_FINITE(s.run_at))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("run_at must be a finite time"),
                        errhint("Pass NULL to start the run as soon as possible.")));
    char *key = PG_NARGS() > 5 && !PG_ARGISNULL(5) ? text_to_cstring(PG_GETARG_TEXT_PP(5)) : nullptr;
    char *ckey = PG_NARGS() > 6 && !PG_ARGISNULL(6) ? text_to_cstring(PG_GETARG_TEXT_PP(6)) : nullptr;
    if (key != nullptr) check_key(key, "idempotency_key");
    if (ckey != nullptr && ckey[0] == '\0')
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("concurrency_key must not be empty"),
                        errhint("Pass NULL for no key.")));
    pg::spi_connect();
    prepare_submission(&s);
    int64 id;
    if (s.schema < 2) {
        id = create_run_v1(s, input);
    } else {
        Oid types[11] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID, INT4OID, TIMESTAMPTZOID, TEXTOID,
                         TEXTOID, BOOLOID};
        Datum v[11] = {CStringGetTextDatum(s.pipeline), input, s.metadata, ObjectIdGetDatum(GetUserId()),
                       Int64GetDatum(s.pipeline_id), ObjectIdGetDatum(s.owner), Int32GetDatum(s.priority),
                       TimestampTzGetDatum(s.run_at), key ? CStringGetTextDatum(key) : 0,
                       ckey ? CStringGetTextDatum(ckey) : 0, BoolGetDatum(s.paused)};
        char nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', s.has_run_at ? ' ' : 'n', key ? ' ' : 'n',
                          ckey ? ' ' : 'n', ' '};
        for (;;) {
            // A concurrent insert of the same key makes this one wait for it: if it commits, nothing is inserted
            // here and its run is returned below; if it rolls back, this insert goes ahead.
            pg::run_as_owner(&plan_insert_run,
                             "INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                             " pipeline_owner, priority, run_at, not_before, idempotency_key, concurrency_key, parked)"
                             " VALUES ($1, $2, $3, $4::regrole, $5, $6::regrole, $7, $8,"
                             "  CASE WHEN $8 > pg_catalog.clock_timestamp() THEN $8 END, $9, $10, CASE WHEN $11 THEN 3 END)"
                             " ON CONFLICT (pipeline_id, submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL"
                             " DO NOTHING RETURNING id",
                             11, types, v, nulls, false);
            bool isnull;
            if (SPI_processed == 1) {
                id = DatumGetInt64(col(0, 1, &isnull));
                note_submitted(s, 1, id);
                metrics::runs_created(s.pipeline);
                break;
            }
            Oid et[4] = {INT8OID, OIDOID, TEXTOID, JSONBOID};
            Datum ev[4] = {v[4], v[3], v[8], input};
            pg::run_as_owner(&plan_existing_run,
                             "SELECT id, input = $4 FROM pipeline_worker.runs"
                             " WHERE pipeline_id = $1 AND submitted_by = $2::regrole AND idempotency_key = $3",
                             4, et, ev, nullptr, false);
            if (SPI_processed == 0) continue;  // deleted in between (retention): insert again
            id = DatumGetInt64(col(0, 1, &isnull));
            if (!DatumGetBool(col(0, 2, &isnull))) raise_key_conflict(key, id);
            break;
        }
    }
    SPI_finish();
    if (s.schema < 2) {
        notes::runs_created();
        metrics::runs_created(s.pipeline);
    }
    PG_RETURN_INT64(id);
}

namespace {

// A key array argument: NULL, or as many elements as inputs (NULL elements allowed), each a valid key.
Datum checked_keys(FunctionCallInfo fcinfo, int argno, int n, const char *what, bool idempotency) {
    if (PG_ARGISNULL(argno)) return (Datum)0;
    ArrayType *a = PG_GETARG_ARRAYTYPE_P(argno);
    int len = ARR_NDIM(a) == 0 ? 0 : ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
    if (ARR_NDIM(a) > 1)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s must be a one-dimensional array, not of %d dimensions", what, ARR_NDIM(a)),
                        errhint("Give one key per input (NULL for none), in the same order, or NULL for no keys.")));
    if (len != n)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("%s has %d element(s) but inputs has %d", what, len, n),
                        errhint("Give one key per input (NULL for none), in the same order, or NULL for no keys.")));
    Datum *elems;
    bool *nulls;
    int count;
    deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &count);
    for (int i = 0; i < count; i++) {
        if (nulls[i]) continue;
        char *k = TextDatumGetCString(elems[i]);
        if (idempotency) check_key(k, psprintf("%s[%d]", what, i + 1));
        else if (k[0] == '\0')
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s[%d] must not be empty", what, i + 1),
                            errhint("Use NULL for no key.")));
    }
    return PointerGetDatum(a);
}

}  // namespace

namespace {

// create_runs: the elements (1-based ordinals `missing`) whose idempotency key an existing run holds get that run's
// id in ids[] (n elements, those of the runs inserted set) -- unless its input differs (23505, as create_run). SPI
// connected.
void existing_runs(int64 *ids, int n, const int64 *missing, int nmissing, Datum pipeline_id, Datum submitter,
                   Datum inputs, Datum keys) {
    Oid mt[5] = {INT8OID, OIDOID, JSONBOID, TEXTARRAYOID, INT8ARRAYOID};
    Datum mv[5] = {pipeline_id, submitter, inputs, keys, pg::int8_array(missing, nmissing)};
    pg::run_as_owner(&plan_existing_runs,
                     "SELECT e.ord, r.id, r.input = e.input, e.key FROM ROWS FROM (pg_catalog.jsonb_array_elements($3),"
                     "   pg_catalog.unnest($4)) WITH ORDINALITY AS e(input, key, ord)"
                     " JOIN pipeline_worker.runs r ON r.pipeline_id = $1 AND r.submitted_by = $2::regrole"
                     "   AND r.idempotency_key = e.key"
                     " WHERE e.ord = ANY ($5)",
                     5, mt, mv, nullptr, false);
    if (SPI_processed != static_cast<uint64>(nmissing))
        ereport(ERROR, (errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
                        errmsg("a run holding one of the idempotency keys was deleted meanwhile"),
                        errhint("Call create_runs again.")));
    bool isnull;
    for (uint64 r = 0; r < SPI_processed; r++) {  // (before ids[] gets any existing run's id)
        if (DatumGetBool(col(r, 3, &isnull))) continue;
        int64 ord = DatumGetInt64(col(r, 1, &isnull));
        int64 id = DatumGetInt64(col(r, 2, &isnull));
        const char *key = TextDatumGetCString(col(r, 4, &isnull));
        // the run was inserted for an earlier element: its id goes with this call's rollback, so name the elements
        for (int i = 0; i < n; i++)
            if (ids[i] == id)
                ereport(ERROR, (errcode(ERRCODE_UNIQUE_VIOLATION),
                                errmsg("idempotency key \"%s\" is given twice in this call with different inputs", key),
                                errdetail("Elements %d and %lld of inputs have this key.", i + 1, (long long)ord),
                                errhint("Reuse a key only to submit the same request again; use a new key for a new "
                                        "request.")));
        raise_key_conflict(key, id);
    }
    for (uint64 r = 0; r < SPI_processed; r++)
        ids[DatumGetInt64(col(r, 1, &isnull)) - 1] = DatumGetInt64(col(r, 2, &isnull));
}

}  // namespace

extern "C" Datum pw_create_runs(PG_FUNCTION_ARGS) {
    require_writable("create_runs");
    Submission s;
    s.pipeline = checked_name(fcinfo, 0, "pipeline name");
    if (PG_ARGISNULL(1))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("inputs must not be null"),
                        errhint("Pass a JSON array with one input per run, e.g. '[{\"n\": 1}, {\"n\": 2}]'.")));
    Jsonb *inputs = PG_GETARG_JSONB_P(1);
    if (!JB_ROOT_IS_ARRAY(inputs) || JB_ROOT_IS_SCALAR(inputs))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("inputs must be a JSON array"),
                        errhint("Pass a JSON array with one input per run, e.g. '[{\"n\": 1}, {\"n\": 2}]'.")));
    int n = static_cast<int>(JB_ROOT_COUNT(inputs));
    s.metadata = PG_ARGISNULL(2) ? empty_object() : PG_GETARG_DATUM(2);
    s.priority = checked_priority(fcinfo, 3);
    s.has_run_at = !PG_ARGISNULL(4);
    s.run_at = s.has_run_at ? PG_GETARG_TIMESTAMPTZ(4) : 0;
    s.checked_at = GetCurrentTimestamp();
    if (s.has_run_at && TIMESTAMP_NOT_FINITE(s.run_at))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("run_at must be a finite time"),
                        errhint("Pass NULL to start the runs as soon as possible.")));
    Datum keys = checked_keys(fcinfo, 5, n, "idempotency_keys", true);
    Datum ckeys = checked_keys(fcinfo, 6, n, "concurrency_keys", false);

    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);  // SETOF bigint: a one-column row
    MemoryContext caller = CurrentMemoryContext;
    pg::spi_connect();
    prepare_submission(&s);
    if (s.schema < 2) require_schema_02();
    int64 *ids = static_cast<int64 *>(MemoryContextAllocZero(caller, sizeof(int64) * (n > 0 ? n : 1)));
    // One INSERT for all: elements and keys zipped by position. A key already used (before, or earlier in this
    // call) inserts nothing; RETURNING gives the inserted rows in element order (ids are drawn in that order).
    Oid types[11] = {TEXTOID, JSONBOID, JSONBOID, OIDOID, INT8OID, OIDOID, INT4OID, TIMESTAMPTZOID, TEXTARRAYOID,
                     TEXTARRAYOID, BOOLOID};
    Datum v[11] = {CStringGetTextDatum(s.pipeline), JsonbPGetDatum(inputs), s.metadata, ObjectIdGetDatum(GetUserId()),
                   Int64GetDatum(s.pipeline_id), ObjectIdGetDatum(s.owner), Int32GetDatum(s.priority),
                   TimestampTzGetDatum(s.run_at), keys, ckeys, BoolGetDatum(s.paused)};
    char nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', s.has_run_at ? ' ' : 'n', keys ? ' ' : 'n',
                      ckeys ? ' ' : 'n', ' '};
    // With keys: the rows go in in the keys' order, with ids drawn before in element order. Two calls inserting some
    // of the same keys in different orders waited for each other's keys: "deadlock detected" for one of them (until
    // 2026-12-07; acceptance walk-through). In one order, the second waits for the first and then finds its runs.
    // Without keys, a plain INSERT: ON CONFLICT's speculative insertion costs a third of the time per row.
    if (keys)
        pg::run_as_owner(&plan_insert_runs,
                         "INSERT INTO pipeline_worker.runs (id, pipeline, input, metadata, submitted_by, pipeline_id,"
                         " pipeline_owner, priority, run_at, not_before, idempotency_key, concurrency_key, parked)"
                         " OVERRIDING SYSTEM VALUE"
                         " SELECT e.id, $1, e.input, $3, $4::regrole, $5, $6::regrole, $7, $8,"
                         "  CASE WHEN $8 > pg_catalog.clock_timestamp() THEN $8 END, e.key, e.ckey,"
                         "  CASE WHEN $11 THEN 3 END"
                         " FROM (SELECT pg_catalog.nextval('pipeline_worker.runs_id_seq') AS id, x.input, x.key, x.ckey"
                         "   FROM ROWS FROM (pg_catalog.jsonb_array_elements($2), pg_catalog.unnest($9),"
                         "     pg_catalog.unnest($10)) WITH ORDINALITY AS x(input, key, ckey, ord)"
                         "   ORDER BY x.ord OFFSET 0) e"
                         " ORDER BY e.key COLLATE \"C\", e.id"
                         " ON CONFLICT (pipeline_id, submitted_by, idempotency_key) WHERE idempotency_key IS NOT NULL"
                         " DO NOTHING RETURNING id, idempotency_key",
                         11, types, v, nulls, false);
    else
        pg::run_as_owner(&plan_insert_runs_nokey,
                         "INSERT INTO pipeline_worker.runs (pipeline, input, metadata, submitted_by, pipeline_id,"
                         " pipeline_owner, priority, run_at, not_before, concurrency_key, parked)"
                         " SELECT $1, e.input, $3, $4::regrole, $5, $6::regrole, $7, $8,"
                         "  CASE WHEN $8 > pg_catalog.clock_timestamp() THEN $8 END, e.ckey, CASE WHEN $11 THEN 3 END"
                         " FROM ROWS FROM (pg_catalog.jsonb_array_elements($2), pg_catalog.unnest($10))"
                         "   AS e(input, ckey)"
                         " RETURNING id, NULL::text",
                         11, types, v, nulls, false);
    uint64 inserted = SPI_processed;
    SPITupleTable *rows = SPI_tuptable;
    // (the inserted rows in element order: by id, drawn in that order)
    uint64 *order = static_cast<uint64 *>(palloc(sizeof(uint64) * (inserted > 0 ? inserted : 1)));
    int64 *row_id = static_cast<int64 *>(palloc(sizeof(int64) * (inserted > 0 ? inserted : 1)));
    for (uint64 k = 0; k < inserted; k++) {
        bool isnull;
        order[k] = k;
        row_id[k] = DatumGetInt64(col(k, 1, &isnull));
    }
    std::sort(order, order + inserted, [row_id](uint64 a, uint64 b) { return row_id[a] < row_id[b]; });
    // Walk the elements in order beside the inserted rows: an element with no key, or whose key is the next
    // inserted one (first use), got that row; the others name an existing run, looked up below.
    Datum *kelems = nullptr;
    bool *knulls = nullptr;
    int kcount = 0;
    if (keys) deconstruct_array(DatumGetArrayTypeP(keys), TEXTOID, -1, false, TYPALIGN_INT, &kelems, &knulls, &kcount);
    int64 *missing = static_cast<int64 *>(palloc(sizeof(int64) * (n > 0 ? n : 1)));
    int nmissing = 0;
    uint64 j = 0;
    for (int i = 0; i < n; i++) {
        bool has_key = keys && !knulls[i];
        bool isnull;
        SPI_tuptable = rows;
        if (j < inserted) {
            Datum rk = col(order[j], 2, &isnull);
            bool match = has_key ? !isnull && DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID, rk, kelems[i])) : isnull;
            if (match) {
                ids[i] = row_id[order[j]];
                j++;
                continue;
            }
        }
        if (!has_key) elog(ERROR, "pipeline_worker: create_runs lost track of element %d", i + 1);
        missing[nmissing++] = i + 1;  // 1-based ordinality
    }
    if (nmissing > 0) existing_runs(ids, n, missing, nmissing, v[4], v[3], JsonbPGetDatum(inputs), keys);
    SPI_finish();
    if (inserted > 0) {
        int64 max_id = 0;
        for (int i = 0; i < n; i++) max_id = ids[i] > max_id ? ids[i] : max_id;
        note_submitted(s, static_cast<int>(inserted > 1000 ? 1000 : inserted), max_id);
        metrics::runs_created(s.pipeline, static_cast<int>(inserted));
    }
    for (int i = 0; i < n; i++) {
        Datum d = Int64GetDatum(ids[i]);
        bool isnull = false;
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &d, &isnull);
    }
    return (Datum)0;
}
