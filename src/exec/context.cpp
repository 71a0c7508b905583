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

}  // namespace

Jsonb *build_context(const RunState *r, int pos, int attempt) {
    // Keys pushed in jsonb's own order (shorter first, then bytewise): the object's final sort finds them sorted
    // and does not shuffle them (it was ~3 % of a W1 drain's CPU). The stored order is the same either way.
    JsonbParseState *st = nullptr;
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    push_key(&st, "prev");
    push_jsonb(&st, pos == 0 ? r->input : r->outputs[pos - 1]);
    push_key(&st, "step");
    push_string(&st, r->pipeline->steps[pos].name);
    push_key(&st, "input");
    push_jsonb(&st, r->input);
    push_key(&st, "run_id");
    push_int(&st, r->id);
    push_key(&st, "attempt");
    push_int(&st, attempt);
    push_key(&st, "results");
    pushJsonbValue(&st, WJB_BEGIN_OBJECT, nullptr);
    for (int i = 0; i < pos; i++) {
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

Jsonb *json_null() { return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("null"))); }

}  // namespace pw::exec
