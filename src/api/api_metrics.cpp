// metrics() (Prometheus text exposition) and metric_samples() (the same samples as rows, for
// prometheus-postgres-exporter's query file): counters from shared memory, of every database served; gauges of
// unfinished runs counted now when that is cheap, else as last counted (by this database's lead worker or a scrape).
#include "pg/spi.hpp"
#include "shmem/metrics.hpp"
#include "shmem/shared.hpp"
#include "store/stats.hpp"

extern "C" {
PG_FUNCTION_INFO_V1(pw_metric_samples);
PG_FUNCTION_INFO_V1(pw_metrics);
}

using namespace pw;

namespace {

constexpr long kGaugeMaxAgeMs = 30000;  // published gauges older than this are counted again by the scrape

struct Sample {
    const char *metric;
    const char *database;
    const char *pipeline;  // nullptr: no such label
    const char *status;    // status, or the workers' state
    const char *kind;
    const char *outcome;
    const char *le;
    double value;
};

struct Family {
    const char *name;
    const char *type;
    const char *help;
};

const Family kFamilies[] = {
    {"pipeline_worker_runs_created_total", "counter", "Runs created (committed) since the server started."},
    {"pipeline_worker_runs_finished_total", "counter", "Runs that finished, by final status, since the server started."},
    {"pipeline_worker_steps_total", "counter", "Step attempts that ended, by step kind and status, since the server started."},
    {"pipeline_worker_http_requests_total", "counter", "HTTP step requests by outcome, since the server started."},
    {"pipeline_worker_runs", "gauge",
     "Unfinished runs by status (pending: claimable now or once a pause or limit lets it; scheduled: run_at or a "
     "retry's back-off in the future)."},
    {"pipeline_worker_oldest_pending_seconds", "gauge",
     "Age of the oldest pending run (scheduled ones not counted); 0 when none."},
    {"pipeline_worker_workers", "gauge", "Background workers by state."},
    {"pipeline_worker_run_duration_seconds", "histogram", "Duration of finished runs (their last claim to finish)."},
};

struct Collector {
    Sample *samples = nullptr;
    int n = 0, cap = 0;

    Sample *add(const char *metric, const char *db, const char *pipeline, double value) {
        if (n == cap) {
            cap = cap == 0 ? 256 : cap * 2;
            samples = static_cast<Sample *>(samples == nullptr ? palloc(sizeof(Sample) * cap)
                                                              : repalloc(samples, sizeof(Sample) * cap));
        }
        Sample *s = &samples[n++];
        *s = Sample{metric, db, pipeline, nullptr, nullptr, nullptr, nullptr, value};
        return s;
    }
};

const char *db_name(Oid dboid) {
    char *name = get_database_name(dboid);
    return name != nullptr ? name : psprintf("%u", dboid);
}

// Whether dboid's published gauges still describe runs that exist: this database's (counted just now if stale), or
// one the workers serve with the extension there. A database dropped, or no longer served or without the extension
// (DROP EXTENSION), keeps its counters but not its last count of unfinished runs -- until 2026-12-03 those stayed,
// with an oldest-pending age growing for good.
bool gauges_current(Oid dboid) {
    if (dboid == MyDatabaseId) return true;
    shared::DbState *d = shared::state() != nullptr ? shared::db(dboid) : nullptr;
    return d != nullptr && pg_atomic_read_u32(&d->extension) == shared::kExtPresent;  // (not while re-probed)
}

// Every sample, grouped by family (kFamilies' order), then database and pipeline.
Collector collect() {
    metrics::note_scrape();  // the lead workers keep the gauges counted while scrapes come
    // this database's gauges: counted now when cheap or old (the count is published for the others to read)
    if (shared::state() != nullptr && store::gauges_stale(kGaugeMaxAgeMs)) store::refresh_gauges();
    metrics::Snapshot *snaps;
    int ns = metrics::snapshot(&snaps);
    const char **dbnames = static_cast<const char **>(palloc(sizeof(char *) * (ns > 0 ? ns : 1)));
    for (int i = 0; i < ns; i++) dbnames[i] = i > 0 && snaps[i].dboid == snaps[i - 1].dboid ? dbnames[i - 1] : db_name(snaps[i].dboid);
    for (int i = 0; i < ns; i++) snaps[i].has_gauges = snaps[i].has_gauges && gauges_current(snaps[i].dboid);
    TimestampTz now = GetCurrentTimestamp();
    Collector c;
    for (int i = 0; i < ns; i++) c.add(kFamilies[0].name, dbnames[i], snaps[i].pipeline, snaps[i].created);
    for (int i = 0; i < ns; i++)
        for (int f = 0; f < metrics::kFinishes; f++)
            c.add(kFamilies[1].name, dbnames[i], snaps[i].pipeline, snaps[i].finished[f])->status = metrics::kFinishNames[f];
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < metrics::kKinds; k++)
            for (int ok = 1; ok >= 0; ok--) {
                if (snaps[i].steps[k][0] + snaps[i].steps[k][1] == 0) continue;  // kinds the pipeline has used
                Sample *s = c.add(kFamilies[2].name, dbnames[i], snaps[i].pipeline, snaps[i].steps[k][ok]);
                s->kind = metrics::kKindNames[k];
                s->status = ok ? "succeeded" : "failed";
            }
    for (int i = 0; i < ns; i++)
        for (int o = 0; o < metrics::kOutcomes; o++)
            c.add(kFamilies[3].name, dbnames[i], snaps[i].pipeline, snaps[i].http[o])->outcome = metrics::kOutcomeNames[o];
    static const char *const gauge_status[] = {"pending", "scheduled", "running", "waiting"};
    for (int i = 0; i < ns; i++) {
        if (!snaps[i].has_gauges) continue;
        const metrics::Gauges &g = snaps[i].gauges;
        int64 values[] = {g.pending, g.scheduled, g.running, g.waiting};
        for (int k = 0; k < 4; k++) c.add(kFamilies[4].name, dbnames[i], snaps[i].pipeline, values[k])->status = gauge_status[k];
    }
    for (int i = 0; i < ns; i++) {
        if (!snaps[i].has_gauges) continue;
        TimestampTz oldest = snaps[i].gauges.oldest_pending;
        double age = oldest != 0 && oldest < now ? static_cast<double>(now - oldest) / 1e6 : 0;
        c.add(kFamilies[5].name, dbnames[i], snaps[i].pipeline, age);
    }
    if (shared::State *st = shared::state()) {
        for (int d = 0; d < shared::kMaxDatabases; d++) {
            Oid dboid = pg_atomic_read_u32(&st->dbs[d].dboid);
            if (dboid == 0) continue;
            int idle = 0, busy = 0, running = 0;
            for (int i = 0; i < st->nslots; i++) {
                shared::Slot *s = &st->slots[i];
                if (s->pid == 0 || pg_atomic_read_u32(&s->dboid) != dboid) continue;
                if (pg_atomic_read_u64(&s->run_id) != 0) running++;
                else if (pg_atomic_read_u32(&s->idle)) idle++;
                else busy++;
            }
            // (a database found without the extension -- listed or under '*', or after DROP EXTENSION -- and no
            // worker there: no series of zeros; acceptance walk-through, 2026-12-07)
            if (idle + busy + running == 0 && pg_atomic_read_u32(&st->dbs[d].extension) == shared::kExtAbsent) continue;
            const char *name = db_name(dboid);
            c.add(kFamilies[6].name, name, nullptr, idle)->status = "idle";
            c.add(kFamilies[6].name, name, nullptr, busy)->status = "busy";
            c.add(kFamilies[6].name, name, nullptr, running)->status = "running";
        }
    }
    for (int i = 0; i < ns; i++) {
        uint64 cumulative = 0;
        for (int b = 0; b < metrics::kBuckets; b++) {
            cumulative += snaps[i].buckets[b];
            c.add("pipeline_worker_run_duration_seconds_bucket", dbnames[i], snaps[i].pipeline, cumulative)->le =
                psprintf("%g", metrics::kBucketBounds[b]);
        }
        c.add("pipeline_worker_run_duration_seconds_bucket", dbnames[i], snaps[i].pipeline, snaps[i].duration_count)->le =
            "+Inf";
        c.add("pipeline_worker_run_duration_seconds_sum", dbnames[i], snaps[i].pipeline,
              static_cast<double>(snaps[i].duration_sum_us) / 1e6);
        c.add("pipeline_worker_run_duration_seconds_count", dbnames[i], snaps[i].pipeline, snaps[i].duration_count);
    }
    return c;
}

void append_label(StringInfo buf, bool *first, const char *name, const char *value) {
    if (value == nullptr) return;
    appendStringInfo(buf, "%s%s=\"", *first ? "{" : ",", name);
    *first = false;
    for (const char *p = value; *p; p++) {
        if (*p == '\\') appendStringInfoString(buf, "\\\\");
        else if (*p == '"') appendStringInfoString(buf, "\\\"");
        else if (*p == '\n') appendStringInfoString(buf, "\\n");
        else appendStringInfoChar(buf, *p);
    }
    appendStringInfoChar(buf, '"');
}

void append_value(StringInfo buf, double v) {
    if (v == static_cast<double>(static_cast<int64>(v)) && v < 9e15 && v > -9e15)
        appendStringInfo(buf, " %lld\n", static_cast<long long>(v));
    else
        appendStringInfo(buf, " %.9g\n", v);
}

}  // namespace

extern "C" Datum pw_metric_samples(PG_FUNCTION_ARGS) {
    ReturnSetInfo *rsinfo = reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo);
    InitMaterializedSRF(fcinfo, 0);
    Collector c = collect();
    for (int i = 0; i < c.n; i++) {
        const Sample &s = c.samples[i];
        const char *texts[] = {s.metric, s.database, s.pipeline, s.status, s.kind, s.outcome, s.le};
        Datum values[8];
        bool nulls[8];
        for (int k = 0; k < 7; k++) {
            nulls[k] = texts[k] == nullptr;
            values[k] = nulls[k] ? (Datum)0 : CStringGetTextDatum(texts[k]);
        }
        values[7] = Float8GetDatum(s.value);
        nulls[7] = false;
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    return (Datum)0;
}

extern "C" Datum pw_metrics(PG_FUNCTION_ARGS) {
    Collector c = collect();
    StringInfoData buf;
    initStringInfo(&buf);
    int next = 0;
    for (const Family &f : kFamilies) {
        appendStringInfo(&buf, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.type);
        size_t len = strlen(f.name);
        // this family's samples follow each other (collect's order)
        for (; next < c.n && strncmp(c.samples[next].metric, f.name, len) == 0; next++) {
            const Sample &s = c.samples[next];
            appendStringInfoString(&buf, s.metric);
            bool first = true;
            append_label(&buf, &first, "database", s.database);
            append_label(&buf, &first, "pipeline", s.pipeline);
            append_label(&buf, &first, strcmp(f.name, "pipeline_worker_workers") == 0 ? "state" : "status", s.status);
            append_label(&buf, &first, "kind", s.kind);
            append_label(&buf, &first, "outcome", s.outcome);
            append_label(&buf, &first, "le", s.le);
            if (!first) appendStringInfoChar(&buf, '}');
            append_value(&buf, s.value);
        }
    }
    PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}
