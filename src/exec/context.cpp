#include "exec/context.hpp"

namespace pw::exec {

namespace {

void push_key(JsonbParseState **st, const char *key) {
    JsonbValue k;
    k.type = jbvString;
    k.val.string.val = const_cast<char *>(key);
    k.val.string.len = strlen(key);
    pushJsonbValue(st, WJB_KEY, &k);
}

void push_string(JsonbParseState **st, const char *s) {
    JsonbValue v;
    v.type = jbvString;
    v.val.string.val = const_cast<char *>(s);
    v.val.string.len = strlen(s);
    pushJsonbValue(st, WJB_VALUE, &v);
}

void push_int(JsonbParseState **st, int64 n) {
    JsonbValue v;
    v.type = jbvNumeric;
    v.val.numeric = int64_to_numeric(n);
    pushJsonbValue(st, WJB_VALUE, &v);
}

void push_jsonb(JsonbParseState **st, Jsonb *j) {
    JsonbValue v;
    if (j == nullptr) {
        v.type = jbvNull;
        pushJsonbValue(st, WJB_VALUE, &v);
        return;
    }
    v.type = jbvBinary;
    v.val.binary.data = &j->root;
    v.val.binary.len = VARSIZE(j) - VARHDRSZ;
    pushJsonbValue(st, WJB_VALUE, &v);
}

// {name: output} of the given positions (in jsonb's key order once serialised).
Jsonb *outputs_object(const RunState *r, const int *positions, int n) {
    JsonbParseState *st = nullptr;
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    for (int i = 0; i < n; i++) {
        push_key(&st, r->pipeline->steps[positions[i]].name);
        push_jsonb(&st, r->outputs[positions[i]]);
    }
    return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, nullptr));
}

// The generic way: pushJsonbValue unpacks every nested container and JsonbValueToJsonb serialises it all again.
Jsonb *build_context_generic(const RunState *r, int pos, int attempt, Jsonb *prev) {
    // Keys pushed in jsonb's own order (shorter first, then bytewise): the object's final sort finds them sorted.
    JsonbParseState *st = nullptr;
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    if (r->task >= 0) {
        push_key(&st, "item");
        push_jsonb(&st, r->item);
    }
    push_key(&st, "prev");
    push_jsonb(&st, prev);
    push_key(&st, "step");
    push_string(&st, r->pipeline->steps[pos].name);
    if (r->task >= 0) {
        push_key(&st, "index");
        push_int(&st, r->task);
    }
    push_key(&st, "input");
    push_jsonb(&st, r->input);
    push_key(&st, "run_id");
    push_int(&st, r->id);
    push_key(&st, "attempt");
    push_int(&st, attempt);
    push_key(&st, "results");
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    for (int i = 0; i < r->pipeline->nsteps; i++) {
        if (!r->done[i]) continue;
        push_key(&st, r->pipeline->steps[i].name);
        push_jsonb(&st, r->outputs[i]);
    }
    pushJsonbValue(&st, WJB_END_OBJECT, nullptr);
    push_key(&st, "metadata");
    push_jsonb(&st, r->metadata);
    push_key(&st, "pipeline");
    push_string(&st, r->pipeline_name);
    push_key(&st, "position");
    push_int(&st, pos + 1);
    JsonbValue *res = pushJsonbValue(&st, WJB_END_OBJECT, nullptr);
    return JsonbValueToJsonb(res);
}


// ------------------------------------------------------------------ direct serialisation
// The context is written in jsonb's on-disk layout directly (utils/jsonb.h, jsonb_util.c convertJsonbObject): the
// nested values (input, metadata, prev, results) are copied as the containers they already are instead of being
// unpacked and serialised again (that was ~14 % of a W1 drain's CPU). Layout of an object: [pad to int] header
// (count | JB_FOBJECT), 2 x count JEntries (keys, then values, keys in jsonb order: shorter first, then bytewise),
// then the keys' bytes and the values' data; each JEntry holds its item's length, every JB_OFFSET_STRIDE-th one
// the end offset instead; numerics and containers are padded to int alignment, the padding counted in their length.

// Bytes appended: the buffer is sized for the whole context before writing starts (context_size), so this is a
// memcpy. (appendBinaryStringInfo's call, check and terminating zero, ~40 times a context, with the buffer grown
// from 1 kB: 6 % of a W1 run's CPU went to building contexts of ~300 bytes until 2026-12-06.)
inline void put_bytes(StringInfo b, const void *data, int len) {
    if (b->len + len >= b->maxlen) enlargeStringInfo(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

inline void put_zeros(StringInfo b, int len) {
    if (b->len + len >= b->maxlen) enlargeStringInfo(b, len);
    memset(b->data + b->len, 0, len);
    b->len += len;
}

void pad_to_int(StringInfo b) {
    int pad = INTALIGN(b->len) - b->len;
    if (pad > 0) put_zeros(b, pad);
}

JEntry put_string(StringInfo b, const char *str, int len) {
    put_bytes(b, str, len);
    return JENTRY_ISSTRING | static_cast<JEntry>(len);
}

JEntry put_numeric(StringInfo b, Numeric n) {
    int base = b->len;
    pad_to_int(b);
    put_bytes(b, n, VARSIZE_ANY(n));
    return JENTRY_ISNUMERIC | static_cast<JEntry>(b->len - base);
}

// A stored jsonb as a value: its root container copied, or its scalar (a root scalar is stored as a one-element
// array, which a nested value is not).
JEntry put_jsonb(StringInfo b, Jsonb *j) {
    if (j == nullptr) return JENTRY_ISNULL;
    if (JB_ROOT_IS_SCALAR(j)) {
        JsonbValue v;
        if (!JsonbExtractScalar(&j->root, &v)) elog(ERROR, "pipeline_worker: unexpected jsonb scalar");
        switch (v.type) {
            case jbvNull: return JENTRY_ISNULL;
            case jbvBool: return v.val.boolean ? JENTRY_ISBOOL_TRUE : JENTRY_ISBOOL_FALSE;
            case jbvString: return put_string(b, v.val.string.val, v.val.string.len);
            case jbvNumeric: return put_numeric(b, v.val.numeric);
            default: elog(ERROR, "pipeline_worker: unexpected jsonb scalar type %d", static_cast<int>(v.type));
        }
    }
    int base = b->len;
    pad_to_int(b);
    put_bytes(b, &j->root, VARSIZE(j) - VARHDRSZ);
    return JENTRY_ISCONTAINER | static_cast<JEntry>(b->len - base);
}

// A number as jsonb stores it; the small ones (attempts, positions, map indexes) converted once per process, the last
// other one (a run's id: asked for by each of its steps) kept until another is asked for. (Copied at once by the
// caller.)
Numeric small_or_new_numeric(int64 v) {
    static Numeric small[64];
    static Numeric last = nullptr;
    static int64 last_v = 0;
    if (v < 0 || v >= 64) {
        if (last == nullptr || last_v != v) {
            MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
            Numeric n = int64_to_numeric(v);
            MemoryContextSwitchTo(old);
            if (last != nullptr) pfree(last);
            last = n;
            last_v = v;
        }
        return last;
    }
    if (small[v] == nullptr) {
        MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
        small[v] = int64_to_numeric(v);
        MemoryContextSwitchTo(old);
    }
    return small[v];
}

// One member of an object being written: its key, and how to write its value.
struct Member {
    const char *key;
    int keylen;
    enum Kind { String, Number, Stored, Results } kind;
    const char *str;  // String
    int64 num;        // Number
    Jsonb *stored;    // Stored (NULL: JSON null)
};

// True if key a sorts before key b in jsonb order.
bool key_before(const char *a, int alen, const char *b, int blen) {
    if (alen != blen) return alen < blen;
    return memcmp(a, b, alen) < 0;
}

JEntry put_results(StringInfo b, const RunState *r, int pos);

// An object whose members are given in jsonb key order.
JEntry put_object(StringInfo b, const RunState *r, int pos, const Member *m, int n) {
    int base = b->len;
    pad_to_int(b);
    uint32 header = static_cast<uint32>(n) | JB_FOBJECT;
    put_bytes(b, &header, sizeof(header));
    int jentries = b->len;
    put_zeros(b, 2 * n * static_cast<int>(sizeof(JEntry)));
    uint32 total = 0;
    for (int i = 0; i < 2 * n; i++) {
        const Member &mm = m[i % n];
        JEntry meta;
        if (i < n) {
            meta = put_string(b, mm.key, mm.keylen);
        } else if (mm.kind == Member::String) {
            meta = put_string(b, mm.str, static_cast<int>(strlen(mm.str)));
        } else if (mm.kind == Member::Number) {
            meta = put_numeric(b, small_or_new_numeric(mm.num));
        } else if (mm.kind == Member::Stored) {
            meta = put_jsonb(b, mm.stored);
        } else {
            meta = put_results(b, r, pos);
        }
        total += JBE_OFFLENFLD(meta);
        if (total > JENTRY_OFFLENMASK)
            ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
                            errmsg("the step context exceeds the maximum jsonb object size")));
        if (i % JB_OFFSET_STRIDE == 0) meta = (meta & JENTRY_TYPEMASK) | total | JENTRY_HAS_OFF;
        memcpy(b->data + jentries + i * sizeof(JEntry), &meta, sizeof(JEntry));
    }
    return JENTRY_ISCONTAINER | static_cast<JEntry>(b->len - base);
}

// "results": the outputs of the finished steps, keyed by step name (unique within a pipeline).
JEntry put_results(StringInfo b, const RunState *r, int pos) {
    int nsteps = r->pipeline->nsteps, n = 0;
    Member on_stack[8] = {};
    Member *m = nsteps <= 8 ? on_stack : static_cast<Member *>(palloc(sizeof(Member) * nsteps));
    for (int i = 0; i < nsteps; i++) {
        if (!r->done[i]) continue;
        const char *name = r->pipeline->steps[i].name;
        Member mi = {name, static_cast<int>(strlen(name)), Member::Stored, nullptr, 0, r->outputs[i]};
        int j = n++;
        for (; j > 0 && key_before(mi.key, mi.keylen, m[j - 1].key, m[j - 1].keylen); j--) m[j] = m[j - 1];
        m[j] = mi;
    }
    JEntry e = put_object(b, r, pos, m, n);
    if (m != on_stack) pfree(m);
    return e;
}

size_t stored_size(const Jsonb *j) { return j == nullptr ? 0 : VARSIZE(j); }

// At least the size of the context (its keys, entries, padding and numbers are within the 512 + 16 a step), at most 1 MB
// (a larger one grows as it is written).
size_t context_size(const RunState *r, const Jsonb *prev, const char *step) {
    size_t size = 512 + strlen(step) + strlen(r->pipeline_name) + stored_size(prev) + stored_size(r->input) +
                  stored_size(r->metadata) + (r->task >= 0 ? stored_size(r->item) : 0);
    for (int i = 0; i < r->pipeline->nsteps; i++)
        if (r->done[i]) size += 16 + strlen(r->pipeline->steps[i].name) + stored_size(r->outputs[i]);
    return size < 1024 * 1024 ? size : 1024 * 1024;
}

Jsonb *build_context_direct(const RunState *r, int pos, int attempt, Jsonb *prev) {
    const char *step = r->pipeline->steps[pos].name;
    // in jsonb key order (a map task's "item" and "index" where they sort)
    Member m[11];
    int n = 0;
    if (r->task >= 0) m[n++] = {"item", 4, Member::Stored, nullptr, 0, r->item};
    m[n++] = {"prev", 4, Member::Stored, nullptr, 0, prev};
    m[n++] = {"step", 4, Member::String, step, 0, nullptr};
    if (r->task >= 0) m[n++] = {"index", 5, Member::Number, nullptr, r->task, nullptr};
    m[n++] = {"input", 5, Member::Stored, nullptr, 0, r->input};
    m[n++] = {"run_id", 6, Member::Number, nullptr, r->id, nullptr};
    m[n++] = {"attempt", 7, Member::Number, nullptr, attempt, nullptr};
    m[n++] = {"results", 7, Member::Results, nullptr, 0, nullptr};
    m[n++] = {"metadata", 8, Member::Stored, nullptr, 0, r->metadata};
    m[n++] = {"pipeline", 8, Member::String, r->pipeline_name, 0, nullptr};
    m[n++] = {"position", 8, Member::Number, nullptr, pos + 1, nullptr};
    StringInfoData b;
    size_t size = context_size(r, prev, step);
    b.data = static_cast<char *>(palloc(size));
    b.maxlen = static_cast<int>(size);
    b.len = 0;
    b.cursor = 0;
    put_zeros(&b, VARHDRSZ);
    (void)put_object(&b, r, pos, m, n);
    SET_VARSIZE(b.data, b.len);
    return reinterpret_cast<Jsonb *>(b.data);
}

// The first contexts of each backend are also built the generic way and compared byte for byte: a difference (a
// layout this writer gets wrong) is logged once and the generic way used from then on.
int checks_left = 100;
bool direct_ok = true;

}  // namespace

Jsonb *step_prev(const RunState *r, int pos) {
    const store::Step &s = r->pipeline->steps[pos];
    if (s.ndeps == 0) return r->input;
    if (s.ndeps == 1) return r->outputs[s.deps[0]];
    return outputs_object(r, s.deps, s.ndeps);
}

Jsonb *run_result(const RunState *r) {
    const store::Pipeline *p = r->pipeline;
    if (p->nsinks == 1) return r->outputs[p->sinks[0]];
    return outputs_object(r, p->sinks, p->nsinks);
}

Jsonb *build_context(const RunState *r, int pos, int attempt) {
    Jsonb *prev = step_prev(r, pos);
    if (!direct_ok) return build_context_generic(r, pos, attempt, prev);
    Jsonb *fast = build_context_direct(r, pos, attempt, prev);
    if (checks_left > 0) {
        checks_left--;
        Jsonb *generic = build_context_generic(r, pos, attempt, prev);
        if (VARSIZE(fast) != VARSIZE(generic) || memcmp(fast, generic, VARSIZE(fast)) != 0) {
            ereport(WARNING, (errmsg("pipeline_worker: the step context writer disagrees with jsonb's; using "
                                     "jsonb's from now on in this process")));
            direct_ok = false;
            pfree(fast);
            return generic;
        }
        pfree(generic);
    }
    return fast;
}

void note_wait(RunState *r, TimestampTz wake_at, const char *event) {
    r->waits = true;
    if (wake_at != 0 && (r->wait_until == 0 || wake_at < r->wait_until)) r->wait_until = wake_at;
    if (event == nullptr) return;
    if (r->wait_event == nullptr) r->wait_event = event;
    else if (strcmp(r->wait_event, event) != 0) r->wait_event = "*";
}

Jsonb *json_array(Jsonb *const *items, int n) {
    JsonbParseState *st = nullptr;
    pushJsonbValue(&st, WJB_BEGIN_ARRAY, nullptr);
    for (int i = 0; i < n; i++) {
        JsonbValue v;
        if (items[i] == nullptr) {
            v.type = jbvNull;
        } else {
            v.type = jbvBinary;
            v.val.binary.data = &items[i]->root;
            v.val.binary.len = VARSIZE(items[i]) - VARHDRSZ;
        }
        pushJsonbValue(&st, WJB_ELEM, &v);
    }
    return JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, nullptr));
}

Jsonb *json_null() { return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))); }

RunState *new_run_state(const store::ClaimedRun *claimed, store::Pipeline *p, MemoryContext run_ctx) {
    RunState *r = static_cast<RunState *>(MemoryContextAllocZero(run_ctx, sizeof(RunState)));
    r->id = claimed->id;
    r->pipeline_name = claimed->pipeline;
    r->submitter = claimed->submitter;
    r->input = claimed->input;
    r->metadata = claimed->metadata;
    r->pipeline = p;
    r->outputs = static_cast<Jsonb **>(MemoryContextAllocZero(run_ctx, sizeof(Jsonb *) * p->nsteps));
    r->last_attempt = static_cast<int *>(MemoryContextAllocZero(run_ctx, sizeof(int) * p->nsteps));
    r->interrupted = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * p->nsteps));
    r->done = static_cast<bool *>(MemoryContextAllocZero(run_ctx, sizeof(bool) * p->nsteps));
    r->waiting_since = static_cast<TimestampTz *>(MemoryContextAllocZero(run_ctx, sizeof(TimestampTz) * p->nsteps));
    r->waiting_note = static_cast<Jsonb **>(MemoryContextAllocZero(run_ctx, sizeof(Jsonb *) * p->nsteps));
    r->task = -1;
    return r;
}

}  // namespace pw::exec
