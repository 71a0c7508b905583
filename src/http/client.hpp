// HTTP client of the workers: many concurrent requests driven by libcurl's multi interface on an epoll set.
// Pure C++ (libcurl, no Postgres headers): call it through pg::cpp_call. The caller waits on fd() (readable
// when sockets are ready) together with its latch, for at most timeout_ms(), then calls drive().
//
// Requests never follow redirects inside libcurl: a 3xx is followed here (when the request asks for it) so
// that every hop goes through the same egress check, which runs when a connection is opened -- against the
// URL's host name and the address actually connected to (after DNS).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/allowlist.hpp"

namespace pw::http {

struct Request {
    uint64_t tag = 0;                  // the caller's key (one request per tag at a time)
    std::string url;
    std::string method = "POST";       // POST, GET, PUT, PATCH, DELETE
    std::vector<std::string> headers;  // "Name: value"
    std::vector<bool> sensitive;       // per header: not sent to another host after a redirect
    std::string body;                  // sent for POST, PUT, PATCH (as application/json)
    long timeout_ms = 10000;
    bool follow_redirects = false;
};

struct Result {
    uint64_t tag = 0;
    bool ok = false;          // a 2xx answer: body is the step output
    long status = 0;          // HTTP status, 0 when no answer
    std::string body;
    std::string error;        // when !ok: what happened, for the step's error
    bool retryable = false;   // 5xx, 429, timeouts, connection errors
    long retry_after_ms = 0;  // Retry-After of a 429/503, 0 if none
};

struct Transfer;

class Client {
public:
    Client();  // throws std::runtime_error when libcurl cannot be set up
    ~Client();
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Egress list and response size limit for requests started from now on. A changed list also stops the
    // reuse of connections opened under the old one.
    void configure(const std::string &allowlist_text, size_t max_response_bytes);
    // At most `n` idle connections kept for reuse (default 2,048): their sockets count against the open-file budget.
    void limit_connection_cache(long n);

    void start(Request req);
    bool cancel(uint64_t tag);  // aborts the request; it produces no result
    // Never blocks: handles ready sockets, expired timers, finished requests. A request is timed out only after
    // its sockets were read: an answer that arrived before the deadline is not lost because drive() came late.
    void drive();
    std::vector<Result> take_results();  // never throws (a swap)

    int fd() const { return epfd_; }
    long timeout_ms() const;    // until drive() is due anyway; -1: nothing pending
    size_t in_flight() const { return transfers_.size(); }
    bool has_results() const { return !results_.empty(); }
    size_t result_count() const { return results_.size(); }

    // libcurl callbacks (public for the C trampolines)
    int on_socket(int sock, int what);
    void on_timer(long ms);

private:
    void* multi_ = nullptr;
    int epfd_ = -1;
    bool timer_armed_ = false;
    std::chrono::steady_clock::time_point deadline_;  // libcurl's timer
    // Each request's own deadline (started + timeout_ms, all redirect hops together) and tag, earliest first.
    // libcurl's own timeout is not used: it would also fail an answer that arrived in time but was read late
    // (the worker was busy in a function step).
    using Deadline = std::pair<std::chrono::steady_clock::time_point, uint64_t>;
    std::set<Deadline> deadlines_;
    core::Allowlist allowlist_;
    std::string allowlist_text_;
    size_t max_bytes_ = 1 << 20;
    bool fresh_connections_ = false;  // the allowlist changed while connections were cached
    long connection_cache_ = 2048;  // idle connections kept (client.cpp kConnectionCache; limit_connection_cache)
    std::unordered_map<uint64_t, std::unique_ptr<Transfer>> transfers_;
    std::vector<void *> idle_handles_;
    std::vector<Result> results_;

    void setup(Transfer &t);
    void finish(Transfer &t, int code);
    void follow(Transfer &t, long status, const char *loc);
    void complete(Transfer &t, Result r);
    void expire();
    void reset_multi();
};

}  // namespace pw::http
