#include "shmem/metrics.hpp"

#include <cstddef>

#include "shmem/shared.hpp"

namespace pw::metrics {

const double kBucketBounds[kBuckets] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const char *const kFinishNames[kFinishes] = {"succeeded", "failed", "cancelled"};
const char *const kKindNames[kKinds] = {"function", "http", "pipeline", "sleep", "wait_for"};
const char *const kOutcomeNames[kOutcomes] = {"success", "client_error", "server_error", "timeout", "network_error",
                                               "cancelled"};

namespace {

constexpr int kMaxEntries = 4096;  // (database, pipeline) pairs counted; more are not (logged once)
constexpr int kNameLen = 256;      // longer pipeline names are counted under their first 255 bytes
constexpr int kMaxLocal = 64;      // pipelines one transaction counts before it publishes at once

struct Key {
    Oid dboid;
    char name[kNameLen];
};

struct Counts {
    uint64 created;
    uint64 finished[kFinishes];
    uint64 steps[kKinds][2];
    uint64 http[kOutcomes];
    uint64 buckets[kBuckets];
    uint64 duration_count;
    uint64 duration_sum_us;
};
constexpr int kCountWords = sizeof(Counts) / sizeof(uint64);

struct Entry {
    Key key;
    pg_atomic_uint64 counts[kCountWords];  // a Counts, word by word
    // gauges: valid while gauge_epoch equals the database's published epoch (under the header lock)
    uint64 gauge_epoch;
    Gauges gauges;
};

struct GaugeDb {
    Oid dboid;
    uint64 epoch;
    TimestampTz at;
    int64 cost_us;
    int64 unfinished;
    uint64 created;  // runs created in the database by then, by the counters
};

struct Header {
    LWLock *lock;
    pg_atomic_uint64 last_scrape;  // TimestampTz of the latest metrics() / metric_samples(), 0: none
    bool warned_full;
    GaugeDb dbs[shared::kMaxDatabases];
};

Header *g_header = nullptr;
HTAB *g_entries = nullptr;

struct Local {
    Key key;
    Counts c;
};
Local *locals = nullptr;
int nlocal = 0;

void make_key(Key *k, Oid dboid, const char *name) {
    memset(k, 0, sizeof(*k));
    k->dboid = dboid;
    strlcpy(k->name, name != nullptr ? name : "", sizeof(k->name));
}

// The shared entry of key, created if needed (nullptr when the table is full). Takes and releases the lock.
Entry *shared_entry(const Key &key) {
    LWLockAcquire(g_header->lock, LW_SHARED);
    Entry *e = static_cast<Entry *>(hash_search(g_entries, &key, HASH_FIND, nullptr));
    LWLockRelease(g_header->lock);
    if (e != nullptr) return e;
    LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
    bool found;
    e = static_cast<Entry *>(hash_search(g_entries, &key, HASH_ENTER_NULL, &found));
    if (e != nullptr && !found) {
        for (int i = 0; i < kCountWords; i++) pg_atomic_init_u64(&e->counts[i], 0);
        e->gauge_epoch = 0;
        e->gauges = Gauges{};
    }
    bool warn = e == nullptr && !g_header->warned_full;
    if (warn) g_header->warned_full = true;
    LWLockRelease(g_header->lock);
    if (warn)
        ereport(WARNING, (errmsg("pipeline_worker: metrics are kept for at most %d pipelines; more are not counted",
                                 kMaxEntries)));
    return e;
}

void publish_one(const Local &l) {
    Entry *e = shared_entry(l.key);
    if (e == nullptr) return;
    const uint64 *words = reinterpret_cast<const uint64 *>(&l.c);
    for (int i = 0; i < kCountWords; i++)
        if (words[i] != 0) pg_atomic_fetch_add_u64(&e->counts[i], static_cast<int64>(words[i]));
}

Local *local(const char *pipeline) {
    if (g_header == nullptr) return nullptr;
    if (locals == nullptr) locals = static_cast<Local *>(MemoryContextAlloc(TopMemoryContext, sizeof(Local) * kMaxLocal));
    for (int i = 0; i < nlocal; i++)
        if (strncmp(locals[i].key.name, pipeline, kNameLen - 1) == 0 && locals[i].key.dboid == MyDatabaseId)
            return &locals[i];
    if (nlocal == kMaxLocal) at_commit();  // too many pipelines in one transaction: publish what there is now
    Local *l = &locals[nlocal++];
    make_key(&l->key, MyDatabaseId, pipeline);
    memset(&l->c, 0, sizeof(l->c));
    return l;
}

GaugeDb *gauge_db(Oid dboid, bool create) {
    GaugeDb *free_slot = nullptr;
    for (auto &d : g_header->dbs) {
        if (d.dboid == dboid) return &d;
        if (d.dboid == InvalidOid && free_slot == nullptr) free_slot = &d;
    }
    if (!create) return nullptr;
    if (free_slot == nullptr) free_slot = &g_header->dbs[dboid % shared::kMaxDatabases];  // full: reuse one
    *free_slot = GaugeDb{dboid, 0, 0, 0, 0};
    return free_slot;
}

int snapshot_order(const void *a, const void *b) {
    const Snapshot *x = static_cast<const Snapshot *>(a), *y = static_cast<const Snapshot *>(b);
    if (x->dboid != y->dboid) return x->dboid < y->dboid ? -1 : 1;
    return strcmp(x->pipeline, y->pipeline);
}

}  // namespace

namespace {
// Runs counted as created inside a subtransaction (a savepoint, a step's own): taken back if it is rolled back --
// until 2026-12-05 a create_run rolled back to a savepoint, or by its step's failure, was counted as created.
struct SubCreated {
    SubTransactionId sub;
    int local;
    int n;
};
constexpr int kMaxSubCreated = 256;  // (more in one transaction: counted as before)
SubCreated sub_created[kMaxSubCreated];
int nsub_created = 0;
}  // namespace

void runs_created(const char *pipeline, int n) {
    Local *l = local(pipeline);
    if (l == nullptr) return;
    l->c.created += static_cast<uint64>(n);
    if (GetCurrentTransactionNestLevel() > 1 && nsub_created < kMaxSubCreated)
        sub_created[nsub_created++] = SubCreated{GetCurrentSubTransactionId(), static_cast<int>(l - locals), n};
}

void at_subabort(SubTransactionId sub) {
    int kept = 0;
    for (int i = 0; i < nsub_created; i++) {
        const SubCreated &c = sub_created[i];
        if (c.sub >= sub) {  // (the aborted one and those begun inside it)
            if (c.local < nlocal) locals[c.local].c.created -= static_cast<uint64>(c.n);
        } else {
            sub_created[kept++] = c;
        }
    }
    nsub_created = kept;
}

void run_finished(const char *pipeline, Finish how, int64 duration_us) {
    Local *l = local(pipeline);
    if (l == nullptr) return;
    l->c.finished[how]++;
    if (duration_us < 0) return;
    double secs = static_cast<double>(duration_us) / 1e6;
    for (int i = 0; i < kBuckets; i++)
        if (secs <= kBucketBounds[i]) {
            l->c.buckets[i]++;
            break;
        }
    l->c.duration_count++;
    l->c.duration_sum_us += static_cast<uint64>(duration_us);
}

void step_done(const char *pipeline, StepKind kind, bool succeeded) {
    if (Local *l = local(pipeline)) l->c.steps[kind][succeeded ? 1 : 0]++;
}

void http_done(const char *pipeline, HttpOutcome outcome) {
    if (Local *l = local(pipeline)) l->c.http[outcome]++;
}

void at_commit() {
    int n = nlocal;
    nlocal = 0;
    nsub_created = 0;  // (also when published early, kMaxLocal pipelines in one transaction: counted as they are)
    for (int i = 0; i < n; i++) publish_one(locals[i]);
}

void at_abort() {
    nlocal = 0;
    nsub_created = 0;
}

bool any_in_txn() { return nlocal > 0; }

namespace {

// Runs created in the database so far, by the counters (under the header lock, shared is enough).
uint64 created_in(Oid dboid) {
    uint64 sum = 0;
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, g_entries);
    Entry *e;
    while ((e = static_cast<Entry *>(hash_seq_search(&seq))) != nullptr)
        if (e->key.dboid == dboid) sum += pg_atomic_read_u64(&e->counts[offsetof(Counts, created) / sizeof(uint64)]);
    return sum;
}

}  // namespace

uint64 runs_created_in(Oid dboid) {
    if (g_header == nullptr) return 0;
    LWLockAcquire(g_header->lock, LW_SHARED);
    uint64 n = created_in(dboid);
    LWLockRelease(g_header->lock);
    return n;
}

void gauges_publish(Oid dboid, const char *const *pipelines, const Gauges *g, int n, TimestampTz at, int64 cost_us,
                    uint64 created_before) {
    if (g_header == nullptr) return;
    for (int i = 0; i < n; i++) {  // entries first (each takes the lock itself)
        Key k;
        make_key(&k, dboid, pipelines[i]);
        (void)shared_entry(k);
    }
    LWLockAcquire(g_header->lock, LW_EXCLUSIVE);
    GaugeDb *d = gauge_db(dboid, true);
    if (at >= d->at) {  // never replace a newer count by an older one
        uint64 epoch = d->epoch + 1;
        for (int i = 0; i < n; i++) {
            Key k;
            make_key(&k, dboid, pipelines[i]);
            Entry *e = static_cast<Entry *>(hash_search(g_entries, &k, HASH_FIND, nullptr));
            if (e == nullptr) continue;
            e->gauges = g[i];
            e->gauge_epoch = epoch;
        }
        d->epoch = epoch;
        d->at = at;
        d->cost_us = cost_us;
        d->unfinished = 0;
        for (int i = 0; i < n; i++) d->unfinished += g[i].pending + g[i].scheduled + g[i].running + g[i].waiting;
        d->created = created_before;
    }
    LWLockRelease(g_header->lock);
}

void note_scrape() {
    if (g_header != nullptr) pg_atomic_write_u64(&g_header->last_scrape, static_cast<uint64>(GetCurrentTimestamp()));
}

bool scraped_within(long ms) {
    if (g_header == nullptr) return false;
    TimestampTz at = static_cast<TimestampTz>(pg_atomic_read_u64(&g_header->last_scrape));
    return at != 0 && !TimestampDifferenceExceeds(at, GetCurrentTimestamp(), ms);
}

void gauges_age(Oid dboid, TimestampTz *at, int64 *cost_us, int64 *unfinished, int64 *created_since) {
    *at = 0;
    *cost_us = 0;
    if (unfinished != nullptr) *unfinished = 0;
    if (created_since != nullptr) *created_since = 0;
    if (g_header == nullptr) return;
    LWLockAcquire(g_header->lock, LW_SHARED);
    if (GaugeDb *d = gauge_db(dboid, false)) {
        *at = d->at;
        *cost_us = d->cost_us;
        if (unfinished != nullptr) *unfinished = d->unfinished;
        if (created_since != nullptr) *created_since = static_cast<int64>(created_in(dboid) - d->created);
    }
    LWLockRelease(g_header->lock);
}

int snapshot(Snapshot **out) {
    *out = nullptr;
    if (g_header == nullptr) return 0;
    LWLockAcquire(g_header->lock, LW_SHARED);
    long total = hash_get_num_entries(g_entries);
    Snapshot *snaps = static_cast<Snapshot *>(palloc0(sizeof(Snapshot) * (total > 0 ? total : 1)));
    int n = 0;
    HASH_SEQ_STATUS seq;
    hash_seq_init(&seq, g_entries);
    Entry *e;
    while ((e = static_cast<Entry *>(hash_seq_search(&seq))) != nullptr) {
        if (n == total) {
            hash_seq_term(&seq);
            break;
        }
        Snapshot *s = &snaps[n++];
        s->dboid = e->key.dboid;
        strlcpy(s->pipeline, e->key.name, sizeof(s->pipeline));
        Counts c;
        uint64 *words = reinterpret_cast<uint64 *>(&c);
        for (int i = 0; i < kCountWords; i++) words[i] = pg_atomic_read_u64(&e->counts[i]);
        s->created = c.created;
        memcpy(s->finished, c.finished, sizeof(c.finished));
        memcpy(s->steps, c.steps, sizeof(c.steps));
        memcpy(s->http, c.http, sizeof(c.http));
        memcpy(s->buckets, c.buckets, sizeof(c.buckets));
        s->duration_count = c.duration_count;
        s->duration_sum_us = c.duration_sum_us;
        GaugeDb *d = gauge_db(e->key.dboid, false);
        s->has_gauges = d != nullptr && d->epoch != 0 && e->gauge_epoch == d->epoch;
        if (s->has_gauges) s->gauges = e->gauges;
    }
    LWLockRelease(g_header->lock);
    qsort(snaps, n, sizeof(Snapshot), snapshot_order);
    *out = snaps;
    return n;
}

void shmem_request() {
    RequestAddinShmemSpace(MAXALIGN(sizeof(Header)));
    RequestAddinShmemSpace(hash_estimate_size(kMaxEntries, sizeof(Entry)));
    RequestNamedLWLockTranche("pipeline_worker metrics", 1);
}

void shmem_startup() {
    bool found;
    g_header = static_cast<Header *>(ShmemInitStruct("pipeline_worker metrics header", sizeof(Header), &found));
    if (!found) {
        memset(g_header, 0, sizeof(Header));
        g_header->lock = &(GetNamedLWLockTranche("pipeline_worker metrics"))->lock;
        pg_atomic_init_u64(&g_header->last_scrape, 0);
    }
    HASHCTL info;
    memset(&info, 0, sizeof(info));
    info.keysize = sizeof(Key);
    info.entrysize = sizeof(Entry);
    // (HASH_FIXED_SIZE: without it the table grew past kMaxEntries into the server's spare shared memory -- which the
    // lock tables need -- and entries are never removed; until 2026-12-05)
    g_entries = ShmemInitHash("pipeline_worker metrics", kMaxEntries, kMaxEntries, &info,
                              HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
}

}  // namespace pw::metrics
