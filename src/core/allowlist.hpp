// Egress control for HTTP steps: the value of pipeline_worker.http_allowed_hosts.
// Pure C++ (no Postgres headers). Entries, comma separated:
//   host name         api.example.com       (case-insensitive, exact)
//   name wildcard     *.example.com         (any name ending in .example.com)
//   everything        *
//   IPv4 / IPv6       10.1.2.3, ::1
//   CIDR              10.0.0.0/8, fd00::/8
// A request is allowed when the URL's host name matches a name entry, or when the address actually connected
// to matches an address entry. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are compared as IPv4.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "error.hpp"

namespace pw::core {

struct AllowlistError : InputError {
    using InputError::InputError;
};

class Allowlist {
public:
    // Throws AllowlistError on a malformed entry.
    static Allowlist parse(const std::string &text);

    bool empty() const { return !any_ && names_.empty() && suffixes_.empty() && nets_.empty(); }
    // Whether some address may be allowed (an IP, a CIDR or "*"): without one, a name is allowed by its name or never.
    bool has_addresses() const { return any_ || !nets_.empty(); }
    // host: the URL's host as written (IPv6 literals with or without brackets).
    bool allows_name(const std::string &host) const;
    // addr: 4 (IPv4) or 16 (IPv6) bytes in network order.
    bool allows_address(const uint8_t *addr, int len) const;
    // For a host that is an IP literal: is that address allowed? false for names.
    bool allows_literal(const std::string &host) const;

    // Parses an IPv4 or IPv6 literal (brackets allowed) into out (16 bytes); returns the length (4, 16) or 0.
    static int parse_ip(const std::string &text, uint8_t *out);

private:
    struct Net {
        uint8_t addr[16];
        int len;     // 4 or 16
        int prefix;  // bits
    };
    bool any_ = false;
    std::vector<std::string> names_;     // lower case
    std::vector<std::string> suffixes_;  // ".example.com", lower case
    std::vector<Net> nets_;
};

}  // namespace pw::core
