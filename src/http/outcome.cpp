#include "http/outcome.hpp"

#include <cerrno>
#include <cstring>

namespace pw::http {

namespace {

constexpr size_t kErrorBodyPrefix = 200;

long os_errno(CURL *e) {
    long n = 0;
    return curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &n) == CURLE_OK ? n : 0;
}

}  // namespace

std::string host_of(const std::string &url) {
    std::string host;
    CURLU *u = curl_url();
    if (u == nullptr) return host;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
        char *h = nullptr;
        if (curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h != nullptr) {
            host = h;
            curl_free(h);
        }
    }
    curl_url_cleanup(u);
    return host;
}

std::string origin_of(const std::string &url) {
    std::string origin;
    CURLU *u = curl_url();
    if (u == nullptr) return origin;
    if (curl_url_set(u, CURLUPART_URL, url.c_str(), 0) == CURLUE_OK) {
        char *scheme = nullptr, *host = nullptr, *port = nullptr;
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && scheme && host && port)
            origin = std::string(scheme) + "://" + host + ":" + port;
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
    }
    curl_url_cleanup(u);
    return origin;
}

std::string timed_out(long ms) {
    // (the shorter of the request's and the attempt's limits: not always the step's own timeout_ms)
    return "request timed out after " + std::to_string(ms) + " ms";
}

// libcurl's message for a failed connect says "Couldn't connect to server"; the system's reason says why.
std::string with_os_reason(CURL *e, const std::string &detail) {
    long n = os_errno(e);
    if (n == 0) return detail;
    std::string reason = strerror(static_cast<int>(n));
    return detail.find(reason) == std::string::npos ? detail + " (" + reason + ")" : detail;
}

// The first part of a body for an error text, not cutting a UTF-8 character in two.
std::string error_prefix(const std::string &body) {
    size_t n = body.size() < kErrorBodyPrefix ? body.size() : kErrorBodyPrefix;
    while (n > 0 && n < body.size() && (static_cast<unsigned char>(body[n]) & 0xC0) == 0x80) n--;
    return body.substr(0, n);
}

bool reset_by_peer(CURL *e) {
    long n = os_errno(e);
    return n == ECONNRESET || n == EPIPE || n == ECONNABORTED;
}

// The failure of a transfer that got no complete HTTP answer: its message and whether it may be retried.
void transport_error(CURL *easy, CURLcode code, const std::string &host, long timeout_ms, const std::string &detail,
                     Result &r) {
    switch (code) {
        case CURLE_OPERATION_TIMEDOUT:
            r.error = timed_out(timeout_ms);
            r.retryable = true;
            break;
        case CURLE_COULDNT_RESOLVE_HOST:
            r.error = "could not resolve host \"" + host + "\": " + detail;
            r.retryable = true;
            break;
        case CURLE_COULDNT_CONNECT:
            r.error = "connection failed: " + with_os_reason(easy, detail);
            r.retryable = true;
            break;
        case CURLE_GOT_NOTHING:  // (closed without an error of the system's: its last errno is an older one's)
        case CURLE_PARTIAL_FILE:
            r.error = "connection error: " + detail;
            r.retryable = true;
            break;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_WEIRD_SERVER_REPLY:
            r.error = "connection error: " + with_os_reason(easy, detail);
            r.retryable = true;
            break;
        case CURLE_SSL_CONNECT_ERROR:
            if (reset_by_peer(easy)) {  // the connection dropped during the handshake: transient
                r.error = "connection error: " + with_os_reason(easy, detail);
                r.retryable = true;
                break;
            }
            r.error = "TLS error: " + detail;
            break;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_USE_SSL_FAILED:
            r.error = "TLS error: " + detail;
            break;
        default:
            r.error = "request failed: " + detail;
            break;
    }
}

// A non-2xx, non-redirect answer: its message, whether it may be retried, and the endpoint's Retry-After.
void status_error(CURL *easy, long status, const std::string &body, Result &r) {
    r.error = "HTTP " + std::to_string(status) + ": " + error_prefix(body);
    r.retryable = status >= 500 || status == 429;
    if (status == 429 || status == 503) {
        curl_off_t after = 0;
        if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
            r.retry_after_ms = static_cast<long>(after > 3600 ? 3600 : after) * 1000;
    }
}

// The headers kept for a redirect to another host: no secret headers, Authorization, Cookie.
void drop_credentials(Request &req) {
    std::vector<std::string> kept;
    for (size_t i = 0; i < req.headers.size(); i++) {
        const std::string &h = req.headers[i];
        std::string lower = h.substr(0, h.find(':'));
        for (auto &ch : lower) ch = static_cast<char>(tolower(static_cast<unsigned char>(ch)));
        bool secret = i < req.sensitive.size() && req.sensitive[i];
        if (!secret && lower != "authorization" && lower != "cookie" && lower != "proxy-authorization")
            kept.push_back(h);
    }
    req.headers.swap(kept);
    req.sensitive.assign(req.headers.size(), false);
}

}  // namespace pw::http
