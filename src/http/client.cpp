#include "http/client.hpp"
#include "http/outcome.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace pw::http {

namespace {

constexpr int kMaxRedirects = 10;
constexpr long kConnectionCache = 2048;

CURLM *M(void *p) { return static_cast<CURLM *>(p); }

}  // namespace

struct Transfer {
    CURL *easy = nullptr;
    Request req;
    std::string host;     // of the current URL (changes on redirects)
    std::string method;   // current method (a 303 turns it into GET)
    curl_slist *headers = nullptr;
    std::string body;     // response
    size_t max_bytes = 0;
    bool too_large = false;
    std::string denied;   // set by the egress check
    int hops = 0;
    int sends = 0;          // requests libcurl was about to send in this hop (see prereq_cb)
    bool resend_stopped = false;
    bool late = false;      // not sent: the deadline had passed when the connection was ready
    bool fresh = false;
    std::chrono::steady_clock::time_point deadline;  // start + timeout_ms: all hops together
    char errbuf[CURL_ERROR_SIZE] = {0};
    const core::Allowlist *allowlist = nullptr;

    ~Transfer() {
        if (headers != nullptr) curl_slist_free_all(headers);
    }
};

namespace {


std::string denial(const std::string &host, const std::string &address, bool list_empty) {
    std::string m = "host \"" + host + "\"";
    if (!address.empty() && address != host) m += " (address " + address + ")";
    m += " is not allowed by pipeline_worker.http_allowed_hosts";
    if (list_empty) m += " (the setting is empty: no host is allowed)";
    return m;
}

size_t write_cb(char *data, size_t size, size_t n, void *userp) {
    Transfer *t = static_cast<Transfer *>(userp);
    size_t len = size * n;
    if (t->body.size() + len > t->max_bytes) {
        t->too_large = true;
        try {  // (what fits: an error answer's first part is shown)
            t->body.append(data, t->max_bytes - t->body.size());
        } catch (...) {
        }
        return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
    }
    try {
        t->body.append(data, len);
    } catch (...) {
        return 0;
    }
    return len;
}

// The egress check, when libcurl is about to connect: the URL's host name or the address itself must be allowed.
curl_socket_t open_cb(void *clientp, curlsocktype purpose, curl_sockaddr *addr) {
    Transfer *t = static_cast<Transfer *>(clientp);
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
    const uint8_t *bytes = nullptr;
    int len = 0;
    char text[INET6_ADDRSTRLEN] = {0};
    if (addr->family == AF_INET) {
        auto *sin = reinterpret_cast<sockaddr_in *>(&addr->addr);
        bytes = reinterpret_cast<const uint8_t *>(&sin->sin_addr);
        len = 4;
        inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    } else if (addr->family == AF_INET6) {
        auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&addr->addr);
        bytes = reinterpret_cast<const uint8_t *>(&sin6->sin6_addr);
        len = 16;
        inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    }
    try {
        if (bytes == nullptr || !(t->allowlist->allows_name(t->host) || t->allowlist->allows_address(bytes, len))) {
            t->denied = denial(t->host, text, t->allowlist->empty());
            return CURL_SOCKET_BAD;
        }
    } catch (...) {
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

// Called just before a request goes out. With HTTP/1.1 (see setup()) libcurl sends a request again on a new connection when a reused one
// died before any answer -- up to 5 times -- but the endpoint may well have received it already: each attempt
// must reach the endpoint once (one Idempotency-Key, one request), so a second send within a hop is stopped and
// the attempt fails as a connection error (retried as a new attempt, with its own key, when attempts remain).
int prereq_cb(void *clientp, char *, char *, int, int) {
    Transfer *t = static_cast<Transfer *>(clientp);
    // libcurl does not know the deadline (see expire()): a connection that became ready only after it -- the
    // worker was busy -- must not send a request that expire() would then abandon and the next attempt repeat.
    if (std::chrono::steady_clock::now() >= t->deadline) {
        t->late = true;
        return CURL_PREREQFUNC_ABORT;
    }
    if (++t->sends > 1) {
        t->resend_stopped = true;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

int socket_cb(CURL *, curl_socket_t s, int what, void *userp, void *) {
    return static_cast<Client *>(userp)->on_socket(s, what);
}

int timer_cb(CURLM *, long ms, void *userp) {
    static_cast<Client *>(userp)->on_timer(ms);
    return 0;
}






bool has_body(const std::string &method) { return method == "POST" || method == "PUT" || method == "PATCH"; }

}  // namespace

Client::Client() {
    static bool global_done = false;
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
        global_done = true;
    }
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::runtime_error(std::string("epoll_create1 failed: ") + strerror(errno));
    reset_multi();
}

Client::~Client() {
    for (auto &kv : transfers_) {
        curl_multi_remove_handle(M(multi_), kv.second->easy);
        curl_easy_cleanup(kv.second->easy);
    }
    transfers_.clear();
    for (void *e : idle_handles_) curl_easy_cleanup(static_cast<CURL *>(e));
    if (multi_ != nullptr) curl_multi_cleanup(M(multi_));
    if (epfd_ >= 0) close(epfd_);
}

void Client::reset_multi() {
    if (multi_ != nullptr) curl_multi_cleanup(M(multi_));  // closes the cached connections
    multi_ = curl_multi_init();
    if (multi_ == nullptr) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(M(multi_), CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(M(multi_), CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(M(multi_), CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(M(multi_), CURLMOPT_TIMERDATA, this);
    // Keep idle connections for reuse (libcurl's default cache follows the number of transfers in progress,
    // so a pause between bursts would close them all and every burst would connect again).
    curl_multi_setopt(M(multi_), CURLMOPT_MAXCONNECTS, connection_cache_);
    timer_armed_ = false;
    fresh_connections_ = false;
}

void Client::limit_connection_cache(long n) {
    connection_cache_ = n < kConnectionCache ? n : kConnectionCache;
    curl_multi_setopt(M(multi_), CURLMOPT_MAXCONNECTS, connection_cache_);
}

void Client::configure(const std::string &allowlist_text, size_t max_response_bytes) {
    max_bytes_ = max_response_bytes;
    if (allowlist_text == allowlist_text_) return;
    allowlist_ = core::Allowlist::parse(allowlist_text);
    allowlist_text_ = allowlist_text;
    if (transfers_.empty()) reset_multi();
    else fresh_connections_ = true;
}

int Client::on_socket(int sock, int what) {
    epoll_event ev{};
    ev.data.fd = sock;
    if (what == CURL_POLL_REMOVE) {
        (void)epoll_ctl(epfd_, EPOLL_CTL_DEL, sock, &ev);  // may already be gone with the socket
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? uint32_t(EPOLLIN) : 0u) | (what & CURL_POLL_OUT ? uint32_t(EPOLLOUT) : 0u);
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, sock, &ev) != 0 && errno == ENOENT)
        (void)epoll_ctl(epfd_, EPOLL_CTL_ADD, sock, &ev);
    return 0;
}

void Client::on_timer(long ms) {
    if (ms < 0) {
        timer_armed_ = false;
        return;
    }
    timer_armed_ = true;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
}

long Client::timeout_ms() const {
    if (!results_.empty()) return 0;
    bool any = false;
    std::chrono::steady_clock::time_point due;
    if (timer_armed_) {
        due = deadline_;
        any = true;
    }
    if (!deadlines_.empty() && (!any || deadlines_.begin()->first < due)) {
        due = deadlines_.begin()->first;
        any = true;
    }
    if (!any) return -1;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - std::chrono::steady_clock::now());
    return left.count() < 0 ? 0 : static_cast<long>(left.count()) + 1;
}

void Client::setup(Transfer &t) {
    CURL *e = t.easy;
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, t.req.url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, "");  // never a proxy from the server's environment
    // no CURLOPT_TIMEOUT_MS: the deadline is enforced by expire(), after the sockets were read
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(t.max_bytes));
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, &t);
    // HTTP/1.1 only: with HTTP/2 libcurl also re-sends after REFUSED_STREAM / GOAWAY / HTTP_1_1_REQUIRED, which
    // prereq_cb cannot tell from the unsafe re-send; on HTTP/1.1 "one send per attempt" is exact.
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, prereq_cb);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, &t);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "pipeline_worker/0.2");  // (the library's version: pipeline_worker.control's default_version)
    if (t.fresh) curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);

    if (t.headers != nullptr) curl_slist_free_all(t.headers);
    t.headers = nullptr;
    bool body = has_body(t.method);
    auto add = [&t](const char *h) {
        curl_slist *n = curl_slist_append(t.headers, h);
        if (n == nullptr) throw std::bad_alloc();
        t.headers = n;
    };
    add("Expect:");  // no 100-continue round trip for large bodies
    bool own_type = false;  // a step may send its own Content-Type (e.g. application/vnd.api+json) instead
    for (const auto &h : t.req.headers)
        if (h.size() >= 13 && strncasecmp(h.c_str(), "content-type", 12) == 0 && (h[12] == ':' || h[12] == ';'))
            own_type = true;
    if (body && !own_type) add("Content-Type: application/json");
    for (const auto &h : t.req.headers) add(h.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers);

    if (t.method == "GET") {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t.req.body.size()));
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, t.req.body.data());
        if (t.method != "POST") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str());
    } else {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t.method.c_str());
    }
    t.body.clear();
    t.sends = 0;
    t.resend_stopped = false;
    t.late = false;
    t.too_large = false;
    t.denied.clear();
    t.errbuf[0] = '\0';
    t.host = host_of(t.req.url);
}

void Client::start(Request req) {
    auto t = std::make_unique<Transfer>();
    t->req = std::move(req);
    t->method = t->req.method;
    t->max_bytes = max_bytes_;
    t->allowlist = &allowlist_;
    t->fresh = fresh_connections_;
    long ms = t->req.timeout_ms > 0 ? t->req.timeout_ms : 1;
    t->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    uint64_t tag = t->req.tag;
    if (transfers_.count(tag) != 0) throw std::logic_error("a request with this tag is already in flight");

    // Denied before any connection when the host is an address (or nothing is allowed at all) -- and before its name is
    // even looked up when the list has no address that it could resolve to: a name not listed cannot be allowed then,
    // and the DNS query alone would carry the name out (until 2026-12-07 it was made, and the failed lookup retried;
    // acceptance walk-through).
    std::string host = host_of(t->req.url);
    uint8_t addr[16];
    bool literal = core::Allowlist::parse_ip(host, addr) != 0;
    if (allowlist_.empty() || (literal && !allowlist_.allows_literal(host)) ||
        (!literal && !allowlist_.has_addresses() && !allowlist_.allows_name(host))) {
        Result r;
        r.tag = tag;
        r.error = denial(host, "", allowlist_.empty());
        results_.push_back(std::move(r));
        return;
    }

    if (!idle_handles_.empty()) {
        t->easy = static_cast<CURL *>(idle_handles_.back());
        idle_handles_.pop_back();
    } else {
        t->easy = curl_easy_init();
        if (t->easy == nullptr) throw std::bad_alloc();
    }
    Transfer &ref = *t;
    transfers_.emplace(tag, std::move(t));
    try {
        setup(ref);
        deadlines_.emplace(ref.deadline, tag);
        if (curl_multi_add_handle(M(multi_), ref.easy) != CURLM_OK) throw std::runtime_error("curl_multi_add_handle failed");
    } catch (...) {
        deadlines_.erase({ref.deadline, tag});
        curl_easy_cleanup(ref.easy);
        transfers_.erase(tag);
        throw;
    }
}

bool Client::cancel(uint64_t tag) {
    auto it = transfers_.find(tag);
    if (it == transfers_.end()) return false;
    curl_multi_remove_handle(M(multi_), it->second->easy);
    curl_easy_cleanup(it->second->easy);  // not reused: it may be mid-request
    deadlines_.erase({it->second->deadline, tag});
    transfers_.erase(it);
    return true;
}

void Client::complete(Transfer &t, Result r) {
    uint64_t tag = t.req.tag;
    r.tag = tag;
    results_.push_back(std::move(r));  // first: if it throws, the transfer is untouched (and expires in time)
    curl_multi_remove_handle(M(multi_), t.easy);
    deadlines_.erase({t.deadline, tag});
    try {
        idle_handles_.push_back(t.easy);
    } catch (...) {
        curl_easy_cleanup(t.easy);
    }
    transfers_.erase(tag);  // destroys t
}

namespace {




}  // namespace

// A 3xx answer with a Location the step follows: the next hop goes through the egress check again when it
// connects. Completes the transfer when it cannot be followed.
void Client::follow(Transfer &t, long status, const char *loc) {
    if (t.hops >= kMaxRedirects) {
        Result r;
        r.error = "too many redirects (more than " + std::to_string(kMaxRedirects) + ")";
        complete(t, std::move(r));
        return;
    }
    if (std::chrono::steady_clock::now() >= t.deadline) {
        Result r;
        r.error = timed_out(t.req.timeout_ms);
        r.retryable = true;
        complete(t, std::move(r));
        return;
    }
    std::string next = loc;
    try {
        // (credentials are for one origin: another scheme or port of the same host may be another service -- until
        // 2026-12-05 only another host name dropped them)
        bool same_origin = origin_of(next) == origin_of(t.req.url) && !origin_of(next).empty();
        t.hops++;
        t.req.url = next;
        if (status == 303 || ((status == 301 || status == 302) && t.method == "POST")) t.method = "GET";
        if (!same_origin) drop_credentials(t.req);
        curl_multi_remove_handle(M(multi_), t.easy);
        setup(t);
        if (curl_multi_add_handle(M(multi_), t.easy) != CURLM_OK) throw std::runtime_error("curl_multi_add_handle failed");
    } catch (const std::exception &e) {
        // never leave the transfer outside the multi handle: it would never finish
        Result fail;
        fail.error = std::string("could not follow the redirect: ") + e.what();
        complete(t, std::move(fail));
    }
}

void Client::finish(Transfer &t, int code_) {
    CURLcode code = static_cast<CURLcode>(code_);
    Result r;
    long status = 0;
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &status);
    r.status = status;
    std::string detail = t.errbuf[0] ? t.errbuf : curl_easy_strerror(code);

    if (code != CURLE_OK && !t.denied.empty()) {
        r.error = t.denied;
    } else if (code != CURLE_OK && t.late) {
        r.error = timed_out(t.req.timeout_ms);
        r.retryable = true;
    } else if (code != CURLE_OK && t.resend_stopped) {
        r.error = "connection error: the connection closed without an answer (not sent again in this attempt: the "
                  "endpoint may have received it)";
        r.retryable = true;
    } else if ((t.too_large || code == CURLE_FILESIZE_EXCEEDED) && status >= 400) {
        // An error answer is one whatever its size: its status decides (a 503 is retried), the body's first part is
        // shown. (Until 2026-12-07 a large one failed the attempt for its size, not retried; acceptance walk-through.)
        static const std::string kUnread = "(its body, longer than pipeline_worker.http_max_response_bytes, not read)";
        status_error(t.easy, status, t.body.empty() ? kUnread : t.body, r);
    } else if (t.too_large || code == CURLE_FILESIZE_EXCEEDED) {
        r.error = "response body exceeds pipeline_worker.http_max_response_bytes (" + std::to_string(t.max_bytes) +
                  " bytes)";
    } else if (code != CURLE_OK) {
        transport_error(t.easy, code, t.host, t.req.timeout_ms, detail, r);
    } else if (status >= 200 && status < 300) {
        r.ok = true;
        r.body = std::move(t.body);
    } else if (status >= 300 && status < 400) {
        char *loc = nullptr;
        curl_easy_getinfo(t.easy, CURLINFO_REDIRECT_URL, &loc);
        if (loc != nullptr && t.req.follow_redirects) {
            follow(t, status, loc);
            return;
        }
        if (loc != nullptr)
            r.error = "HTTP " + std::to_string(status) + ": redirect to " + loc +
                      " not followed (the step does not set \"follow_redirects\": true)";
        else
            r.error = "HTTP " + std::to_string(status) + ": " + error_prefix(t.body);
    } else {
        status_error(t.easy, status, t.body, r);
    }
    complete(t, std::move(r));
}

void Client::drive() {
    epoll_event events[256];
    int running = 0;
    for (int round = 0; round < 64; round++) {
        int n = epoll_wait(epfd_, events, 256, 0);
        if (n <= 0) break;
        for (int i = 0; i < n; i++) {
            int flags = 0;
            if (events[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
            if (events[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
            if (events[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
            curl_multi_socket_action(M(multi_), events[i].data.fd, flags, &running);
        }
        if (n < 256) break;
    }
    if (timer_armed_ && std::chrono::steady_clock::now() >= deadline_) {
        timer_armed_ = false;
        curl_multi_socket_action(M(multi_), CURL_SOCKET_TIMEOUT, 0, &running);
    }
    int left = 0;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(M(multi_), &left)) != nullptr) {
        if (msg->msg != CURLMSG_DONE) continue;
        Transfer *t = nullptr;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &t);
        CURLcode code = msg->data.result;
        if (t != nullptr) finish(*t, code);
    }
    expire();
    if (fresh_connections_ && transfers_.empty()) reset_multi();
}

// Requests past their deadline that are still unanswered once everything readable was read: timed out.
void Client::expire() {
    auto now = std::chrono::steady_clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        auto it = transfers_.find(deadlines_.begin()->second);
        if (it == transfers_.end()) {  // cannot happen: every way out of transfers_ erases the deadline
            deadlines_.erase(deadlines_.begin());
            continue;
        }
        Transfer &t = *it->second;
        Result r;
        r.tag = t.req.tag;
        r.error = timed_out(t.req.timeout_ms);
        r.retryable = true;
        results_.push_back(std::move(r));  // first: if it throws, nothing has changed yet
        deadlines_.erase(deadlines_.begin());
        curl_multi_remove_handle(M(multi_), t.easy);
        curl_easy_cleanup(t.easy);  // not reused: it was mid-request
        transfers_.erase(it);
    }
}

std::vector<Result> Client::take_results() {
    std::vector<Result> out;
    out.swap(results_);
    return out;
}

}  // namespace pw::http
