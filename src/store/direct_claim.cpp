#include "store/direct_claim.hpp"

#include "pg/direct_rows.hpp"
#include "pg/spi.hpp"
#include "store/queue.hpp"

extern "C" {
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "commands/defrem.h"
#include "common/int.h"
#include "utils/syscache.h"
#include "executor/tuptable.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
}

namespace pw::store {

namespace {

// The run table's columns the claim reads, by name.
enum Col { kId, kPipeline, kSubmittedBy, kInput, kMetadata, kClaims, kPipelineId, kPriority, kKey, kStatus,
           kNotBefore, kParked, kNCols };
const char *const kNames[kNCols] = {"id",       "pipeline",    "submitted_by", "input",
                                    "metadata", "claims",      "pipeline_id",  "priority",
                                    "concurrency_key", "status", "not_before", "parked"};

// runs_ready_idx as the schema defines it: a valid btree of the run table on ((- priority), id), both ascending with
// their default operator classes, WHERE status = 'pending' AND not_before IS NULL AND parked IS NULL. Anything else of
// that name is not read this way (an owner's index of another shape would give other rows or another order). An
// index's definition never changes under its OID: checked once per OID.
bool is_ready_index(Relation idx, Oid run_table, const AttrNumber *att) {
    static Oid checked = InvalidOid;
    static bool checked_ok = false;
    Form_pg_index ix = idx->rd_index;
    if (ix->indrelid != run_table || !ix->indisvalid || !ix->indisready) return false;
    if (RelationGetRelid(idx) == checked) return checked_ok;
    checked = RelationGetRelid(idx);
    checked_ok = false;
    if (idx->rd_rel->relam != BTREE_AM_OID || ix->indnkeyatts != 2 || ix->indnatts != 2 || ix->indkey.values[0] != 0 ||
        ix->indkey.values[1] != att[kId] || idx->rd_indoption[0] != 0 || idx->rd_indoption[1] != 0 ||
        idx->rd_opcintype[0] != INT4OID || idx->rd_opcintype[1] != INT8OID ||
        idx->rd_opfamily[0] != get_opclass_family(GetDefaultOpClass(INT4OID, BTREE_AM_OID)) ||
        idx->rd_opfamily[1] != get_opclass_family(GetDefaultOpClass(INT8OID, BTREE_AM_OID)))
        return false;
    List *exprs = RelationGetIndexExpressions(idx);
    if (list_length(exprs) != 1 || !IsA(linitial(exprs), OpExpr)) return false;
    OpExpr *neg = linitial_node(OpExpr, exprs);
    if (neg->opfuncid != F_INT4UM || list_length(neg->args) != 1 || !IsA(linitial(neg->args), Var) ||
        linitial_node(Var, neg->args)->varattno != att[kPriority])
        return false;
    // (the predicate as pg_get_expr prints it: no names to qualify in it)
    bool isnull;
    Datum pred = SysCacheGetAttr(INDEXRELID, idx->rd_indextuple, Anum_pg_index_indpred, &isnull);
    if (isnull) return false;
    char *shown = TextDatumGetCString(DirectFunctionCall2(pg_get_expr, pred, ObjectIdGetDatum(run_table)));
    checked_ok = strcmp(shown, "((status = 'pending'::text) AND (not_before IS NULL) AND (parked IS NULL))") == 0;
    return checked_ok;
}

bool is_pending(TupleTableSlot *s, const AttrNumber *att) {
    bool isnull;
    Datum status = slot_getattr(s, att[kStatus], &isnull);
    if (isnull) return false;
    text *t = DatumGetTextPP(status);
    if (VARSIZE_ANY_EXHDR(t) != 7 || memcmp(VARDATA_ANY(t), "pending", 7) != 0) return false;
    (void)slot_getattr(s, att[kNotBefore], &isnull);
    if (!isnull) return false;
    (void)slot_getattr(s, att[kParked], &isnull);
    return isnull;
}

// The newest version of a row changed since the snapshot: still what the claim's conditions take?
bool still_claimable(TupleTableSlot *s, const AttrNumber *att, Oid submitter, Datum lo_neg, Datum lo_id, int32 hi_p,
                     int64 hi_i) {
    if (!is_pending(s, att)) return false;
    bool isnull;
    if (OidIsValid(submitter) && DatumGetObjectId(slot_getattr(s, att[kSubmittedBy], &isnull)) != submitter) return false;
    int32 neg = -DatumGetInt32(slot_getattr(s, att[kPriority], &isnull));
    int64 id = DatumGetInt64(slot_getattr(s, att[kId], &isnull));
    int32 lo_p = DatumGetInt32(lo_neg);
    int64 lo_i = DatumGetInt64(lo_id);
    return (neg > lo_p || (neg == lo_p && id >= lo_i)) && (neg < hi_p || (neg == hi_p && id < hi_i));
}

// The claim statement's row for the locked version in s (its values copied out of the buffer).
void take_row(TupleTableSlot *s, const AttrNumber *att, ClaimRow *r) {
    HeapTuple copy = ExecCopySlotHeapTuple(s);
    TupleDesc desc = s->tts_tupleDescriptor;
    Datum *v = static_cast<Datum *>(palloc(sizeof(Datum) * desc->natts));
    bool *n = static_cast<bool *>(palloc(sizeof(bool) * desc->natts));
    heap_deform_tuple(copy, desc, v, n);
    auto at = [&](Col c, int out) {
        r->v[out] = v[att[c] - 1];
        r->isnull[out] = n[att[c] - 1];
    };
    at(kId, 0);
    at(kPipeline, 1);
    at(kSubmittedBy, 2);
    at(kInput, 3);
    at(kMetadata, 4);
    at(kClaims, 5);
    int32 claims;
    if (!r->isnull[5]) {
        if (pg_add_s32_overflow(DatumGetInt32(r->v[5]), 1, &claims))  // (claims + 1, as the statement computes it)
            ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE), errmsg("integer out of range")));
        r->v[5] = Int32GetDatum(claims);
    }
    at(kPipelineId, 6);
    at(kPriority, 7);
    bool key_null = n[att[kKey] - 1];
    r->v[8] = BoolGetDatum(!key_null);
    r->isnull[8] = false;
    r->isnull[9] = r->isnull[10] = key_null;
    if (!key_null) {
        Datum key = v[att[kKey] - 1];
        // (the statement's calls: the column's collation, the database's default)
        r->v[9] = DirectFunctionCall2Coll(hashtextextended, DEFAULT_COLLATION_OID, key, Int64GetDatum(0));
        r->v[10] = n[att[kPipelineId] - 1] ? Int64GetDatum(0)
                                           : DirectFunctionCall2Coll(hashtextextended, DEFAULT_COLLATION_OID, key,
                                                                     v[att[kPipelineId] - 1]);
        r->isnull[10] = n[att[kPipelineId] - 1];
    }
    ItemPointer tid = static_cast<ItemPointer>(palloc(sizeof(ItemPointerData)));
    ItemPointerCopy(&s->tts_tid, tid);
    r->v[11] = PointerGetDatum(tid);
    r->isnull[11] = false;
    pfree(v);
    pfree(n);
}

}  // namespace

int direct_claim(int max, Oid submitter, int64 min_key, int64 below_key, ClaimRow *rows) {
    // (The statement's FOR UPDATE re-checks a row changed since the snapshot in its newest version: that is READ
    // COMMITTED's rule. A session's claim_run may be in another isolation level: it runs the statement.)
    // (And a read-only transaction: the statement's error, not a lock taken anyway.)
    if (XactIsoLevel != XACT_READ_COMMITTED || XactReadOnly) return -1;
    Oid run_table = pg::run_table();
    if (!OidIsValid(run_table)) return -1;
    Oid ready_oid = get_relname_relid("runs_ready_idx", get_rel_namespace(run_table));
    if (!OidIsValid(ready_oid)) return -1;
    // As the statement: the tables' owner (its privileges, its row-level security). An error restores the user at
    // the transaction's abort, and releases the scan, the slots and the snapshot with it.
    Oid saved_user;
    int saved_sec;
    GetUserIdAndSecContext(&saved_user, &saved_sec);
    SetUserIdAndSecContext(pg::tables_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
    Relation rel = table_open(run_table, RowShareLock);  // (FOR UPDATE's lock; kept to the end, as a statement's)
    AttrNumber att[kNCols];
    // (not a parent of inheritance children: the statement, without ONLY, would read them too)
    bool ok = rel->rd_rel->relkind == RELKIND_RELATION && !rel->rd_rel->relhassubclass && rel->rd_rules == nullptr &&
              check_enable_rls(run_table, InvalidOid, true) != RLS_ENABLED &&
              pg_class_aclmask(run_table, GetUserId(), ACL_SELECT | ACL_UPDATE, ACLMASK_ALL) ==
                  (ACL_SELECT | ACL_UPDATE);
    for (int c = 0; c < kNCols && ok; c++) {
        int a = pg::attribute_of(RelationGetDescr(rel), kNames[c]);
        ok = a >= 0;
        att[c] = static_cast<AttrNumber>(a + 1);
    }
    Relation idx = ok && get_rel_relkind(ready_oid) == RELKIND_INDEX ? index_open(ready_oid, AccessShareLock) : nullptr;
    if (idx != nullptr && !is_ready_index(idx, run_table, att)) {
        index_close(idx, AccessShareLock);
        idx = nullptr;
    }
    if (idx == nullptr) {
        table_close(rel, NoLock);
        SetUserIdAndSecContext(saved_user, saved_sec);
        return -1;
    }
    CommandCounterIncrement();  // (as SPI before a statement: the transaction's earlier writes are seen)
    PushActiveSnapshot(GetTransactionSnapshot());
    Snapshot snap = GetActiveSnapshot();
    CommandId cid = GetCurrentCommandId(true);
    TupleTableSlot *seen = table_slot_create(rel, nullptr), *locked = table_slot_create(rel, nullptr);
    Datum lo_neg, lo_id, hi_neg, hi_id;
    split_key(min_key, &lo_neg, &lo_id);
    split_key(below_key, &hi_neg, &hi_id);
    int32 hi_p = DatumGetInt32(hi_neg);
    int64 hi_i = DatumGetInt64(hi_id);
    // lo <= ROW(- priority, id) < hi as index keys, so that the scan stops at hi in the index -- past it lie entries
    // of runs no longer queued, which a snapshot held elsewhere keeps from being marked dead (held_snapshot.sh): the
    // rest of lo's priority from its id on, the priorities strictly between, then hi's priority up to its id.
    int32 lo_p = DatumGetInt32(lo_neg);
    ScanKeyData parts[3][3];
    int nkeys[3] = {0, 0, 0}, nparts = 0;
    auto key = [&](int part, AttrNumber col, StrategyNumber strategy, RegProcedure fn, Datum arg) {
        ScanKeyInit(&parts[part][nkeys[part]++], col, strategy, fn, arg);
    };
    bool empty = hi_p < lo_p || (hi_p == lo_p && hi_i <= DatumGetInt64(lo_id));
    if (!empty) {
        key(nparts, 1, BTEqualStrategyNumber, F_INT4EQ, lo_neg);
        key(nparts, 2, BTGreaterEqualStrategyNumber, F_INT8GE, lo_id);
        if (hi_p == lo_p) key(nparts, 2, BTLessStrategyNumber, F_INT8LT, hi_id);
        nparts++;
    }
    if (!empty && hi_p > lo_p) {
        if (hi_p > lo_p + 1) {
            key(nparts, 1, BTGreaterStrategyNumber, F_INT4GT, lo_neg);
            key(nparts, 1, BTLessStrategyNumber, F_INT4LT, hi_neg);
            nparts++;
        }
        key(nparts, 1, BTEqualStrategyNumber, F_INT4EQ, hi_neg);
        key(nparts, 2, BTLessStrategyNumber, F_INT8LT, hi_id);
        nparts++;
    }
    // (A scan's number of keys is fixed when it begins: one scan per part.)
    IndexScanDesc scan = nullptr;
    int n = 0, part = -1;
    while (n < max) {
        if (scan == nullptr) {
            if (++part == nparts) break;
            scan = index_beginscan(rel, idx, snap, nkeys[part], 0);
            index_rescan(scan, parts[part], nkeys[part], nullptr, 0);
        }
        if (!index_getnext_slot(scan, ForwardScanDirection, seen)) {
            index_endscan(scan);
            scan = nullptr;
            continue;
        }
        CHECK_FOR_INTERRUPTS();
        if (!is_pending(seen, att)) continue;  // (the partial index's condition holds for the version it leads to)
        bool isnull;
        if (OidIsValid(submitter) && DatumGetObjectId(slot_getattr(seen, att[kSubmittedBy], &isnull)) != submitter)
            continue;
        // FOR UPDATE's lock in READ COMMITTED: a row changed since the snapshot is locked in its newest version, which
        // must still be a pending run of the range to be claimed (the statement's re-check). Otherwise it stays locked
        // unclaimed, as the statement leaves it.
        // (ExecLockRows' flags; the TID a copy: the lock may move it to the newest version)
        TM_FailureData tmfd;
        ItemPointerData tid = seen->tts_tid;
        TM_Result r = table_tuple_lock(rel, &tid, snap, locked, cid, LockTupleExclusive, LockWaitSkip,
                                       TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS | TUPLE_LOCK_FLAG_FIND_LAST_VERSION,
                                       &tmfd);
        if (r == TM_Ok && tmfd.traversed && !still_claimable(locked, att, submitter, lo_neg, lo_id, hi_p, hi_i))
            continue;
        switch (r) {
            case TM_Ok:
                take_row(locked, att, &rows[n++]);
                break;
            case TM_WouldBlock:  // another transaction holds it: SKIP LOCKED
            case TM_Deleted:     // (deleted since the snapshot)
            case TM_SelfModified:
                break;
            default:
                elog(ERROR, "pipeline_worker: unexpected result %d locking a queued run", static_cast<int>(r));
        }
    }
    if (scan != nullptr) index_endscan(scan);
    ExecDropSingleTupleTableSlot(seen);
    ExecDropSingleTupleTableSlot(locked);
    index_close(idx, NoLock);
    table_close(rel, NoLock);
    PopActiveSnapshot();
    SetUserIdAndSecContext(saved_user, saved_sec);
    return n;
}

}  // namespace pw::store
