#include "definition.hpp"

#include <curl/curl.h>
#include <strings.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include "graph.hpp"

namespace pw::core {

namespace {

constexpr size_t kMaxSteps = 1000;
constexpr size_t kMaxNameLength = 200;
constexpr int64_t kMaxAttempts = 1000;
constexpr int64_t kMaxDelayMs = 24LL * 3600 * 1000;
constexpr int64_t kMaxTimeoutMs = 2147483647;

const char *const kStepKeys =
    "name, function, http, pipeline, sleep, wait_for, depends_on, if, map, max_parallel, max_attempts, retry_delay_ms, "
    "timeout_ms, secret_headers, follow_redirects, description";
const char *const kMapHint =
    "\"map\": true runs the step once per element of its prev (a JSON array), with \"item\" and \"index\" in its "
    "context; \"max_parallel\" bounds how many of those tasks run at once.";
const char *const kKindHint =
    "A step has exactly one of \"function\": \"schema.fn\", \"http\": {\"url\": ...}, \"pipeline\": \"name\", "
    "\"sleep\": \"5 minutes\" or \"wait_for\": \"event\".";
const char *const kHttpKeys = "url, method, headers, timeout_ms, follow_redirects, secret_headers";
const char *const kUrlHint = "Give \"url\" as a JSON string \"http://host[:port]/path\" or \"https://...\" (port 1-65535).";
const char *const kHeadersHint = "Write \"headers\": {\"Name\": \"value\", ...} with string values.";
const char *const kSecretHint = "Write [\"Name\", ...]: names of headers in \"headers\" whose values stay hidden.";
const char *const kNameHint = "Every step needs a \"name\": a non-empty JSON string of at most 200 bytes (UTF-8), unique in the pipeline.";
const char *const kBoolHint = "Use the JSON booleans true or false (not strings).";
const char *const kOptionKeys =
    "max_attempts, retry_delay_ms, timeout_ms, concurrency, concurrency_per_key, rate_limit, rate_limit_per_key, "
    "retention, notify, description";
constexpr int64_t kMaxLimit = 1000000;
constexpr int64_t kMaxRateWindowMs = 7LL * 24 * 3600 * 1000;

std::string where(size_t index, const std::string &name) {
    std::string s = "step " + std::to_string(index + 1);
    if (!name.empty()) s += " (" + json::quote(name) + ")";
    return s;
}

int int_in_range(const json::Value &v, const std::string &what, int64_t lo, int64_t hi) {
    int64_t n = 0;
    std::string hint = "Give a whole JSON number from " + std::to_string(lo) + " to " + std::to_string(hi) + ".";
    if (!v.as_int64(n))
        throw DefinitionError(what + " must be an integer, not " +
                                  (v.is_number() ? v.as_string() : "a JSON " + std::string(v.type_name())),
                              hint);
    if (n < lo || n > hi)
        throw DefinitionError(what + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                                  ", not " + std::to_string(n),
                              hint);
    return static_cast<int>(n);
}

bool iequals(const std::string &a, const std::string &b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); i++)
        if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
            return false;
    return true;
}

// The URL as libcurl will read it (port range, IPv6 literals, ...); credentials in it are refused: they would be
// stored in the definition in clear, where secret headers are not.
void check_url_with_curl(const std::string &u, const std::string &at) {
    CURLU *h = curl_url();
    if (h == nullptr) throw std::bad_alloc();
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, u.c_str(), 0);
    std::string bad = rc == CURLUE_OK ? std::string() : curl_url_strerror(rc);
    char *user = nullptr, *port = nullptr, *host = nullptr;
    // A host name that is not ASCII (an internationalized name written as such): this libcurl has no IDN support, so
    // every request would fail with "URL using bad/illegal format" (until 2026-12-07 the definition was accepted).
    bool idn = false;
    if (rc == CURLUE_OK && curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK && host != nullptr)
        for (const char *c = host; *c != '\0'; c++) idn = idn || static_cast<unsigned char>(*c) >= 0x80;
    if (host != nullptr) curl_free(host);
    bool has_user = rc == CURLUE_OK && curl_url_get(h, CURLUPART_USER, &user, 0) == CURLUE_OK && user != nullptr;
    bool port_zero = rc == CURLUE_OK && curl_url_get(h, CURLUPART_PORT, &port, 0) == CURLUE_OK && port != nullptr &&
                     std::strtol(port, nullptr, 10) == 0;
    if (user != nullptr) curl_free(user);
    if (port != nullptr) curl_free(port);
    curl_url_cleanup(h);
    if (!bad.empty()) throw DefinitionError(at + ": invalid http \"url\" " + json::quote(u) + ": " + bad, kUrlHint);
    if (port_zero) throw DefinitionError(at + ": invalid http \"url\" " + json::quote(u) + ": port 0", kUrlHint);
    if (idn)
        throw DefinitionError(at + ": invalid http \"url\" " + json::quote(u) + ": the host name is not ASCII",
                              "Write an internationalized host name in its ASCII (IDNA, \"xn--\") form.");
    if (has_user)
        throw DefinitionError(at + ": http \"url\" must not contain credentials (user:password@)",
                              "Send them in a header listed in \"secret_headers\", e.g. \"Authorization\": \"Basic ...\".");
}

bool is_token_char(char c) {
    // RFC 9110 tchar
    return std::isalnum(static_cast<unsigned char>(c)) || std::string("!#$%&'*+-.^_`|~").find(c) != std::string::npos;
}

}  // namespace

bool is_client_managed_header(const char *name) noexcept {
    static const char *const kManaged[] = {"content-length", "transfer-encoding", "connection",   "keep-alive",
                                           "upgrade",        "te",                "trailer",      "expect",
                                           "proxy-connection"};
    for (const char *m : kManaged)
        if (strcasecmp(name, m) == 0) return true;
    return false;
}

namespace {

std::vector<std::string> header_names(const json::Value &val, const std::string &what) {
    if (!val.is_array()) throw DefinitionError(what + " must be an array of header names", kSecretHint);
    std::vector<std::string> names;
    for (const auto &n : val.as_array()) {
        if (!n.is_string()) throw DefinitionError(what + " must be an array of header names", kSecretHint);
        names.push_back(n.as_string());
    }
    return names;
}

HttpSpec parse_http(const json::Value &v, const std::string &at, bool stored) {
    if (!v.is_object())
        throw DefinitionError(at + ": \"http\" must be an object",
                              std::string("Write \"http\": {\"url\": \"https://...\", \"method\": \"POST\"}; allowed http keys: ") +
                                  kHttpKeys + ".");
    HttpSpec h;
    bool have_url = false;
    for (const auto &[key, val] : v.as_object()) {
        if (key == "url") {
            if (!val.is_string()) throw DefinitionError(at + ": http \"url\" must be a string", kUrlHint);
            const std::string &u = val.as_string();
            std::string lower = u;
            std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
            size_t skip = 0;
            if (lower.rfind("http://", 0) == 0) skip = 7;
            else if (lower.rfind("https://", 0) == 0) skip = 8;
            else throw DefinitionError(at + ": http \"url\" must start with http:// or https://, got " + json::quote(u), kUrlHint);
            size_t host_end = u.find_first_of("/?#", skip);
            std::string authority = u.substr(skip, host_end == std::string::npos ? std::string::npos : host_end - skip);
            if (authority.empty() || authority[0] == ':' || authority[0] == '@')
                throw DefinitionError(at + ": http \"url\" has no host: " + json::quote(u), kUrlHint);
            for (char c : u)
                if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
                    throw DefinitionError(at + ": http \"url\" contains white space or control characters",
                                          "Percent-encode them (a space is %20).");
            if (!stored) check_url_with_curl(u, at);
            h.url = u;
            have_url = true;
        } else if (key == "method") {
            if (!val.is_string())
                throw DefinitionError(at + ": http \"method\" must be a string", "Use one of GET, POST, PUT, PATCH, DELETE.");
            std::string m = val.as_string();
            std::transform(m.begin(), m.end(), m.begin(), [](unsigned char c) { return std::toupper(c); });
            if (m != "GET" && m != "POST" && m != "PUT" && m != "PATCH" && m != "DELETE")
                throw DefinitionError(at + ": unsupported http \"method\" " + json::quote(val.as_string()),
                                      "Use one of GET, POST, PUT, PATCH, DELETE.");
            h.method = m;
        } else if (key == "headers") {
            if (!val.is_object()) throw DefinitionError(at + ": http \"headers\" must be an object of strings", kHeadersHint);
            for (const auto &[hname, hval] : val.as_object()) {
                if (hname.empty() || !std::all_of(hname.begin(), hname.end(), is_token_char))
                    throw DefinitionError(at + ": invalid http header name " + json::quote(hname),
                                          "A header name is letters, digits and !#$%&'*+-.^_`|~ (no spaces or colons).");
                if (!stored && is_client_managed_header(hname.c_str()))
                    throw DefinitionError(at + ": http header " + json::quote(hname) + " cannot be set by a step",
                                          "Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, "
                                          "Trailer, Expect and Proxy-Connection are set by the HTTP client.");
                if (!hval.is_string())
                    throw DefinitionError(at + ": http header " + json::quote(hname) + " must have a string value", kHeadersHint);
                for (char c : hval.as_string())
                    if (c == '\r' || c == '\n' || c == '\0')
                        throw DefinitionError(at + ": http header " + json::quote(hname) +
                                              " contains a line break", "A header value is one line: no CR, LF or NUL.");
                if (!stored) {  // (RFC 9110: no control character but a tab in a field value; one name once)
                    for (char c : hval.as_string())
                        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
                            throw DefinitionError(at + ": http header " + json::quote(hname) +
                                                  " contains a control character",
                                                  "A header value may contain tabs, but no other control character.");
                    for (const auto &earlier : h.headers)
                        if (strcasecmp(earlier.first.c_str(), hname.c_str()) == 0)
                            throw DefinitionError(at + ": http header " + json::quote(hname) + " is given twice",
                                                  "Header names are case-insensitive: give each once.");
                }
                h.headers.emplace_back(hname, hval.as_string());
            }
        } else if (key == "timeout_ms") {
            h.timeout_ms = int_in_range(val, at + ": http \"timeout_ms\"", 1, kMaxTimeoutMs);
        } else if (key == "follow_redirects") {
            if (!val.is_bool()) throw DefinitionError(at + ": http \"follow_redirects\" must be true or false", kBoolHint);
            h.follow_redirects = val.as_bool();
            h.has_follow_redirects = true;
        } else if (key == "secret_headers") {
            h.secret_headers = header_names(val, at + ": http \"secret_headers\"");
            h.has_secret_list = true;
        } else {
            throw DefinitionError(at + ": unknown http key " + json::quote(key),
                                  std::string("Allowed http keys: ") + kHttpKeys + ".");
        }
    }
    if (!have_url) throw DefinitionError(at + ": http step needs a \"url\"", kUrlHint);
    return h;
}

// Every secret header must be one of the step's headers.
void check_secret_headers(const HttpSpec &h, const std::string &at) {
    for (const auto &name : h.secret_headers) {
        bool found = false;
        for (const auto &hv : h.headers) found = found || iequals(hv.first, name);
        if (!found)
            throw DefinitionError(at + ": secret header " + json::quote(name) + " is not in \"headers\"",
                                  "List in \"secret_headers\" the names of headers whose values must stay hidden.");
    }
}

// Whether two lists name the same headers (case-insensitively, in any order).
bool same_headers(const std::vector<std::string> &a, const std::vector<std::string> &b) {
    auto covered = [](const std::vector<std::string> &x, const std::vector<std::string> &y) {
        return std::all_of(x.begin(), x.end(), [&](const std::string &n) {
            return std::any_of(y.begin(), y.end(), [&](const std::string &m) { return iequals(n, m); });
        });
    };
    return covered(a, b) && covered(b, a);
}

// What the keys of a step allow together (after parse_step read them one by one); step-level "secret_headers" and
// "follow_redirects" merged.
void check_step(StepSpec &s, const std::string &at, bool have_function, int kinds, const json::Value *step_secrets,
                const json::Value *step_follow, bool stored) {
    if (have_function && s.is_http)
        throw DefinitionError(at + " has both \"function\" and \"http\"", "A step is either a function step or an http step.");
    if (kinds > 1)
        throw DefinitionError(at + " has more than one of \"function\", \"http\", \"pipeline\", \"sleep\", \"wait_for\"",
                              kKindHint);
    if (kinds == 0)
        throw DefinitionError(at + " has none of \"function\", \"http\", \"pipeline\", \"sleep\", \"wait_for\"",
                              kKindHint);
    // (new definitions only: one stored before this check still loads, its timeout ignored as it was)
    if (!stored && s.timeout_ms != 0 && (s.kind == StepKind::Sleep || s.kind == StepKind::Pipeline))
        throw DefinitionError(at + ": \"timeout_ms\" applies to function, http and wait_for steps",
                              "A sleep lasts its interval; a child pipeline's steps have timeouts of their own.");
    if (step_secrets != nullptr) {
        if (!s.is_http)
            throw DefinitionError(at + ": \"secret_headers\" applies to http steps only",
                                  "Secret headers hide values of the step's \"http\" \"headers\".");
        std::vector<std::string> names = header_names(*step_secrets, at + ": \"secret_headers\"");
        if (s.http.has_secret_list && !same_headers(names, s.http.secret_headers))
            throw DefinitionError(at + ": \"secret_headers\" of the step and of its \"http\" disagree",
                                  "Give the list once, at the step or inside \"http\".");
        s.http.secret_headers = names;
    }
    if (step_follow != nullptr) {
        if (!step_follow->is_bool()) throw DefinitionError(at + ": \"follow_redirects\" must be true or false", kBoolHint);
        if (!s.is_http)
            throw DefinitionError(at + ": \"follow_redirects\" applies to http steps only",
                                  "Redirects are followed (or not) by http steps.");
        if (s.http.has_follow_redirects && s.http.follow_redirects != step_follow->as_bool())
            throw DefinitionError(at + ": \"follow_redirects\" of the step and of its \"http\" disagree",
                                  "Give it once, at the step or inside \"http\".");
        s.http.follow_redirects = step_follow->as_bool();
    }
    if (s.is_http) check_secret_headers(s.http, at);
    if (s.map && s.kind != StepKind::Function && s.kind != StepKind::Http && s.kind != StepKind::Pipeline)
        throw DefinitionError(at + ": \"map\" applies to function, http and pipeline steps", kMapHint);
    if (s.max_parallel != 0 && !s.map)
        throw DefinitionError(at + ": \"max_parallel\" applies to map steps only", kMapHint);
}

StepSpec parse_step(const json::Value &v, size_t index, bool stored) {
    if (!v.is_object())
        throw DefinitionError(where(index, "") + " must be a JSON object, not " + v.type_name(),
                              "Example: {\"name\": \"fetch\", \"function\": \"public.fetch\"}");
    StepSpec s;
    const json::Value *name = v.find("name");
    if (name == nullptr) throw DefinitionError(where(index, "") + " has no \"name\"", kNameHint);
    if (!name->is_string() || name->as_string().empty())
        throw DefinitionError(where(index, "") + ": \"name\" must be a non-empty string", kNameHint);
    if (name->as_string().size() > kMaxNameLength)
        throw DefinitionError(where(index, "") + ": \"name\" is longer than " + std::to_string(kMaxNameLength) +
                              " bytes",
                              kNameHint);
    s.name = name->as_string();
    const std::string at = where(index, s.name);

    std::set<std::string> seen;
    bool have_function = false;
    int kinds = 0;
    const json::Value *step_secrets = nullptr;  // "secret_headers" at the step level (same as inside "http")
    const json::Value *step_follow = nullptr;   // "follow_redirects" at the step level (same as inside "http")
    for (const auto &[key, val] : v.as_object()) {
        if (!seen.insert(key).second)
            throw DefinitionError(at + ": key " + json::quote(key) + " appears twice", "Give each key of a step once.");
        if (key == "name" || key == "description") {
            continue;
        } else if (key == "function") {
            if (!val.is_string() || val.as_string().empty())
                throw DefinitionError(at + ": \"function\" must be a non-empty string naming a function",
                                      "Name a function (jsonb) RETURNS jsonb, e.g. \"public.charge\".");
            s.function = val.as_string();
            have_function = true;
            kinds++;
        } else if (key == "http") {
            s.http = parse_http(val, at, stored);
            s.is_http = true;
            s.kind = StepKind::Http;
            kinds++;
        } else if (key == "sleep") {
            if (!val.is_string() || val.as_string().empty())
                throw DefinitionError(at + ": \"sleep\" must be an interval as a JSON string",
                                      "Example: \"sleep\": \"5 minutes\".");
            s.sleep = val.as_string();
            s.kind = StepKind::Sleep;
            kinds++;
        } else if (key == "wait_for") {
            if (!val.is_string() || val.as_string().empty() || val.as_string().size() > kMaxNameLength)
                throw DefinitionError(at + ": \"wait_for\" must be an event name (a non-empty string of at most " +
                                          std::to_string(kMaxNameLength) + " bytes in UTF-8)",
                                      "Example: \"wait_for\": \"payment_received\", \"timeout_ms\": 86400000.");
            s.wait_for = val.as_string();
            s.kind = StepKind::WaitFor;
            kinds++;
        } else if (key == "depends_on") {
            if (!val.is_array())
                throw DefinitionError(at + ": \"depends_on\" must be an array of step names",
                                      "Example: \"depends_on\": [\"a\", \"b\"]; [] makes the step a root.");
            for (const auto &d : val.as_array()) {
                if (!d.is_string() || d.as_string().empty())
                    throw DefinitionError(at + ": \"depends_on\" must be an array of step names",
                                          "Example: \"depends_on\": [\"a\", \"b\"]; [] makes the step a root.");
                s.depends_on.push_back(d.as_string());
            }
            s.has_depends_on = true;
        } else if (key == "if") {
            if (!val.is_object())
                throw DefinitionError(at + ": \"if\" must be a JSON object, not " + val.type_name(),
                                      "The step runs only if its context contains that object (context @> if), "
                                      "e.g. {\"prev\": {\"paid\": true}}.");
            s.if_json = json::serialize(val);
        } else if (key == "map") {
            if (!val.is_bool()) throw DefinitionError(at + ": \"map\" must be true or false", kMapHint);
            s.map = val.as_bool();
        } else if (key == "max_parallel") {
            s.max_parallel = int_in_range(val, at + ": \"max_parallel\"", 1, kMaxLimit);
        } else if (key == "pipeline") {
            if (!val.is_string() || val.as_string().empty())
                throw DefinitionError(at + ": \"pipeline\" must name a pipeline (a non-empty string)",
                                      "A \"pipeline\" step starts a child run of that pipeline with prev as its input.");
            s.child = val.as_string();
            s.kind = StepKind::Pipeline;
            kinds++;
        } else if (key == "max_attempts") {
            s.max_attempts = int_in_range(val, at + ": \"max_attempts\"", 1, kMaxAttempts);
        } else if (key == "retry_delay_ms") {
            s.retry_delay_ms = int_in_range(val, at + ": \"retry_delay_ms\"", 0, kMaxDelayMs);
        } else if (key == "timeout_ms") {
            s.timeout_ms = int_in_range(val, at + ": \"timeout_ms\"", 0, kMaxTimeoutMs);
            if (s.timeout_ms == 0) s.timeout_ms = kNoTimeout;
        } else if (key == "secret_headers") {
            step_secrets = &val;
        } else if (key == "follow_redirects") {
            step_follow = &val;
        } else {
            throw DefinitionError(at + ": unknown key " + json::quote(key),
                                  std::string("Allowed step keys: ") + kStepKeys + ".");
        }
    }
    check_step(s, at, have_function, kinds, step_secrets, step_follow, stored);
    return s;
}

// A concurrency limit: a positive integer; the error says what the option means.
int limit_option(const json::Value &v, const std::string &what) {
    try {
        return int_in_range(v, what, 1, kMaxLimit);
    } catch (const DefinitionError &e) {
        throw DefinitionError(e.what(), "A concurrency limit is the most runs executing at once (1 to " +
                                            std::to_string(kMaxLimit) + "); remove the option for no limit.");
    }
}

RateLimit parse_rate_limit(const json::Value &v, const std::string &what) {
    const char *hint = "Example: {\"runs\": 10, \"per_ms\": 1000} (at most 10 runs begin in any 1000 ms).";
    if (!v.is_object()) throw DefinitionError(what + " must be a JSON object, not " + v.type_name(), hint);
    RateLimit r;
    for (const auto &[key, val] : v.as_object()) {
        try {
            if (key == "runs") r.runs = int_in_range(val, what + " \"runs\"", 1, kMaxLimit);
            else if (key == "per_ms") r.per_ms = int_in_range(val, what + " \"per_ms\"", 1, kMaxRateWindowMs);
            else throw DefinitionError(what + ": unknown key " + json::quote(key), hint);
        } catch (const DefinitionError &e) {
            throw DefinitionError(e.what(), hint);
        }
    }
    if (r.runs == 0 || r.per_ms == 0) throw DefinitionError(what + " needs both \"runs\" and \"per_ms\"", hint);
    return r;
}

Options parse_options(const json::Value &v, bool stored) {
    Options o;
    if (!v.is_object())
        throw DefinitionError(std::string("options must be a JSON object, not ") + v.type_name(),
                              std::string("Allowed options: ") + kOptionKeys + ".");
    for (const auto &[key, val] : v.as_object()) {
        if (key == "description") continue;
        if (key == "notify") {
            if (!val.is_bool())
                throw DefinitionError("option \"notify\" must be true or false",
                                      "\"notify\": true sends NOTIFY pipeline_worker when each run finishes.");
            o.notify = val.as_bool();
            continue;
        }
        if (key == "retention") {
            int64_t n = 0;
            if (val.is_number() && val.as_int64(n) && n == -1) {  // as the setting: -1 keeps them forever
                o.retention = "-1";
                continue;
            }
            if (!val.is_string() || val.as_string().empty() ||
                // (new definitions only: one stored before 2026-12-07 with a bare number still loads, in seconds)
                (!stored && bare_number(val.as_string().c_str()) && val.as_string() != "-1"))
                throw DefinitionError("option \"retention\" must be an interval with its unit as a JSON string, or -1",
                                      "Example: \"retention\": \"30 days\" (finished runs older than that are deleted); "
                                      "-1 keeps them forever. A bare number would be read as seconds.");
            o.retention = val.as_string();
            continue;
        }
        if (key == "max_attempts") o.max_attempts = int_in_range(val, "option \"max_attempts\"", 1, kMaxAttempts);
        else if (key == "retry_delay_ms") o.retry_delay_ms = int_in_range(val, "option \"retry_delay_ms\"", 0, kMaxDelayMs);
        else if (key == "timeout_ms") o.timeout_ms = int_in_range(val, "option \"timeout_ms\"", 0, kMaxTimeoutMs);
        else if (key == "concurrency") o.concurrency = limit_option(val, "option \"concurrency\"");
        else if (key == "concurrency_per_key") o.concurrency_per_key = limit_option(val, "option \"concurrency_per_key\"");
        else if (key == "rate_limit") o.rate_limit = parse_rate_limit(val, "option \"rate_limit\"");
        else if (key == "rate_limit_per_key") o.rate_limit_per_key = parse_rate_limit(val, "option \"rate_limit_per_key\"");
        else
            throw DefinitionError("unknown option " + json::quote(key), std::string("Allowed options: ") + kOptionKeys + ".");
    }
    return o;
}

}  // namespace

void check_option_keys(const std::string &change_json) {
    json::Value v = json::parse(change_json);
    if (!v.is_object())
        throw DefinitionError(std::string("options must be a JSON object, not ") + v.type_name(),
                              std::string("Allowed options: ") + kOptionKeys + ".");
    std::set<std::string> known;
    std::string keys = kOptionKeys;
    for (size_t at = 0, comma; at < keys.size(); at = comma + 2) {  // ("a, b, c")
        comma = keys.find(", ", at);
        if (comma == std::string::npos) comma = keys.size();
        known.insert(keys.substr(at, comma - at));
    }
    json::Value checked = json::Value::object();  // the given values as a new definition's (nulls: removals)
    for (const auto &entry : v.as_object()) {
        if (known.count(entry.first) == 0)
            throw DefinitionError("unknown option " + json::quote(entry.first),
                                  std::string("Allowed options: ") + kOptionKeys + ".");
        if (!entry.second.is_null()) checked.set(entry.first, entry.second);
    }
    // (the merged options are checked as stored ones, which tolerate what an older release stored: a new value
    // must pass as in create_pipeline -- a bare-number retention was accepted here; review, 2026-12-07)
    (void)parse_options(checked, false);
}

Definition parse_definition(const std::string &steps_text, const std::string &options_text, bool stored) {
    Definition def;
    def.steps_json = json::parse(steps_text);
    def.options = parse_options(json::parse(options_text), stored);
    const json::Value &steps = def.steps_json;
    if (!steps.is_array())
        throw DefinitionError(std::string("steps must be a JSON array of step objects, not ") + steps.type_name(),
                              "Example: [{\"name\": \"fetch\", \"function\": \"public.fetch\"}]");
    if (steps.as_array().empty()) throw DefinitionError("steps must not be empty", "A pipeline needs at least one step.");
    if (steps.as_array().size() > kMaxSteps)
        throw DefinitionError("a pipeline has at most " + std::to_string(kMaxSteps) + " steps",
                              "Move part of the work into child pipelines (\"pipeline\" steps) or map steps.");
    std::set<std::string> names;
    for (size_t i = 0; i < steps.as_array().size(); ++i) {
        StepSpec s = parse_step(steps.as_array()[i], i, stored);
        if (!names.insert(s.name).second)
            throw DefinitionError("duplicate step name " + json::quote(s.name), "Step names must be unique within a pipeline.");
        def.steps.push_back(std::move(s));
    }
    StepGraph g = resolve_graph(def.steps);
    def.deps = std::move(g.deps);
    def.order = std::move(g.order);
    return def;
}

std::string normalized_steps(const Definition &def, const std::vector<std::string> &resolved,
                             std::vector<Secret> *secrets) {
    json::Value steps = def.steps_json;
    auto &items = steps.as_array();
    for (size_t i = 0; i < items.size(); ++i) {
        const StepSpec &spec = def.steps[i];
        if (spec.kind != StepKind::Function && spec.kind != StepKind::Http) continue;
        if (!spec.is_http) {
            if (i < resolved.size()) items[i].set("function", json::Value::string(resolved[i]));
            continue;
        }
        json::Value http = *items[i].find("http");
        const json::Value *headers = http.find("headers");
        if (headers == nullptr || spec.http.secret_headers.empty()) continue;
        json::Value masked = *headers;
        for (auto &[name, value] : masked.as_object()) {
            bool secret = false;
            for (const auto &s : spec.http.secret_headers) secret = secret || iequals(s, name);
            if (!secret) continue;
            if (secrets != nullptr) secrets->push_back(Secret{spec.name, name, value.as_string()});
            value = json::Value::string(kSecretMask);
        }
        http.set("headers", masked);
        items[i].set("http", http);
    }
    return json::serialize(steps);
}

bool bare_number(const char *text) noexcept {
    if (text == nullptr) return false;
    const char *p = text;
    auto blank = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (blank(*p)) p++;
    if (*p == '+' || *p == '-') p++;
    bool digits = false;
    while ((*p >= '0' && *p <= '9') || *p == '.') digits |= *p++ != '.';
    while (blank(*p)) p++;
    return digits && *p == '\0';
}

}  // namespace pw::core
