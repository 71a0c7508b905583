#include "store/pipelines.hpp"

extern "C" {
#include "common/int.h"
}

#include "core/definition.hpp"
#include "core/graph.hpp"
#include "pg/boundary.hpp"
#include "pg/kept_plans.hpp"
#include "pg/spi.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"

extern "C" {
#include "commands/async.h"
#include "utils/json.h"
}

namespace pw::store {

using pg::col;

namespace {

struct CacheEntry {
    char key[256];
    uint64 generation;  // shared pipelines generation when loaded
    Pipeline *pipeline;
    // Loaded with a transaction snapshot (REPEATABLE READ, SERIALIZABLE): only for that transaction. Its snapshot
    // may predate the change that bumped the generation read: cached under that generation, the old definition
    // served every later transaction until the next change (until 2026-12-07; review).
    bool xact_snapshot;
    LocalTransactionId lxid;
    // What it was parsed from: a reload that reads the same (as under those levels, every transaction) keeps it.
    int64 id;
    Oid owner;
    char *steps, *options;
};

HTAB *pipeline_cache = nullptr;
MemoryContext cache_ctx = nullptr;

void pipeline_cache_init() {
    if (pipeline_cache != nullptr) return;
    cache_ctx = AllocSetContextCreate(TopMemoryContext, "pipeline_worker cache", ALLOCSET_DEFAULT_SIZES);
    HASHCTL ctl;
    memset(&ctl, 0, sizeof(ctl));
    ctl.keysize = sizeof(((CacheEntry *)nullptr)->key);
    ctl.entrysize = sizeof(CacheEntry);
    ctl.hcxt = cache_ctx;
    pipeline_cache = hash_create("pipeline_worker pipelines", 64, &ctl, HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

}  // namespace

int64 interval_usecs(const char *text, const char *what, Interval *parsed) {
    MemoryContext ctx = CurrentMemoryContext;
    Interval *iv = nullptr;
    PG_TRY();
    {
        iv = DatumGetIntervalP(DirectFunctionCall3(interval_in, CStringGetDatum(text), ObjectIdGetDatum(InvalidOid),
                                                   Int32GetDatum(-1)));
    }
    PG_CATCH();
    {
        MemoryContextSwitchTo(ctx);
        FlushErrorState();
        iv = nullptr;
    }
    PG_END_TRY();
    if (iv == nullptr)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: invalid interval \"%s\"", what, text),
                        errhint("Write an interval such as '7 days' or '12 hours'.")));
    if (parsed != nullptr) *parsed = *iv;
    // (overflow-checked: an interval too long for microseconds is refused, never wrapped round into a short one)
    int64 days_us, months_us, sum;
    if (pg_mul_s64_overflow(int64(iv->day), USECS_PER_DAY, &days_us) ||
        pg_mul_s64_overflow(int64(iv->month) * DAYS_PER_MONTH, USECS_PER_DAY, &months_us) ||
        pg_add_s64_overflow(iv->time, days_us, &sum) || pg_add_s64_overflow(sum, months_us, &sum))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("%s: interval \"%s\" is too long", what, text),
                        errhint("Write an interval such as '7 days' or '12 hours'.")));
    return sum;
}

namespace {

// The HTTP parts of step s, copied into palloc memory (inside pg::cpp_call: no ereport here).
void copy_http(Step *step, const core::StepSpec &s) {
    size_t nh = s.http.headers.size();
    step->url = pg::pstrdup_guarded(s.http.url);
    step->method = pg::pstrdup_guarded(s.http.method);
    step->follow_redirects = s.http.follow_redirects;
    step->nheaders = static_cast<int>(nh);
    step->header_names = static_cast<char **>(pg::palloc0_guarded(sizeof(char *) * nh));
    step->header_values = static_cast<char **>(pg::palloc0_guarded(sizeof(char *) * nh));
    step->header_secret = static_cast<bool *>(pg::palloc0_guarded(sizeof(bool) * nh));
    for (size_t h = 0; h < nh; h++) {
        const auto &kv = s.http.headers[h];
        step->header_names[h] = pg::pstrdup_guarded(kv.first);
        step->header_values[h] = pg::pstrdup_guarded(kv.second);
        for (const auto &sec : s.http.secret_headers)
            if (strcasecmp(sec.c_str(), kv.first.c_str()) == 0) step->header_secret[h] = true;
    }
}

// The step's "if" as jsonb and its "sleep" as microseconds, checked (after pg::cpp_call: these may ereport).
void set_condition_and_sleep(Step *step, const char *if_json, const char *sleep) {
    if (if_json != nullptr) step->if_cond = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(if_json)));
    if (sleep == nullptr) return;
    char *what = psprintf("step \"%s\": \"sleep\"", step->name);
    // (its bound with months as 30 days; an interval too long for microseconds is refused with the negative ones)
    int64 us = interval_usecs(sleep, psprintf("invalid pipeline definition: %s", what), &step->sleep_iv);
    constexpr int64 kMaxSleepUs = INT64CONST(1000) * 365 * USECS_PER_DAY;
    if (us < 0 || us > kMaxSleepUs)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: %s must be an interval from 0 to 365000 days", what),
                        errhint("Example: \"sleep\": \"5 minutes\".")));
}

}  // namespace

Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json) {
    Pipeline *p = static_cast<Pipeline *>(palloc0(sizeof(Pipeline)));
    p->name = pstrdup(name);
    // Parsed in pure C++; copied into palloc memory through pg_guard before the C++ objects die.
    int nsteps = 0;
    Step *steps = nullptr;
    lanes::Limits limits, per_key;
    char *retention = nullptr;
    bool notify = false;
    char **if_json = nullptr, **sleep = nullptr;
    int *order = nullptr, *sinks = nullptr, nsinks = 0;
    bool linear = true;
    pg::CppError err = pg::cpp_call([&] {
        core::Definition def = core::parse_definition(steps_json, options_json, /*stored=*/true);
        size_t n = def.steps.size();
        steps = static_cast<Step *>(pg::palloc0_guarded(sizeof(Step) * n));
        if_json = static_cast<char **>(pg::palloc0_guarded(sizeof(char *) * n));
        sleep = static_cast<char **>(pg::palloc0_guarded(sizeof(char *) * n));
        order = static_cast<int *>(pg::palloc0_guarded(sizeof(int) * n));
        for (size_t i = 0; i < n; i++) order[i] = def.order[i];
        {
            core::StepGraph g{def.deps, def.order};
            std::vector<int> sk = core::sink_steps(g);
            sinks = static_cast<int *>(pg::palloc0_guarded(sizeof(int) * sk.size()));
            for (size_t k = 0; k < sk.size(); k++) sinks[k] = sk[k];
            nsinks = static_cast<int>(sk.size());
        }
        for (size_t i = 0; i < n; i++) {
            const core::StepSpec &s = def.steps[i];
            steps[i].name = pg::pstrdup_guarded(s.name);
            steps[i].kind = s.kind;
            steps[i].function = s.kind == core::StepKind::Function ? pg::pstrdup_guarded(s.function) : nullptr;
            steps[i].is_http = s.is_http;
            steps[i].ndeps = static_cast<int>(def.deps[i].size());
            steps[i].deps = static_cast<int *>(pg::palloc0_guarded(sizeof(int) * (def.deps[i].size() + 1)));
            for (size_t d = 0; d < def.deps[i].size(); d++) steps[i].deps[d] = def.deps[i][d];
            if (!(def.deps[i].size() == (i == 0 ? 0 : 1) && (i == 0 || def.deps[i][0] == static_cast<int>(i - 1))))
                linear = false;
            if (!s.if_json.empty()) {
                if_json[i] = pg::pstrdup_guarded(s.if_json);
                linear = false;
            }
            if (s.kind == core::StepKind::Sleep) sleep[i] = pg::pstrdup_guarded(s.sleep);
            if (s.kind == core::StepKind::WaitFor) steps[i].event = pg::pstrdup_guarded(s.wait_for);
            steps[i].map = s.map;
            if (s.kind == core::StepKind::Pipeline) steps[i].child = pg::pstrdup_guarded(s.child);
            steps[i].max_parallel = s.max_parallel;
            steps[i].fn_oid = InvalidOid;
            steps[i].fn_generation = 0;
            steps[i].max_attempts = def.max_attempts(i);
            steps[i].retry_delay_ms = def.retry_delay_ms(i);
            steps[i].timeout_ms = s.is_http ? def.http_timeout_ms(i) : def.timeout_ms(i);
            if (s.is_http) copy_http(&steps[i], s);
        }
        nsteps = static_cast<int>(def.steps.size());
        const core::Options &o = def.options;
        limits.concurrency = o.concurrency;
        limits.rate_runs = o.rate_limit.runs;
        limits.rate_ms = o.rate_limit.per_ms;
        per_key.concurrency = o.concurrency_per_key;
        per_key.rate_runs = o.rate_limit_per_key.runs;
        per_key.rate_ms = o.rate_limit_per_key.per_ms;
        if (!o.retention.empty()) retention = pg::pstrdup_guarded(o.retention);
        notify = o.notify;
    });
    pg::raise_if_failed(err, "invalid pipeline definition");
    p->nsteps = nsteps;
    p->steps = steps;
    p->order = order;
    p->sinks = sinks;
    p->nsinks = nsinks;
    p->linear = linear;
    for (int i = 0; i < nsteps; i++) set_condition_and_sleep(&steps[i], if_json[i], sleep[i]);
    p->limits = limits;
    p->limits_per_key = per_key;
    p->notify = notify;
    if (retention != nullptr && strcmp(retention, "-1") != 0 &&
        interval_usecs(retention, "invalid pipeline definition: option \"retention\"") <= 0)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pipeline definition: option \"retention\" must be a positive interval, or -1"),
                        errhint("Example: \"retention\": \"30 days\" (finished runs older than that are deleted); "
                                "-1 keeps them forever.")));
    return p;
}

namespace {

SPIPlanPtr plan_load_secrets, plan_load_pipeline;

// Secret header values are kept out of pipelines.steps (masked there); the workers read them here.
void load_secrets(Pipeline *p) {
    bool any = false;
    for (int i = 0; i < p->nsteps; i++)
        for (int h = 0; h < p->steps[i].nheaders; h++) any = any || p->steps[i].header_secret[h];
    if (!any) return;
    Oid types[1] = {INT8OID};
    SPIPlanPtr plan = pg::prepare(&plan_load_secrets,
                              "SELECT step, header, value FROM pipeline_worker.pipeline_secrets WHERE pipeline_id = $1",
                              1, types);
    Datum v[1] = {Int64GetDatum(p->id)};
    pg::exec_as_owner(plan, v, nullptr, false, 0);  // (as committed now: see load_pipeline)
    for (uint64 r = 0; r < SPI_processed; r++) {
        bool isnull;
        char *step = TextDatumGetCString(col(r, 1, &isnull));
        char *header = TextDatumGetCString(col(r, 2, &isnull));
        for (int i = 0; i < p->nsteps; i++) {
            Step *s = &p->steps[i];
            if (strcmp(s->name, step) != 0) continue;
            for (int h = 0; h < s->nheaders; h++)
                if (s->header_secret[h] && pg_strcasecmp(s->header_names[h], header) == 0)
                    s->header_values[h] = MemoryContextStrdup(cache_ctx, TextDatumGetCString(col(r, 3, &isnull)));
        }
    }
}

}  // namespace

Pipeline *load_pipeline(const char *name) {
    pipeline_cache_init();
    char key[256];
    strlcpy(key, name, sizeof(key));
    bool found;
    CacheEntry *e = static_cast<CacheEntry *>(hash_search(pipeline_cache, key, HASH_FIND, &found));
    // Pipelines are immutable; a committed create/drop bumps the shared generation. Read it before the
    // table so that a change committed meanwhile makes the next lookup reload.
    shared::State *st = shared::state();
    uint64 generation = st != nullptr ? pg_atomic_read_u64(&st->pipelines_generation) : 0;
    if (found && st != nullptr && e->generation == generation && strcmp(e->pipeline->name, name) == 0 &&
        (!e->xact_snapshot || e->lxid == MyProc->lxid))
        return e->pipeline;

    Oid types[1] = {TEXTOID};
    SPIPlanPtr plan = pg::prepare(&plan_load_pipeline,
                              "SELECT steps::text, options::text, owner::oid, id FROM pipeline_worker.pipelines"
                              " WHERE name = $1",
                              1, types);
    Datum v[1] = {CStringGetTextDatum(name)};
    // Not read-only: a worker's batch transaction may have begun before the change that sent us here committed,
    // and a read-only statement reads with that first snapshot -- the old definition, cached under the new
    // generation for every later run (test/scripts/fresh_definitions.sh).
    pg::exec_as_owner(plan, v, nullptr, false, 1);
    if (SPI_processed == 0) {
        if (found) hash_search(pipeline_cache, key, HASH_REMOVE, nullptr);
        return nullptr;
    }
    bool isnull;
    Oid owner = DatumGetObjectId(col(0, 3, &isnull));
    char *steps = TextDatumGetCString(col(0, 1, &isnull));
    char *options = TextDatumGetCString(col(0, 2, &isnull));
    int64 id = DatumGetInt64(col(0, 4, &isnull));
    // (Its secret header values are kept too: they are written only by create_pipeline, under a new id.)
    if (found && e->id == id && e->owner == owner && strcmp(e->steps, steps) == 0 && strcmp(e->options, options) == 0) {
        e->generation = generation;  // (unchanged: the parsed one stays, nothing more kept in cache_ctx)
        e->xact_snapshot = IsolationUsesXactSnapshot();
        e->lxid = MyProc->lxid;
        return e->pipeline;
    }
    MemoryContext old = MemoryContextSwitchTo(cache_ctx);
    Pipeline *p = parse_pipeline(name, steps, options);  // replaced versions stay in cache_ctx (rare)
    p->owner = owner;
    p->id = id;
    char *kept_steps = pstrdup(steps), *kept_options = pstrdup(options);
    MemoryContextSwitchTo(old);
    load_secrets(p);
    e = static_cast<CacheEntry *>(hash_search(pipeline_cache, key, HASH_ENTER, &found));
    e->generation = generation;
    e->pipeline = p;
    e->xact_snapshot = IsolationUsesXactSnapshot();
    e->lxid = MyProc->lxid;
    e->id = id;
    e->owner = owner;
    e->steps = kept_steps;
    e->options = kept_options;
    return p;
}

bool notifies(const char *pipeline) {
    Pipeline *p = pipeline != nullptr ? load_pipeline(pipeline) : nullptr;
    return p != nullptr && p->notify;
}

void note_finished(const char *pipeline, int64 run_id, core::RunStatus status, int64 duration_us) {
    metrics::run_finished(pipeline,
                          status == core::RunStatus::Succeeded ? metrics::kSucceeded
                          : status == core::RunStatus::Failed  ? metrics::kFailed
                                                               : metrics::kCancelled,
                          duration_us);
    if (!notifies(pipeline)) return;
    // ids and status only: NOTIFY reaches every listener, whatever it may see (row-level security does not apply)
    StringInfoData payload;
    initStringInfo(&payload);
    appendStringInfo(&payload, "{\"run_id\": %lld, \"pipeline\": ", static_cast<long long>(run_id));
    escape_json(&payload, pipeline);
    appendStringInfoString(&payload, ", \"status\": ");
    escape_json(&payload, core::to_text(status));
    appendStringInfoChar(&payload, '}');
    Async_Notify("pipeline_worker", payload.data);
}

}  // namespace pw::store
