// A run waiting for the answer of an HTTP step. A worker sends the request only after the commit that recorded
// the step's start, with no transaction open, and continues the run with the answer in a new one. Everything
// lives in ctx (deleted with free_http_call).
#pragma once

#include "pg/pg.hpp"
#include "store/claims.hpp"

namespace pw::exec {

struct HttpCall {
    MemoryContext ctx;
    uint64 tag;             // this process's key of the request in flight (several may be of one run: map tasks)
    store::ClaimedRun run;  // deep copy
    int pos;                // 0-based position of the HTTP step
    int task;               // its map task's index (-1: not a map step)
    char *step_name;
    int attempt;
    TimestampTz started;
    int nsteps;
    Jsonb **outputs;  // per position: outputs of the finished steps
    bool *done;       // per position: finished (succeeded or skipped)
    // the request
    char *url;
    const char *method;
    int nheaders;
    char **headers;        // "Name: value", Pipeline-Run-Id and Idempotency-Key included
    bool *header_secret;   // per header: a secret_headers value (not sent to another host after a redirect)
    char *body;            // NULL for GET/DELETE
    int body_len;
    int timeout_ms;
    bool follow_redirects;
    // the answer
    bool answered;
    bool consumed;   // recorded by the executor (a resume may bring several answers of one run)
    bool ok;         // 2xx: resp is the step output
    long status;     // the HTTP status, 0 without an answer
    bool cancelled;  // cancel_run while in flight
    char *resp;
    size_t resp_len;
    char *error;
    bool retryable;
    long retry_after_ms;
};

// How execute_claimed treats HTTP steps. Without it (SQL path: execute_run in a session) they are performed
// synchronously, inside the caller's transaction.
// A worker's pause (exec/shared_tasks.cpp): commits what the executor buffered (SPI disconnected), waits with no
// transaction open until ready(ready_arg) -- looking again at every latch wake-up and at least every 100 ms --, then
// begins a new transaction. arg: the executor's BetweenSteps argument.
typedef void (*Pause)(void *arg, bool (*ready)(void *), void *ready_arg);

struct HttpIO;
// A worker's "send what is parked now": the claim and the parked calls' rows are committed and their requests leave
// (SPI disconnected), then a new transaction begins. Used before a function step runs next to requests parked in this
// execution, so that they are in flight while it runs.
typedef void (*SendParked)(void *arg, HttpIO *io);

struct HttpIO {
    HttpCall *resume = nullptr;           // in: continue this parked run with its answer
    HttpCall **more = nullptr;            // in: further answers for the same run (map tasks), nmore of them
    int nmore = 0;
    MemoryContext park_parent = nullptr;  // in: parent of a parked call's context
    HttpCall *parked = nullptr;           // out: the run stopped at an HTTP step (the first call parked)
    List *parked_more = NIL;              // out: further calls parked (map tasks in flight together)
    Pause pause = nullptr;                // in: a worker's pause (nullptr: the executor never waits for others)
    SendParked send_parked = nullptr;     // in: a worker's early send (nullptr: requests leave when the run stops)
};

// The answers a resume brought: io->resume, then io->more.
inline int answer_count(const HttpIO *io) {
    return io == nullptr ? 0 : (io->resume != nullptr ? 1 : 0) + io->nmore;
}
inline HttpCall *answer_at(const HttpIO *io, int k) {
    return io->resume != nullptr ? (k == 0 ? io->resume : io->more[k - 1]) : io->more[k];
}

// Hands a parked call to io (the first one, or one more).
inline void add_parked(HttpIO *io, HttpCall *call) {
    if (io->parked == nullptr) {
        io->parked = call;
        return;
    }
    MemoryContext old = MemoryContextSwitchTo(io->park_parent);
    io->parked_more = lappend(io->parked_more, call);
    MemoryContextSwitchTo(old);
}

inline void free_http_call(HttpCall *call) {
    if (call != nullptr) MemoryContextDelete(call->ctx);
}

}  // namespace pw::exec
