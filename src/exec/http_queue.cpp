#include "exec/http_queue.hpp"

#include <sys/resource.h>

#include <unordered_map>
#include <vector>

#include "http/client.hpp"
#include "pg/boundary.hpp"
#include "shmem/cancels.hpp"
#include "shmem/gucs.hpp"
#include "shmem/shared.hpp"
#include "store/run_rows.hpp"

namespace pw::httpq {

namespace {

using CallMap = std::unordered_map<uint64_t, exec::HttpCall *>;

http::Client *client = nullptr;
CallMap *flying = nullptr;    // sent, waiting for the answer
List *queued = NIL;           // parked in the current transaction: sent after its commit
List *answered = NIL;         // answered, waiting to be recorded
List *deferred = NIL;         // answered, their run held by another transaction: answered again at deferred_until
TimestampTz deferred_until = 0;
int fd_cap = -1;              // in-flight requests the open-file limit allows
long fd_limit = 0;
bool warned_fd = false;
uint32 cancels_seen = 0;
uint64 next_tag = 1;

constexpr int64 kDeferUs = 50000;  // an answer whose run another transaction held: recorded this much later
constexpr int kFdsPerRequest = 2;  // the connection, and a resolver socket pair while a name is resolved
constexpr int kFdReserve = 64;     // the epoll set, log files, libraries, ...
constexpr int kFdShareMin = 16;    // fewer requests than this fit above Postgres's files: take a share of them instead
constexpr int kFdExtra = 8;        // what the client holds besides connections (its epoll set, a wake-up pair, ...)

void compute_fd_cap() {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fd_cap = 64;
        return;
    }
    // Servers started from a shell often get a soft limit of 1,024 and a much higher hard one: use it.
    if (rl.rlim_cur != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
        struct rlimit raised = rl;
        raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
    }
    long limit = rl.rlim_cur == RLIM_INFINITY ? 1048576 : static_cast<long>(rl.rlim_cur);
    fd_limit = limit;
    // Postgres itself may keep up to max_safe_fds files open in this process.
    long avail = (limit - max_safe_fds - kFdReserve) / kFdsPerRequest;
    if (avail >= kFdShareMin) {
        fd_cap = avail > INT_MAX ? INT_MAX : static_cast<int>(avail);
        return;
    }
    // Little or no room above what Postgres may use (its own limit, max_safe_fds, is computed from the same open-file
    // limit): the requests' files are taken from Postgres's share instead, reserved with fd.c, which then closes
    // cached files of its own to stay under max_safe_fds with them. Until 2026-12-07 the cap was 8 with nothing
    // reserved: a step that touched many tables filled the process, and most requests failed to connect, or the
    // client's epoll set could not be made (acceptance walk-through: 72 of 100 runs failed at a limit of 256).
    // fd.c lets external files (reserved ones included) reach a third of its share (AcquireExternalFD), and
    // PostgreSQL's own wait sets and other libraries' connections acquire theirs under that bound: a quarter leaves
    // them a twelfth. (All of the third, and WaitLatchOrSocket failed "epoll_create1 failed: Too many open files".)
    // Only in a worker: a session's execute_run has one request at a time, and its file budget stays whole.
    // libcurl's cache of idle connections (one socket each) stays within the reservation too.
    if (!IsBackgroundWorker) {
        fd_cap = 8;
        return;
    }
    int share = max_safe_fds / 4;
    fd_cap = (share - kFdExtra) / kFdsPerRequest;
    if (fd_cap < 1) fd_cap = 1;
    for (int i = 0; i < fd_cap * kFdsPerRequest + kFdExtra; i++) ReserveExternalFD();
    long cache = fd_cap;
    pg::CppError err = pg::cpp_call([&] { client->limit_connection_cache(cache); });
    pg::raise_if_failed(err, "could not set up the HTTP client");
}

void ensure_client() {
    if (client != nullptr) return;
    http::Client *c = nullptr;
    CallMap *m = nullptr;
    pg::CppError err = pg::cpp_call([&] {
        m = new CallMap();
        c = new http::Client();
    });
    if (err.failed) {
        delete m;
        pg::raise_if_failed(err, "could not set up the HTTP client");
    }
    client = c;
    flying = m;
    compute_fd_cap();
}

void push_answered(exec::HttpCall *call) {
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    answered = lappend(answered, call);
    MemoryContextSwitchTo(old);
}

}  // namespace

void configure() {
    ensure_client();
    size_t max_bytes = static_cast<size_t>(guc::http_max_response_bytes);
    const char *hosts = guc::http_allowed_hosts != nullptr ? guc::http_allowed_hosts : "";
    pg::CppError err = pg::cpp_call([&] { client->configure(hosts, max_bytes); });
    if (err.failed)  // the GUC's check hook validates the list: this is not expected
        ereport(WARNING, (errmsg("pipeline_worker: %s", err.message)));
}

int capacity() {
    if (client == nullptr) configure();
    int want = guc::http_max_in_flight;
    if (want > fd_cap) {
        if (!warned_fd)
            ereport(LOG, (errmsg("pipeline_worker: the open file limit (%ld) holds this worker to %d HTTP requests in "
                                 "flight instead of pipeline_worker.http_max_in_flight = %d",
                                 fd_limit, fd_cap, want),
                          errhint("Raise the server's open file limit (ulimit -n, LimitNOFILE) to allow more; runs "
                                  "wait in the queue meanwhile, none fails because of it.")));
        warned_fd = true;
        return fd_cap;
    }
    return want;
}

int pending() {
    return list_length(queued) + list_length(answered) + list_length(deferred) +
           (flying != nullptr ? static_cast<int>(flying->size()) : 0);
}

namespace {

// f(call) for each call of run_id this process holds: in flight, queued, and (with_answered) answered and not
// recorded yet.
template <typename F>
void each_call_of(int64 run_id, bool with_answered, F f) {
    if (flying != nullptr)
        for (const auto &kv : *flying)
            if (kv.second->run.id == run_id) f(kv.second);
    ListCell *lc;
    foreach (lc, queued)
        if (static_cast<exec::HttpCall *>(lfirst(lc))->run.id == run_id) f(static_cast<exec::HttpCall *>(lfirst(lc)));
    if (!with_answered) return;
    foreach (lc, answered)
        if (static_cast<exec::HttpCall *>(lfirst(lc))->run.id == run_id) f(static_cast<exec::HttpCall *>(lfirst(lc)));
    foreach (lc, deferred)
        if (static_cast<exec::HttpCall *>(lfirst(lc))->run.id == run_id) f(static_cast<exec::HttpCall *>(lfirst(lc)));
}

// Marks flags[index] for the calls of run_id whose index (their task, or their position) is chosen by `which`.
template <typename Which>
int mark_calls(int64 run_id, bool *flags, int n, Which which) {
    int count = 0;
    each_call_of(run_id, true, [&](const exec::HttpCall *c) {
        int i = which(c);
        if (i >= 0 && i < n && !flags[i]) {
            flags[i] = true;
            count++;
        }
    });
    return count;
}

}  // namespace

bool in_flight(int64 run_id) {
    bool any = false;
    each_call_of(run_id, false, [&](const exec::HttpCall *) { any = true; });
    return any;
}

int tasks_in_flight(int64 run_id, int pos, bool *flags, int n) {
    return mark_calls(run_id, flags, n, [&](const exec::HttpCall *c) { return c->pos == pos ? c->task : -1; });
}

int calls_of_run(int64 run_id) {
    int count = 0;
    each_call_of(run_id, true, [&](const exec::HttpCall *) { count++; });
    return count;
}

int steps_in_flight(int64 run_id, bool *flags, int n) {
    return mark_calls(run_id, flags, n, [](const exec::HttpCall *c) { return c->task < 0 ? c->pos : -1; });
}

void queue(exec::HttpCall *call) {
    call->tag = next_tag++;
    MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
    queued = lappend(queued, call);
    MemoryContextSwitchTo(old);
}

void send_queued() {
    if (queued == NIL) return;
    ensure_client();
    ListCell *lc;
    foreach (lc, queued) {
        exec::HttpCall *call = static_cast<exec::HttpCall *>(lfirst(lc));
        if (shared::cancel_requested(call->run.id)) {  // cancelled before it left
            call->answered = true;
            call->cancelled = true;
            push_answered(call);
            continue;
        }
        pg::CppError err = pg::cpp_call([&] {
            http::Request req;
            req.tag = call->tag;
            req.url = call->url;
            req.method = call->method;
            for (int i = 0; i < call->nheaders; i++) {
                req.headers.emplace_back(call->headers[i]);
                req.sensitive.push_back(call->header_secret[i]);
            }
            if (call->body != nullptr) req.body.assign(call->body, call->body_len);
            req.timeout_ms = call->timeout_ms;
            req.follow_redirects = call->follow_redirects;
            if (!flying->emplace(req.tag, call).second)
                throw std::logic_error("a request with this tag is already in flight in this worker");
            try {
                client->start(std::move(req));
            } catch (...) {
                flying->erase(call->tag);
                throw;
            }
        });
        if (err.failed) {
            call->answered = true;
            MemoryContext old = MemoryContextSwitchTo(call->ctx);
            call->error = psprintf("could not start the request: %s", err.message);
            MemoryContextSwitchTo(old);
            call->retryable = true;
            push_answered(call);
        }
    }
    list_free(queued);
    queued = NIL;
}

void discard_queued() {
    ListCell *lc;
    foreach (lc, queued) exec::free_http_call(static_cast<exec::HttpCall *>(lfirst(lc)));
    list_free(queued);
    queued = NIL;
}

int fd() {
    ensure_client();
    return client->fd();
}

long timeout_ms() {
    long t = client != nullptr ? client->timeout_ms() : -1;
    if (deferred == NIL) return t;
    // (Once due, the deferred calls are has_answered()'s to hand over: a 0 here made a pause's wait loop -- which does
    // not look at answers -- spin until the pause ended.)
    long d = static_cast<long>((deferred_until - GetCurrentTimestamp() + 999) / 1000);
    if (d <= 0) return t;
    return t < 0 || d < t ? d : t;
}

void drive() {
    if (client == nullptr || flying->empty()) return;
    std::vector<exec::HttpCall *> *done = nullptr;
    pg::CppError err = pg::cpp_call([&] {
        client->drive();
        if (!client->has_results()) return;
        // Everything that may throw comes before the results are taken: from then on nothing allocates
        // (take_results is a swap, push_back has its room, copies that fail say so in the call), so no answer
        // can be lost between the client and the answered list.
        done = new std::vector<exec::HttpCall *>();
        done->reserve(client->result_count());
        std::vector<http::Result> results = client->take_results();
        for (auto &r : results) {
            auto it = flying->find(r.tag);
            if (it == flying->end()) continue;
            exec::HttpCall *call = it->second;
            flying->erase(it);
            call->answered = true;
            call->ok = r.ok;
            call->status = r.status;
            call->retryable = r.retryable;
            call->retry_after_ms = r.retry_after_ms;
            if (r.ok) {
                call->resp = pg::copy_or_null(call->ctx, r.body);
                call->resp_len = r.body.size();
                if (call->resp == nullptr) {
                    call->ok = false;
                    call->resp_len = 0;
                    call->error = pg::copy_or_null(call->ctx, "out of memory storing the response");
                    call->retryable = true;
                }
            } else {
                call->error = pg::copy_or_null(call->ctx, r.error);
            }
            done->push_back(call);
        }
    });
    if (done != nullptr) {
        for (exec::HttpCall *call : *done) push_answered(call);
        delete done;
    }
    pg::raise_if_failed(err, "HTTP client failed");
}

volatile sig_atomic_t cancel_signalled = 0;

void check_cancels() {
    shared::State *st = shared::state();
    if (st == nullptr || flying == nullptr || flying->empty()) return;
    // cancel_run bumps the counter before it writes the run id, and signals after: scan on either.
    uint32 now = pg_atomic_read_u32(&st->cancel_next);
    if (now == cancels_seen && !cancel_signalled) return;
    cancels_seen = now;
    cancel_signalled = 0;
    std::vector<exec::HttpCall *> *hit = nullptr;
    pg::CppError err = pg::cpp_call([&] {
        hit = new std::vector<exec::HttpCall *>();
        for (auto it = flying->begin(); it != flying->end();) {
            if (shared::cancel_requested(it->second->run.id)) {
                client->cancel(it->first);
                hit->push_back(it->second);
                it = flying->erase(it);
            } else {
                ++it;
            }
        }
    });
    if (hit != nullptr) {
        for (exec::HttpCall *call : *hit) {
            call->answered = true;
            call->cancelled = true;
            push_answered(call);
        }
        delete hit;
    }
    pg::raise_if_failed(err, "HTTP client failed");
}

bool has_answered() {
    if (deferred != NIL && GetCurrentTimestamp() >= deferred_until) {
        MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
        answered = list_concat(answered, deferred);
        MemoryContextSwitchTo(old);
        list_free(deferred);
        deferred = NIL;
    }
    return answered != NIL;
}

int lock_answered(exec::HttpCall **calls, const char **status, int n) {
    int64 *ids = static_cast<int64 *>(palloc(sizeof(int64) * (n > 0 ? n : 1)));
    int *claims = static_cast<int *>(palloc(sizeof(int) * (n > 0 ? n : 1)));
    for (int i = 0; i < n; i++) ids[i] = calls[i]->run.id, claims[i] = calls[i]->run.claims;
    store::lock_runs(ids, n, status, true, claims);
    pfree(ids);
    pfree(claims);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (status[i] == store::kRunHeld) {
            // (due kDeferUs after the first of them: deferrals coming faster must not put the older ones off for good)
            if (deferred == NIL) deferred_until = GetCurrentTimestamp() + kDeferUs;
            MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
            deferred = lappend(deferred, calls[i]);
            MemoryContextSwitchTo(old);
            continue;
        }
        calls[kept] = calls[i];
        status[kept++] = status[i];
    }
    return kept;
}

exec::HttpCall **take_answered(int *n, int max) {
    int total = list_length(answered);
    int k = total < max ? total : max;
    exec::HttpCall **out = static_cast<exec::HttpCall **>(palloc(sizeof(exec::HttpCall *) * (k > 0 ? k : 1)));
    for (int i = 0; i < k; i++) out[i] = static_cast<exec::HttpCall *>(list_nth(answered, i));
    if (k == total) {
        list_free(answered);
        answered = NIL;
    } else {
        MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
        List *rest = list_copy_tail(answered, k);
        MemoryContextSwitchTo(old);
        list_free(answered);
        answered = rest;
    }
    *n = k;
    return out;
}

void call_sync(exec::HttpCall *call) {
    configure();
    queue(call);
    send_queued();  // answered at once if it could not start
    uint64_t tag = call->tag;
    PG_TRY();
    {
        while (!call->answered) {
            drive();
            // A cancel_run of the run: its request is given up and the step records the cancel. (Nothing signals a
            // session waiting here: looked at every 100 ms. Until 2026-12-05 the call went on to its answer or
            // timeout, and the cancel_run waited for it.)
            check_cancels();
            if (call->answered) break;
            long t = timeout_ms();
            (void)WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
                                    client->fd(), t < 0 || t > 100 ? 100 : t, PG_WAIT_EXTENSION);
            ResetLatch(MyLatch);
            CHECK_FOR_INTERRUPTS();
        }
    }
    PG_CATCH();
    {
        (void)pg::cpp_call([&] { client->cancel(tag); });
        flying->erase(tag);
        PG_RE_THROW();
    }
    PG_END_TRY();
    // this call is the caller's: take it out of the answered list
    answered = list_delete_ptr(answered, call);
}

}  // namespace pw::httpq
