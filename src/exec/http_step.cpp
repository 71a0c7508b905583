#include "exec/http_step.hpp"

#include "core/definition.hpp"
#include "core/json.hpp"
#include "exec/http_queue.hpp"
#include "pg/boundary.hpp"
#include "pg/roles.hpp"
#include "pg/spi.hpp"
#include "shmem/metrics.hpp"
#include "store/writes.hpp"

namespace pw::exec {

namespace {

// Copies the run and the outputs so far into a new context: the call outlives the transaction.
HttpCall *make_http_call(const store::ClaimedRun *claimed, const RunState *r, int pos, int attempt, TimestampTz started,
                         Jsonb *context, MemoryContext parent) {
    MemoryContext ctx = AllocSetContextCreate(parent, "pipeline_worker http call", ALLOCSET_SMALL_SIZES);
    MemoryContext old = MemoryContextSwitchTo(ctx);
    HttpCall *c = static_cast<HttpCall *>(palloc0(sizeof(HttpCall)));
    c->ctx = ctx;
    c->run = *claimed;
    c->run.pipeline = pstrdup(claimed->pipeline);
    c->run.input = claimed->input ? DatumGetJsonbPCopy(JsonbPGetDatum(claimed->input)) : nullptr;
    c->run.metadata = claimed->metadata ? DatumGetJsonbPCopy(JsonbPGetDatum(claimed->metadata)) : nullptr;
    c->run.persisted = true;  // the worker records the claim before the request leaves
    c->pos = pos;
    c->task = r->task;
    c->step_name = pstrdup(r->pipeline->steps[pos].name);
    c->attempt = attempt;
    c->started = started;
    int nsteps = r->pipeline->nsteps;
    c->nsteps = nsteps;
    c->outputs = static_cast<Jsonb **>(palloc0(sizeof(Jsonb *) * nsteps));
    c->done = static_cast<bool *>(palloc0(sizeof(bool) * nsteps));
    for (int i = 0; i < nsteps; i++) {
        c->done[i] = r->done[i];
        if (r->done[i] && r->outputs[i] != nullptr) c->outputs[i] = DatumGetJsonbPCopy(JsonbPGetDatum(r->outputs[i]));
    }
    store::Step *step = &r->pipeline->steps[pos];
    c->url = pstrdup(step->url);
    c->method = pstrdup(step->method);
    c->timeout_ms = step->timeout_ms > 0 ? step->timeout_ms : 10000;
    c->follow_redirects = step->follow_redirects;
    c->headers = static_cast<char **>(palloc0(sizeof(char *) * (step->nheaders + 2)));
    c->header_secret = static_cast<bool *>(palloc0(sizeof(bool) * (step->nheaders + 2)));
    c->headers[c->nheaders++] = psprintf("Pipeline-Run-Id: %lld", (long long)claimed->id);
    c->headers[c->nheaders++] =
        r->task >= 0 ? psprintf("Idempotency-Key: %lld:%d.%d:%d", (long long)claimed->id, pos + 1, r->task, attempt)
                     : psprintf("Idempotency-Key: %lld:%d:%d", (long long)claimed->id, pos + 1, attempt);
    for (int h = 0; h < step->nheaders; h++) {
        const char *name = step->header_names[h], *value = step->header_values[h];
        if (pg_strcasecmp(name, "Pipeline-Run-Id") == 0 || pg_strcasecmp(name, "Idempotency-Key") == 0)
            continue;  // ours: endpoints rely on them
        if (core::is_client_managed_header(name)) continue;  // create_pipeline refuses them; older definitions
        c->header_secret[c->nheaders] = step->header_secret[h];
        // libcurl reads "Name:" as "remove this header"; "Name;" sends it empty
        c->headers[c->nheaders++] = value[0] == '\0' ? psprintf("%s;", name) : psprintf("%s: %s", name, value);
    }
    if (strcmp(c->method, "GET") != 0 && strcmp(c->method, "DELETE") != 0) {
        c->body = JsonbToCString(nullptr, &context->root, VARSIZE(context));
        c->body_len = static_cast<int>(strlen(c->body));
    }
    MemoryContextSwitchTo(old);
    return c;
}

// A 2xx body as the step output: JSON when it is JSON, otherwise a JSON string; empty: JSON null.
// NULL with *error set when it is neither JSON nor text in the database encoding, or JSON that jsonb cannot hold
// (\u0000, a number out of range, nesting deeper than the stack allows): never silently a string. *retryable is
// set when jsonb_in failed for another reason than the data (out of memory, ...).
Jsonb *body_to_jsonb(const char *body, size_t len, const char **error, bool *retryable) {
    if (len == 0) return json_null();
    // JSON after a UTF-8 byte order mark is JSON (RFC 8259 lets a parser ignore it; until 2026-12-07 such a body was
    // stored as a string). The mark is left out of the JSON only: a body that is text keeps it.
    const char *json_body = body;
    size_t json_len = len;
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) {
        json_body += 3;
        json_len -= 3;
    }
    // The C++ parser tells JSON from text without a subtransaction; what it refuses only for its limits (depth
    // 256, \u0000, surrogates) goes to jsonb_in too.
    bool is_json = false;
    pg::CppError perr = pg::cpp_call([&] {
        try {
            // (the grammar only: a tree of the body took ~90 times its size, until 2026-12-05)
            json::validate(std::string(json_body, json_len));
            is_json = true;
        } catch (const json::ParseError &e) {
            is_json = e.beyond_limits;  // JSON by its grammar: jsonb_in decides (and says why it refuses)
        }
    });
    if (perr.failed) {  // not a verdict on the body (out of memory): try again later rather than store a string
        *error = psprintf("could not examine the response: %s", perr.message);
        *retryable = true;
        return nullptr;
    }
    // (checked before jsonb_in too: it trusts its input's encoding, and a JSON body with invalid bytes in a string
    // was stored as such until 2026-12-05)
    bool valid_text = memchr(body, '\0', len) == nullptr && pg_verifymbstr(body, static_cast<int>(len), true);
    if (is_json && valid_text) {
        MemoryContext before = CurrentMemoryContext;
        ResourceOwner owner = CurrentResourceOwner;
        Jsonb *volatile out = nullptr;
        char *volatile refusal = nullptr;
        volatile bool transient = false;
        BeginInternalSubTransaction(nullptr);
        MemoryContextSwitchTo(before);
        PG_TRY();
        {
            out = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(json_body, json_len))));
            ReleaseCurrentSubTransaction();
        }
        PG_CATCH();
        {
            MemoryContextSwitchTo(before);
            ErrorData *ed = CopyErrorData();
            FlushErrorState();
            RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(before);  // the message lives with the answer, not in a transaction context
            int category = ERRCODE_TO_CATEGORY(ed->sqlerrcode);
            if (category == ERRCODE_DATA_EXCEPTION || category == ERRCODE_PROGRAM_LIMIT_EXCEEDED) {
                refusal = psprintf("the response body looks like JSON but jsonb cannot store it: %s", ed->message);
            } else {
                refusal = psprintf("could not store the response as jsonb: %s", ed->message);
                transient = true;
            }
            FreeErrorData(ed);
        }
        PG_END_TRY();
        MemoryContextSwitchTo(before);
        CurrentResourceOwner = owner;
        if (out != nullptr) return out;
        *error = refusal;
        *retryable = transient;
        return nullptr;
    }
    if (!valid_text) {
        *error = "the response body is not valid JSON or text in the database encoding";
        return nullptr;
    }
    JsonbValue v;
    v.type = jbvString;
    v.val.string.val = const_cast<char *>(body);
    v.val.string.len = static_cast<int>(len);
    return JsonbValueToJsonb(&v);
}

// Error texts quote the response body and URLs: keep them valid in the database encoding.
const char *valid_text(char *s) {
    int len = static_cast<int>(strlen(s));
    if (pg_verifymbstr(s, len, true)) return s;
    for (int i = 0; i < len; i++)
        if (static_cast<unsigned char>(s[i]) >= 0x80) s[i] = '?';
    return s;
}

// What became of a request, for metrics().
metrics::HttpOutcome outcome_of(const HttpCall *answer) {
    if (answer->cancelled) return metrics::kHttpCancelled;
    if (answer->ok) return metrics::kHttpSuccess;
    if (answer->status >= 400 && answer->status < 500) return metrics::kHttpClientError;
    if (answer->status > 0) return metrics::kHttpServerError;
    if (answer->error != nullptr && strncmp(answer->error, "request timed out", 17) == 0) return metrics::kHttpTimeout;
    return metrics::kHttpNetworkError;
}

// The answer of an attempt as its result.
StepResult answer_result(HttpCall *answer, MemoryContext run_ctx) {
    metrics::http_done(answer->run.pipeline != nullptr ? answer->run.pipeline : "", outcome_of(answer));
    StepResult res;
    if (answer->cancelled) {
        res.error = "cancelled";
    } else if (answer->ok) {
        const char *conv_error = nullptr;
        bool conv_retryable = false;
        MemoryContext old = MemoryContextSwitchTo(run_ctx);
        res.output = body_to_jsonb(answer->resp, answer->resp_len, &conv_error, &conv_retryable);
        MemoryContextSwitchTo(old);
        if (res.output == nullptr) {
            res.error = conv_error;
            res.retryable = conv_retryable;
        }
    } else {
        res.error = answer->error ? valid_text(answer->error) : "request failed";
        res.retryable = answer->retryable;
        res.retry_after_ms = answer->retry_after_ms;
    }
    return res;
}

}  // namespace

StepResult run_http_step(const store::ClaimedRun *claimed, const RunState *r, int pos, int attempt,
                         TimestampTz started, HttpCall *answer, HttpIO *io, MemoryContext run_ctx) {
    if (answer == nullptr) {
        const store::Pipeline *p = r->pipeline;
        if (!pg::may_call_http(p->owner)) {
            StepResult res;
            res.error = psprintf("the owner of pipeline \"%s\" (role \"%s\") is no longer a member of "
                                 "pipeline_worker_http", p->name, pg::role_name(p->owner));
            return res;
        }
        MemoryContext old = MemoryContextSwitchTo(run_ctx);
        Jsonb *context = build_context(r, pos, attempt);
        MemoryContextSwitchTo(old);
        bool park = io != nullptr && io->park_parent != nullptr;
        HttpCall *call = make_http_call(claimed, r, pos, attempt, started, context, park ? io->park_parent : run_ctx);
        pfree(context);  // (the call has its body: a map's tasks each built one, the size of the map's input)
        if (park) {
            // The worker commits this row (and the claim) before the request leaves.
            store::buffer_step(r->id, pos, attempt, p->steps[pos].name, core::StepStatus::Running, nullptr, nullptr,
                               started, true, r->task);
            add_parked(io, call);
            StepResult res;
            res.parked = true;
            return res;
        }
        SPI_finish();
        httpq::call_sync(call);  // SQL path: inside the caller's transaction
        pg::spi_connect();
        answer = call;
    }
    return answer_result(answer, run_ctx);
}

void record_late_answer(HttpCall *call) {
    StepResult res = answer_result(call, CurrentMemoryContext);
    metrics::step_done(call->run.pipeline != nullptr ? call->run.pipeline : "", metrics::kHttp, res.succeeded());
    if (res.succeeded())
        store::buffer_late_step(call->run.id, call->pos, call->attempt, call->step_name, core::StepStatus::Succeeded,
                                res.output, nullptr, call->started, call->task);
    else
        store::buffer_late_step(call->run.id, call->pos, call->attempt, call->step_name, core::StepStatus::Failed,
                                nullptr, res.error != nullptr ? res.error : "failed", call->started, call->task);
}

void record_cancelled_call(HttpCall *call, const char *why) {
    store::buffer_late_step(call->run.id, call->pos, call->attempt, call->step_name, core::StepStatus::Failed, nullptr,
                            why, call->started, call->task);
}

}  // namespace pw::exec
