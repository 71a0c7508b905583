// Pipelines as the executor uses them: parsed from their stored definition (pure C++ through the boundary),
// cached per backend while unchanged (a shared generation counter tells), secret header values filled in.
#pragma once

#include "pg/pg.hpp"
#include "core/definition.hpp"
#include "core/status.hpp"
#include "shmem/lanes.hpp"

namespace pw::store {

struct Step {
    char *name;
    char *function;  // schema-qualified name, NULL for other steps than function steps
    Oid fn_oid;      // resolved lazily, re-resolved by name after any change to pg_proc (exec/function_step.cpp)
    uint64 fn_generation;  // ... the change it was resolved after
    bool is_http;
    core::StepKind kind;
    int ndeps;
    int *deps;       // positions (0-based) of the steps it depends on
    Jsonb *if_cond;  // "if" (NULL: none)
    Interval sleep_iv;   // "sleep": its end is the start plus this interval, by the calendar (timestamptz + interval)
    char *event;     // "wait_for" (its timeout: timeout_ms, 0 for none)
    char *child;     // "pipeline": the pipeline of its child runs
    bool map;        // "map": a task per element of prev
    int max_parallel;
    int max_attempts;
    int retry_delay_ms;
    int timeout_ms;  // 0: none
    // HTTP steps
    char *url;
    const char *method;
    int nheaders;
    char **header_names;
    char **header_values;  // secret values are filled in from pipeline_secrets by load_pipeline
    bool *header_secret;
    bool follow_redirects;
};

struct Pipeline {
    char *name;
    int64 id;
    Oid owner;
    int nsteps;
    Step *steps;
    int *order;   // the positions in a topological order (0..nsteps-1 for a linear pipeline)
    int nsinks;
    int *sinks;   // the steps nothing depends on: the run's result is theirs
    bool linear;  // every step depends on the one before it (0.1's shape)
    lanes::Limits limits;          // "concurrency", "rate_limit"
    lanes::Limits limits_per_key;  // "concurrency_per_key", "rate_limit_per_key"
    bool notify;                   // "notify"
};

// A run of `pipeline` finished (in this transaction) with `status` (succeeded, failed, cancelled), after
// duration_us of its last claim (< 0: not known). Counted for metrics() at commit; and if the pipeline has
// "notify": true, NOTIFY pipeline_worker, '{"run_id": ..., "pipeline": ..., "status": ...}' is queued -- sent when
// the transaction commits, never if it rolls back. SPI connected.
void note_finished(const char *pipeline, int64 run_id, core::RunStatus status, int64 duration_us);
// Whether the pipeline has "notify": true (its cached definition). SPI connected.
bool notifies(const char *pipeline);

// An interval's length in microseconds (months as 30 days); ERROR 22023 naming `what` when text is no interval.
// parsed (optional): the interval itself.
int64 interval_usecs(const char *text, const char *what, Interval *parsed = nullptr);

// Parses and validates a definition; ERROR on invalid input. Function names are left as written. Allocated in
// CurrentMemoryContext.
Pipeline *parse_pipeline(const char *name, const char *steps_json, const char *options_json);

// Pipeline `name` from the table (cached per backend while unchanged); NULL if it does not exist. SPI connected.
Pipeline *load_pipeline(const char *name);

}  // namespace pw::store
