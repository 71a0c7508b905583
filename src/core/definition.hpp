// Pipeline definitions: validation and normalisation of the `steps` and `options` JSON.
// Pure C++ (no Postgres headers); function names are resolved by the caller (src/api).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "error.hpp"
#include "json.hpp"

namespace pw::core {

struct DefinitionError : InputError {
    using InputError::InputError;
};

struct HttpSpec {
    std::vector<std::string> secret_headers;  // names (as given) whose values are secret; the step's
                                              // "secret_headers" key, or the same key inside "http"
    bool has_secret_list = false;             // "secret_headers" given inside "http"
    std::string url;
    std::string method = "POST";
    std::vector<std::pair<std::string, std::string>> headers;
    int timeout_ms = 0;  // 0: not set (see Definition::http_timeout_ms)
    bool follow_redirects = false;
    bool has_follow_redirects = false;  // "follow_redirects" given inside "http" (it may be given at the step too)
};

constexpr int kDefaultHttpTimeoutMs = 10000;
// A step's "timeout_ms": 0 -- no limit for this step, whatever the pipeline's options say (as statement_timeout = 0).
constexpr int kNoTimeout = -1;

// Headers that frame the message or manage the connection: the HTTP client sets them, a step may not.
bool is_client_managed_header(const char *name) noexcept;

// What a step does (0.2 adds child pipelines and the waiting kinds).
enum class StepKind { Function, Http, Sleep, WaitFor, Pipeline };

struct StepSpec {
    std::string name;
    std::string function;   // as written (empty for HTTP steps)
    bool is_http = false;
    StepKind kind = StepKind::Function;
    // "depends_on": names; absent (has_depends_on false): the step before it in the array, none for the first
    std::vector<std::string> depends_on;
    bool has_depends_on = false;
    std::string if_json;    // "if": a JSON object, serialised; empty: none
    std::string sleep;      // "sleep": an interval (checked by the caller, with Postgres' interval input)
    std::string wait_for;   // "wait_for": the event's name (its "timeout_ms": timeout_ms; 0 waits for ever)
    std::string child;      // "pipeline": the child runs' pipeline
    bool map = false;       // "map": once per element of prev (a task each)
    int max_parallel = 0;   // "max_parallel" (map steps; 0: not set)
    HttpSpec http;
    int max_attempts = 0;    // 0: not set on the step
    int retry_delay_ms = -1; // -1: not set on the step
    int timeout_ms = 0;      // 0: not set on the step; kNoTimeout: "timeout_ms": 0, none (not the pipeline's)
};

// "rate_limit": {"runs": N, "per_ms": P}: at most N runs begin executing in any window of P ms.
struct RateLimit {
    int runs = 0;  // 0: none
    int per_ms = 0;
};

struct Options {
    int max_attempts = 1;
    int retry_delay_ms = 1000;
    int timeout_ms = 0;  // 0: no timeout
    int concurrency = 0;          // 0: no limit
    int concurrency_per_key = 0;  // 0: no limit
    RateLimit rate_limit;
    RateLimit rate_limit_per_key;
    bool notify = false;    // "notify": NOTIFY pipeline_worker when a run finishes
    std::string retention;  // "retention": an interval (checked by the caller, with Postgres' interval input); empty: none
};

struct Definition {
    std::vector<StepSpec> steps;
    Options options;
    std::vector<std::vector<int>> deps;  // per step: indexes of the steps it depends on (core/graph.hpp)
    std::vector<int> order;              // a topological order: each step after its dependencies, starters first,
                                         // then array order (core/graph.hpp)
    json::Value steps_json;  // the parsed steps array (for normalisation)

    // Effective per-step settings: the step's own, else the pipeline options'.
    int max_attempts(size_t i) const { return steps[i].max_attempts ? steps[i].max_attempts : options.max_attempts; }
    int retry_delay_ms(size_t i) const {
        return steps[i].retry_delay_ms >= 0 ? steps[i].retry_delay_ms : options.retry_delay_ms;
    }
    // A step's time limit in ms; 0: none.
    int timeout_ms(size_t i) const {
        if (steps[i].timeout_ms == kNoTimeout) return 0;
        if (steps[i].kind == StepKind::WaitFor) return steps[i].timeout_ms;  // the event's timeout: the step's own only
        return steps[i].timeout_ms ? steps[i].timeout_ms : options.timeout_ms;
    }
    // An HTTP step's request timeout: both limits apply -- the request's ("http": {"timeout_ms"}, else 10,000 ms) and
    // the attempt's (the step's timeout_ms, else the pipeline options'), whichever is shorter. (Until 2026-12-05 the
    // most specific one alone: an "http" timeout_ms of 5,000 let a step's timeout_ms of 500 pass, and a pipeline's
    // timeout_ms of 15,000 replaced the request's default of 10,000.)
    int http_timeout_ms(size_t i) const {
        int own = steps[i].http.timeout_ms > 0 ? steps[i].http.timeout_ms : kDefaultHttpTimeoutMs, step = timeout_ms(i);
        return step > 0 && step < own ? step : own;
    }
};

// Validates a definition given as JSON text. Throws DefinitionError (or json::ParseError). `stored`: a definition
// read back from the catalog, accepted by an earlier version -- checks added since (credentials in URLs, headers
// the client manages) are not applied, so that its runs keep working (the client drops such headers anyway).
Definition parse_definition(const std::string &steps_json, const std::string &options_json, bool stored = false);

// alter_pipeline's change (a JSON object): every key must be an option, whatever its value -- a null one removes the
// option, and is refused like any other for a key that is none (a misspelt removal must not succeed doing nothing).
// Throws DefinitionError.
void check_option_keys(const std::string &change_json);

// A retention given as a bare number ("30", " -2.5 "): PostgreSQL's interval input reads it as seconds, which a user
// meaning days would learn by losing the runs -- refused, with a hint to name the unit ("-1", keep forever, aside).
bool bare_number(const char *text) noexcept;

// A secret header value, moved out of the visible definition.
struct Secret {
    std::string step;
    std::string header;
    std::string value;
};

constexpr const char *kSecretMask = "********";

// The steps array with each function step's "function" replaced by resolved[i] (ignored for HTTP steps) and
// every secret header value replaced by kSecretMask; the secrets are appended to *secrets.
std::string normalized_steps(const Definition &def, const std::vector<std::string> &resolved,
                             std::vector<Secret> *secrets = nullptr);

}  // namespace pw::core
