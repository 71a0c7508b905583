// What a request came to, in words a step's error can carry: libcurl's failures told apart (retryable or not,
// with the system's reason), HTTP statuses with the start of the body, timeouts; and what a redirect to another host
// may not carry along.
#pragma once

#include <curl/curl.h>

#include <string>

#include "http/client.hpp"

namespace pw::http {

std::string host_of(const std::string &url);
// scheme://host:port (the scheme's default port when none is given); "" when the URL cannot be read.
std::string origin_of(const std::string &url);
std::string timed_out(long timeout_ms);
std::string with_os_reason(CURL *easy, const std::string &detail);
std::string error_prefix(const std::string &body);
bool reset_by_peer(CURL *easy);
// A transfer that got no complete HTTP answer.
void transport_error(CURL *easy, CURLcode code, const std::string &host, long timeout_ms, const std::string &detail,
                     Result &r);
// A non-2xx, non-redirect answer (with the endpoint's Retry-After for 429/503).
void status_error(CURL *easy, long status, const std::string &body, Result &r);
// The headers kept for a redirect to another origin (scheme, host or port): no secret headers, Authorization, Cookie.
void drop_credentials(Request &req);

}  // namespace pw::http
