#include "store/direct_writes.hpp"

#include "pg/direct_rows.hpp"
#include "pg/spi.hpp"

namespace pw::store {

namespace {

// Whether the text datum d is s.
bool text_is(Datum d, const char *s) {
    text *t = DatumGetTextPP(d);
    size_t n = VARSIZE_ANY_EXHDR(t);
    return n == strlen(s) && memcmp(VARDATA_ANY(t), s, n) == 0;
}

// The attribute numbers (0-based) of `names` in the open table, false if one is missing or does not take the value
// this code writes as it is (takes_as_is).
template <int N>
bool columns(const pg::DirectRows *d, const char *const (&names)[N], const Oid (&types)[N], int (&att)[N]) {
    for (int c = 0; c < N; c++) {
        att[c] = pg::direct_column(d, names[c]);
        Form_pg_attribute a = att[c] >= 0 ? TupleDescAttr(pg::direct_desc(d), att[c]) : nullptr;
        if (a == nullptr || !takes_as_is(a, types[c])) return false;
    }
    return true;
}

// pipeline_worker.runs opened for an update of the `updated` columns, with the attribute numbers of `names`
// (nullptr: the statement must write; see columns()).
template <int N>
pg::DirectRows *begin_run_update(const char *const *updated, const char *const (&names)[N], const Oid (&types)[N],
                                 int (&att)[N]) {
    Oid relid = pg::run_table();
    if (!OidIsValid(relid)) elog(ERROR, "pipeline_worker.runs does not exist");
    pg::DirectRows *d = pg::direct_begin(relid, CMD_UPDATE, updated);
    if (d != nullptr && !columns(d, names, types, att)) {
        pg::direct_end(d);
        d = nullptr;
    }
    return d;
}

int live_columns(TupleDesc desc) {
    int n = 0;
    for (int i = 0; i < desc->natts; i++) n += !TupleDescAttr(desc, i)->attisdropped;
    return n;
}

}  // namespace

const Oid kStepTypes[10] = {INT8OID,  INT4OID, INT4OID,        TEXTOID,        TEXTOID,
                            JSONBOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};

void step_row_values(const StepRow *r, const int *att, int natts, Datum *values, bool *nulls) {
    for (int i = 0; i < natts; i++) nulls[i] = true;
    auto set = [&](int c, Datum v) {
        values[att[c]] = v;
        nulls[att[c]] = false;
    };
    set(0, Int64GetDatum(r->run_id));
    set(1, Int32GetDatum(r->pos));
    set(2, Int32GetDatum(r->attempt));
    set(3, CStringGetTextDatum(r->name));
    set(4, CStringGetTextDatum(core::to_text(r->status)));
    if (r->output) set(5, JsonbPGetDatum(r->output));
    if (r->error) set(6, CStringGetTextDatum(r->error));
    set(7, TimestampTzGetDatum(r->started));
    if (r->status != core::StepStatus::Running && r->status != core::StepStatus::Waiting)
        set(8, TimestampTzGetDatum(r->finished));
    if (r->task >= 0) {
        if (att[kTaskColumn] < 0) elog(ERROR, "pipeline_worker.run_steps has no column task");
        set(kTaskColumn, Int32GetDatum(r->task));
    }
}

bool insert_step_rows(List *steps) {
    Oid nsp = get_namespace_oid("pipeline_worker", false);
    Oid relid = get_relname_relid("run_steps", nsp);
    if (!OidIsValid(relid)) elog(ERROR, "pipeline_worker.run_steps does not exist");
    // (the 0.2 table: task is there; under 0.1 the statement writes)
    pg::DirectRows *d = pg::direct_begin(relid, CMD_INSERT, nullptr);
    if (d == nullptr) return false;
    int att[10];
    TupleDesc desc = pg::direct_desc(d);
    // Every column filled here: a column this code does not know would need its default, which the statement gives.
    if (!columns(d, kStepColumns, kStepTypes, att) || live_columns(desc) != 10) {
        pg::direct_end(d);
        return false;
    }
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * desc->natts));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * desc->natts));
    ListCell *lc;
    foreach (lc, steps) {
        const StepRow *r = static_cast<const StepRow *>(lfirst(lc));
        if (r->kind != kInsert) continue;
        step_row_values(r, att, desc->natts, values, nulls);
        pg::direct_insert(d, values, nulls);
    }
    pg::direct_end(d);
    return true;
}

int update_outcomes_at_claims(List *runs, int64 *out_ids, int64 *out_parents, bool *out_pnull) {
    static const char *const kNames[12] = {"id",          "status",     "result",    "error",
                                           "claims",      "started_at", "finished_at", "not_before",
                                           "waiting_for", "worker_pid", "worker_started_at", "parent_run_id"};
    static const Oid kTypes[12] = {INT8OID,        TEXTOID,        JSONBOID,       TEXTOID,
                                   INT4OID,        TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
                                   TEXTOID,        INT4OID,        TIMESTAMPTZOID, INT8OID};
    enum { kId, kStatus, kResult, kError, kClaims, kStarted, kFinished, kNotBefore, kWaitingFor, kPid, kPidStart, kParent };
    // (the columns the outcome changes: indexes on none of them keep their key; kId and kParent are only read)
    static const char *const kUpdated[] = {"status",     "result",      "error",      "claims",
                                           "started_at", "finished_at", "not_before", "waiting_for",
                                           "worker_pid", "worker_started_at", nullptr};
    int att[12];
    pg::DirectRows *d = begin_run_update(kUpdated, kNames, kTypes, att);
    if (d == nullptr) return -1;
    int natts = pg::direct_desc(d)->natts;
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * natts));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * natts));
    int updated = 0;
    ListCell *lc;
    foreach (lc, runs) {
        RunRow *r = static_cast<RunRow *>(lfirst(lc));
        TupleTableSlot *old = ItemPointerIsValid(&r->tid) ? pg::direct_fetch(d, &r->tid) : nullptr;
        if (old == nullptr) continue;  // changed since the claim (by this transaction): by id, in the statement
        bool again = false;  // (a run twice in the batch: written once, as the statement would)
        for (int k = 0; k < updated && !again; k++) again = out_ids[k] == r->id;
        if (again) continue;
        const Datum *ov = old->tts_values;
        const bool *on = old->tts_isnull;
        if (on[att[kId]] || DatumGetInt64(ov[att[kId]]) != r->id || on[att[kStatus]]) continue;
        // Still this claim's: pending under the claim this transaction holds (not recorded: no worker, one claim
        // less), or running under this backend's recorded claim.
        bool ours;
        if (text_is(ov[att[kStatus]], "pending"))
            ours = on[att[kPid]] && !on[att[kClaims]] && DatumGetInt32(ov[att[kClaims]]) == r->claims - 1;
        else if (text_is(ov[att[kStatus]], "running"))
            ours = !on[att[kPid]] && DatumGetInt32(ov[att[kPid]]) == MyProcPid && !on[att[kPidStart]] &&
                   DatumGetTimestampTz(ov[att[kPidStart]]) == MyStartTimestamp;
        else
            ours = false;
        if (!ours) continue;
        memcpy(values, ov, sizeof(Datum) * natts);
        memcpy(nulls, on, sizeof(bool) * natts);
        auto set = [&](int c, Datum v) {
            values[att[c]] = v;
            nulls[att[c]] = false;
        };
        auto clear = [&](int c) { nulls[att[c]] = true; };
        bool settled = r->status == core::RunStatus::Pending || r->status == core::RunStatus::Waiting;
        set(kStatus, CStringGetTextDatum(core::to_text(r->status)));
        if (r->result) set(kResult, JsonbPGetDatum(r->result));
        else clear(kResult);
        if (r->error) set(kError, CStringGetTextDatum(r->error));
        else clear(kError);
        set(kClaims, Int32GetDatum(r->claims));
        if (on[att[kStarted]] && r->claimed_at != 0) set(kStarted, TimestampTzGetDatum(r->claimed_at));
        if (settled) clear(kFinished);
        else set(kFinished, TimestampTzGetDatum(r->at));
        if (r->wake_at != 0) set(kNotBefore, TimestampTzGetDatum(r->wake_at));
        else clear(kNotBefore);
        if (r->waiting_for) set(kWaitingFor, CStringGetTextDatum(r->waiting_for));
        else clear(kWaitingFor);
        if (settled) {
            clear(kPid);
            clear(kPidStart);
        } else {
            set(kPid, Int32GetDatum(MyProcPid));
            set(kPidStart, TimestampTzGetDatum(MyStartTimestamp));
        }
        bool parent_null = on[att[kParent]];
        int64 parent = parent_null ? 0 : DatumGetInt64(ov[att[kParent]]);
        if (!pg::direct_update(d, old, values, nulls)) continue;  // (by id, in the statement)
        out_ids[updated] = r->id;
        out_pnull[updated] = parent_null;
        out_parents[updated] = parent;
        updated++;
    }
    pg::direct_end(d);
    return updated;
}

int record_claims_at_claims(List *claims) {
    static const char *const kNames[7] = {"id",     "status",     "worker_pid", "worker_started_at",
                                          "claims", "started_at", "not_before"};
    static const Oid kTypes[7] = {INT8OID, TEXTOID, INT4OID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID};
    enum { kId, kStatus, kPid, kPidStart, kClaims, kStarted, kNotBefore };
    static const char *const kUpdated[] = {"status", "worker_pid", "worker_started_at", "claims", "started_at",
                                           "not_before", nullptr};
    int att[7];
    pg::DirectRows *d = begin_run_update(kUpdated, kNames, kTypes, att);
    if (d == nullptr) return -1;
    int natts = pg::direct_desc(d)->natts;
    Datum *values = static_cast<Datum *>(palloc(sizeof(Datum) * natts));
    bool *nulls = static_cast<bool *>(palloc(sizeof(bool) * natts));
    int recorded = 0;
    ListCell *lc;
    foreach (lc, claims) {
        ClaimRow *r = static_cast<ClaimRow *>(lfirst(lc));
        TupleTableSlot *old = ItemPointerIsValid(&r->tid) ? pg::direct_fetch(d, &r->tid) : nullptr;
        if (old == nullptr) continue;  // changed since the claim (by this transaction): by id, in the statement
        bool again = false;  // (a claim twice in the list: written once, as the statement would)
        ListCell *lc2;
        foreach (lc2, claims) {
            const ClaimRow *o = static_cast<const ClaimRow *>(lfirst(lc2));
            if (o == r) break;
            again = again || (o->recorded && o->id == r->id);
        }
        if (again) {  // (the statement would leave it to the first: recorded by that)
            r->recorded = true;
            recorded++;
            continue;
        }
        const Datum *ov = old->tts_values;
        const bool *on = old->tts_isnull;
        if (on[att[kId]] || DatumGetInt64(ov[att[kId]]) != r->id || on[att[kStatus]]) continue;
        // Pending and nobody's claim (this transaction's lock), or already this backend's.
        bool ours;
        if (text_is(ov[att[kStatus]], "pending"))
            ours = on[att[kPid]];
        else if (text_is(ov[att[kStatus]], "running"))
            ours = !on[att[kPid]] && DatumGetInt32(ov[att[kPid]]) == MyProcPid && !on[att[kPidStart]] &&
                   DatumGetTimestampTz(ov[att[kPidStart]]) == MyStartTimestamp;
        else
            ours = false;
        if (!ours) continue;
        memcpy(values, ov, sizeof(Datum) * natts);
        memcpy(nulls, on, sizeof(bool) * natts);
        auto set = [&](int c, Datum v) {
            values[att[c]] = v;
            nulls[att[c]] = false;
        };
        set(kStatus, CStringGetTextDatum("running"));
        set(kPid, Int32GetDatum(MyProcPid));
        set(kPidStart, TimestampTzGetDatum(MyStartTimestamp));
        set(kStarted, TimestampTzGetDatum(r->claimed_at));
        set(kClaims, Int32GetDatum(r->claims));
        nulls[att[kNotBefore]] = true;
        if (!pg::direct_update(d, old, values, nulls)) continue;  // (by id, in the statement)
        r->recorded = true;
        recorded++;
    }
    pg::direct_end(d);
    return recorded;
}

}  // namespace pw::store
