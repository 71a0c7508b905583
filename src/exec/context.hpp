// A run being executed (its pipeline, outputs so far) and the context object each step receives:
// {run_id, pipeline, step, position, attempt, input, metadata, prev, results}.
#pragma once

#include "pg/pg.hpp"
#include "store/pipelines.hpp"

namespace pw::exec {

struct RunState {
    int64 id;
    char *pipeline_name;
    Oid submitter;
    Jsonb *input;
    Jsonb *metadata;
    store::Pipeline *pipeline;
    Jsonb **outputs;    // per position (0-based); valid for positions < next
    int *last_attempt;  // per position: highest attempt recorded
    bool *interrupted;  // per position: an HTTP attempt whose row is still running (re-sent as the same attempt)
    int next;           // 0-based position of the next step to run
};

// How one attempt of a step ended.
struct StepResult {
    Jsonb *output = nullptr;       // succeeded (JSON null for SQL NULL)
    ErrorData *edata = nullptr;    // a function step failed
    const char *error = nullptr;   // an HTTP step failed ("cancelled": its run was cancelled in flight)
    bool retryable = false;        // (HTTP)
    long retry_after_ms = 0;       // (HTTP) Retry-After
    bool parked = false;           // an HTTP request will be sent after the commit (worker)
    bool succeeded() const { return edata == nullptr && error == nullptr && !parked; }
};

Jsonb *build_context(const RunState *r, int pos, int attempt);
Jsonb *json_null();

}  // namespace pw::exec
