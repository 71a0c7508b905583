#include "pg/direct_rows.hpp"

#include "pg/kept_plans.hpp"
#include "pg/kept_writes.hpp"
#include "pg/spi.hpp"

extern "C" {
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "utils/rel.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
}

namespace pw::pg {

struct DirectRows {
    Relation rel;
    EState *estate;
    ResultRelInfo *rri;
    TupleTableSlot *fetched;  // the version fetch() found
    TupleTableSlot *row;      // the values written
    BlockNumber nblocks;      // the table's length at begin(): a row version to update lies below it
    TupleTableSlot **pending; // inserted rows not written yet (written together: one WAL record per page)
    TupleDesc pending_desc;   // their descriptor: a copy, not reference-counted (see direct_insert)
    int npending, nslots;
    size_t pending_bytes;
    MemoryContext caller_cxt;
    Oid saved_user;
    int saved_sec;
    bool deletes;  // opened for CMD_DELETE: no index opened
};

namespace {

// Anything a statement would fire for the command: a table with such triggers (foreign keys' included) is written by
// the statement.
bool fires_triggers(Relation rel, CmdType cmd) {
    const TriggerDesc *t = rel->trigdesc;
    if (t == nullptr) return false;
    if (cmd == CMD_INSERT)
        return t->trig_insert_before_row || t->trig_insert_after_row || t->trig_insert_instead_row ||
               t->trig_insert_before_statement || t->trig_insert_after_statement || t->trig_insert_new_table;
    if (cmd == CMD_DELETE)
        return t->trig_delete_before_row || t->trig_delete_after_row || t->trig_delete_instead_row ||
               t->trig_delete_before_statement || t->trig_delete_after_statement || t->trig_delete_old_table;
    return t->trig_update_before_row || t->trig_update_after_row || t->trig_update_instead_row ||
           t->trig_update_before_statement || t->trig_update_after_statement || t->trig_update_old_table ||
           t->trig_update_new_table;
}

}  // namespace

DirectRows *direct_begin(Oid relid, CmdType cmd, const char *const *updated) {
    Assert(cmd == CMD_INSERT || cmd == CMD_UPDATE || cmd == CMD_DELETE);
    // (not in a read-only transaction: the statement says so, where the heap routines would write)
    if (XactReadOnly) return nullptr;
    CommandCounterIncrement();  // the caller's statements before are seen (catalog changes included)
    // As the statements: as the tables' owner (its privileges, its row-level security, the constraints' functions
    // run as it). An error restores the user at (sub)transaction abort.
    Oid saved_user;
    int saved_sec;
    GetUserIdAndSecContext(&saved_user, &saved_sec);
    SetUserIdAndSecContext(tables_owner(), saved_sec | SECURITY_LOCAL_USERID_CHANGE);
    Relation rel = table_open(relid, RowExclusiveLock);  // (the lock a statement takes; kept to the end)
    AclMode needed = cmd == CMD_INSERT ? ACL_INSERT : ((cmd == CMD_UPDATE ? ACL_UPDATE : ACL_DELETE) | ACL_SELECT);
    // (a delete also not from a parent of inheritance children: its caller's row versions, found by a statement
    // without ONLY, may be a child's, whose TIDs mean nothing in this table)
    if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relispartition ||
        rel->rd_rules != nullptr || (cmd == CMD_DELETE && rel->rd_rel->relhassubclass) ||
        fires_triggers(rel, cmd) || (rel->rd_att->constr != nullptr && rel->rd_att->constr->has_generated_stored) ||
        check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED ||
        pg_class_aclmask(relid, GetUserId(), needed, ACLMASK_ALL) != needed) {
        table_close(rel, NoLock);
        SetUserIdAndSecContext(saved_user, saved_sec);
        return nullptr;
    }
    if (cmd != CMD_INSERT) CheckCmdReplicaIdentity(rel, cmd);  // (as the statement: published without one)
    // The statements' search path, pg_catalog alone: a constraint's or an index's function resolves names as it does
    // for them, whatever the worker's search_path (popped by direct_end, or by the abort of an error).
    push_catalog_only_path();
    DirectRows *d = static_cast<DirectRows *>(palloc0(sizeof(DirectRows)));
    d->rel = rel;
    d->caller_cxt = CurrentMemoryContext;
    d->saved_user = saved_user;
    d->saved_sec = saved_sec;
    EState *estate = CreateExecutorState();
    MemoryContextSwitchTo(estate->es_query_cxt);
    RangeTblEntry *rte = makeNode(RangeTblEntry);
    rte->rtekind = RTE_RELATION;
    rte->relid = relid;
    rte->relkind = rel->rd_rel->relkind;
    rte->rellockmode = RowExclusiveLock;
    // The columns an update changes: an index on none of them is told its key is unchanged (bottom-up deletion of
    // the versions an update leaves, as for an UPDATE statement).
    Bitmapset *cols = nullptr;
    for (int i = 0; updated != nullptr && updated[i] != nullptr; i++) {
        int att = attribute_of(RelationGetDescr(rel), updated[i]);
        if (att >= 0) cols = bms_add_member(cols, att + 1 - FirstLowInvalidHeapAttributeNumber);
    }
#if PG_VERSION_NUM >= 160000
    List *perminfos = NIL;
    RTEPermissionInfo *perm = addRTEPermissionInfo(&perminfos, rte);
    perm->updatedCols = cols;
    ExecInitRangeTable(estate, list_make1(rte), perminfos);
#else
    rte->updatedCols = cols;
    ExecInitRangeTable(estate, list_make1(rte));
#endif
    d->rri = makeNode(ResultRelInfo);
    InitResultRelInfo(d->rri, rel, 1, nullptr, 0);
    // (ExecOpenIndices, with what it builds kept across batches; a delete leaves index entries to VACUUM, as the
    // executor's does)
    d->deletes = cmd == CMD_DELETE;
    if (!d->deletes) open_for_writes(d->rri, estate);
    estate->es_output_cid = GetCurrentCommandId(true);
    PushActiveSnapshot(GetTransactionSnapshot());
    estate->es_snapshot = GetActiveSnapshot();
    d->estate = estate;
    d->fetched = table_slot_create(rel, &estate->es_tupleTable);
    d->row = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
    d->nblocks = cmd == CMD_UPDATE ? RelationGetNumberOfBlocks(rel) : 0;
    MemoryContextSwitchTo(d->caller_cxt);
    return d;
}

int attribute_of(TupleDesc desc, const char *name) {
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute a = TupleDescAttr(desc, i);
        if (!a->attisdropped && strcmp(NameStr(a->attname), name) == 0) return i;
    }
    return -1;
}

TupleDesc direct_desc(const DirectRows *d) { return RelationGetDescr(d->rel); }

int direct_column(const DirectRows *d, const char *name) { return attribute_of(RelationGetDescr(d->rel), name); }

TupleTableSlot *direct_fetch(DirectRows *d, ItemPointer tid) {
    if (!ItemPointerIsValid(tid) || ItemPointerGetBlockNumber(tid) >= d->nblocks) return nullptr;
    MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);
    bool seen = table_tuple_fetch_row_version(d->rel, tid, d->estate->es_snapshot, d->fetched);
    if (seen) slot_getallattrs(d->fetched);
    MemoryContextSwitchTo(old);
    return seen ? d->fetched : nullptr;
}

namespace {

// The values (as many as the table has columns) as slot s's row of the table.
TupleTableSlot *fill(DirectRows *d, TupleTableSlot *s, Datum *values, bool *nulls) {
    ExecClearTuple(s);
    int natts = s->tts_tupleDescriptor->natts;
    memcpy(s->tts_values, values, sizeof(Datum) * natts);
    memcpy(s->tts_isnull, nulls, sizeof(bool) * natts);
    ExecStoreVirtualTuple(s);
    s->tts_tableOid = RelationGetRelid(d->rel);
    return s;
}

}  // namespace

bool direct_update(DirectRows *d, TupleTableSlot *fetched, Datum *values, bool *nulls) {
    MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);
    // What ExecSimpleRelationUpdate does for a table without triggers, generated columns or partitions -- except
    // that a version changed since the fetch is reported, not an error: the caller then finds the row by id.
    TupleTableSlot *row = fill(d, d->row, values, nulls);
    if (d->rel->rd_att->constr != nullptr) ExecConstraints(d->rri, row, d->estate);
    TM_FailureData tmfd;
    LockTupleMode lockmode;
#if PG_VERSION_NUM >= 160000
    TU_UpdateIndexes update_indexes;
#else
    bool update_indexes;
#endif
    TM_Result res = table_tuple_update(d->rel, &fetched->tts_tid, row, d->estate->es_output_cid, d->estate->es_snapshot,
                                       InvalidSnapshot, true, &tmfd, &lockmode, &update_indexes);
    bool written = res == TM_Ok;
    if (written && d->rri->ri_NumIndices > 0) {
#if PG_VERSION_NUM >= 160000
        if (update_indexes != TU_None)
            list_free(ExecInsertIndexTuples(d->rri, row, d->estate, true, false, nullptr, NIL,
                                            update_indexes == TU_Summarizing));
#else
        if (update_indexes) list_free(ExecInsertIndexTuples(d->rri, row, d->estate, true, false, nullptr, NIL));
#endif
    }
    ResetPerTupleExprContext(d->estate);
    MemoryContextSwitchTo(old);
    return written;
}

bool direct_delete(DirectRows *d, ItemPointer tid) {
    Assert(d->deletes);
    // What ExecDelete does for a table without triggers, except that a version changed or locked since the caller's
    // snapshot saw it is left alone, as SKIP LOCKED leaves a row (no wait, no re-check of a newer version).
    TM_FailureData tmfd;
    return table_tuple_delete(d->rel, tid, d->estate->es_output_cid, d->estate->es_snapshot, InvalidSnapshot, false,
                              &tmfd, false) == TM_Ok;
}

namespace {

// Rows inserted are written together, as COPY writes them: the heap first (table_multi_insert: one WAL record and one
// buffer lock per page instead of per row), then each row's index entries.
constexpr int kMaxPending = 1000;
constexpr size_t kMaxPendingBytes = 64 * 1024;

void write_pending(DirectRows *d) {
    if (d->npending == 0) return;
    MemoryContext old = MemoryContextSwitchTo(GetPerTupleMemoryContext(d->estate));  // (its array of tuples)
    table_multi_insert(d->rel, d->pending, d->npending, d->estate->es_output_cid, 0, nullptr);
    MemoryContextSwitchTo(old);
    for (int i = 0; i < d->npending; i++) {
        if (d->rri->ri_NumIndices > 0)
            list_free(ExecInsertIndexTuples(d->rri, d->pending[i], d->estate, false, false, nullptr, NIL));
        ExecClearTuple(d->pending[i]);
        ResetPerTupleExprContext(d->estate);
    }
    d->npending = 0;
    d->pending_bytes = 0;
}

}  // namespace

void direct_insert(DirectRows *d, Datum *values, bool *nulls) {
    MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);
    if (d->npending == kMaxPending || d->pending_bytes >= kMaxPendingBytes) write_pending(d);
    if (d->pending == nullptr) d->pending = static_cast<TupleTableSlot **>(palloc0(sizeof(TupleTableSlot *) * kMaxPending));
    // The slots describe their rows by a copy of the table's descriptor that is not reference-counted: a slot made
    // on the table's own one pins it in the resource owner, and a batch's hundreds of step rows made that (with its
    // release at direct_end) ~2.7 % of a W1 run's CPU. (The NOT NULL and CHECK constraints are read from the table's
    // descriptor, not the slot's.)
    if (d->pending_desc == nullptr) d->pending_desc = CreateTupleDescCopy(RelationGetDescr(d->rel));
    if (d->npending == d->nslots)
        d->pending[d->nslots++] =
            ExecAllocTableSlot(&d->estate->es_tupleTable, d->pending_desc, table_slot_callbacks(d->rel));
    TupleTableSlot *s = fill(d, d->pending[d->npending], values, nulls);
    int natts = s->tts_tupleDescriptor->natts;
    // (what ExecSimpleRelationInsert does before the heap, for a table without triggers, generated columns or
    // partitions: its constraints; values the caller passes stay valid until direct_end)
    if (d->rel->rd_att->constr != nullptr) ExecConstraints(d->rri, s, d->estate);
    for (int i = 0; i < natts; i++) {
        Form_pg_attribute a = TupleDescAttr(s->tts_tupleDescriptor, i);
        if (!nulls[i] && a->attlen == -1) d->pending_bytes += VARSIZE_ANY(DatumGetPointer(values[i]));
    }
    d->npending++;
    ResetPerTupleExprContext(d->estate);
    MemoryContextSwitchTo(old);
}

void direct_end(DirectRows *d) {
    MemoryContext old = MemoryContextSwitchTo(d->estate->es_query_cxt);
    write_pending(d);
    MemoryContextSwitchTo(old);
    PopActiveSnapshot();
    PopOverrideSearchPath();
    if (!d->deletes) close_for_writes(d->rri);
    ExecResetTupleTable(d->estate->es_tupleTable, false);  // (the fetched version's buffer pin)
    FreeExecutorState(d->estate);
    table_close(d->rel, NoLock);
    SetUserIdAndSecContext(d->saved_user, d->saved_sec);
    CommandCounterIncrement();  // the rows written are seen by the statements after
    pfree(d);
}

}  // namespace pw::pg
