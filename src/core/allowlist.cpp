#include "core/allowlist.hpp"

#include <arpa/inet.h>

#include <cctype>
#include <cstring>

namespace pw::core {

namespace {

std::string trim_lower(const std::string &s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
    std::string out = s.substr(b, e - b);
    for (auto &c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string strip_brackets(const std::string &h) {
    if (h.size() >= 2 && h.front() == '[' && h.back() == ']') return h.substr(1, h.size() - 2);
    return h;
}

bool valid_name(const std::string &n) {
    if (n.empty() || n.size() > 253) return false;
    for (char c : n)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) return false;
    return n.front() != '.' && n.back() != '.';
}

// ::ffff:a.b.c.d -> a.b.c.d
int unmap(const uint8_t *in, int len, uint8_t *out) {
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (len == 16 && memcmp(in, prefix, 12) == 0) {
        memcpy(out, in + 12, 4);
        return 4;
    }
    memcpy(out, in, len);
    return len;
}

bool prefix_match(const uint8_t *a, const uint8_t *b, int bits) {
    int full = bits / 8, rest = bits % 8;
    if (memcmp(a, b, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

}  // namespace

int Allowlist::parse_ip(const std::string &text, uint8_t *out) {
    std::string t = strip_brackets(text);
    if (t.find(':') != std::string::npos) {
        in6_addr a6;
        if (inet_pton(AF_INET6, t.c_str(), &a6) != 1) return 0;
        memcpy(out, &a6, 16);
        return 16;
    }
    in_addr a4;
    if (inet_pton(AF_INET, t.c_str(), &a4) != 1) return 0;
    memcpy(out, &a4, 4);
    return 4;
}

Allowlist Allowlist::parse(const std::string &text) {
    Allowlist list;
    size_t start = 0;
    while (start <= text.size()) {
        size_t comma = text.find(',', start);
        if (comma == std::string::npos) comma = text.size();
        std::string e = trim_lower(text.substr(start, comma - start));
        start = comma + 1;
        if (e.empty()) {
            if (comma == text.size()) break;
            continue;
        }
        if (e == "*") {
            list.any_ = true;
            continue;
        }
        if (e.rfind("*.", 0) == 0) {
            std::string rest = e.substr(2);
            if (!valid_name(rest))
                throw AllowlistError("invalid entry \"" + e + "\" in pipeline_worker.http_allowed_hosts",
                                     "A wildcard entry looks like *.example.com.");
            list.suffixes_.push_back("." + rest);
            continue;
        }
        if (e.find("://") != std::string::npos)
            throw AllowlistError("invalid entry \"" + e + "\" in pipeline_worker.http_allowed_hosts",
                                 "Entries are host names, not URLs: write example.com, not http://example.com.");
        std::string addr = e;
        int prefix = -1;
        size_t slash = e.find('/');
        if (slash != std::string::npos) {
            addr = e.substr(0, slash);
            std::string bits = e.substr(slash + 1);
            if (bits.empty() || bits.size() > 3 || bits.find_first_not_of("0123456789") != std::string::npos)
                throw AllowlistError("invalid CIDR entry \"" + e + "\" in pipeline_worker.http_allowed_hosts",
                                     "A CIDR entry looks like 10.0.0.0/8 or fd00::/8.");
            prefix = std::stoi(bits);
        }
        Net net{};
        net.len = parse_ip(addr, net.addr);
        if (net.len == 0) {
            // all digits and dots is an IPv4 address that did not parse (256.1.1.1), not a host name
            bool dotted = e.find_first_not_of("0123456789.") == std::string::npos;
            if (prefix >= 0 || dotted || !valid_name(e))
                throw AllowlistError("invalid entry \"" + e + "\" in pipeline_worker.http_allowed_hosts",
                                     "Entries are host names, *.domain wildcards, *, IP addresses or CIDR ranges, "
                                     "separated by commas, without ports: an allowed host is allowed on every port.");
            list.names_.push_back(e);
            continue;
        }
        uint8_t tmp[16];
        net.len = unmap(net.addr, net.len, tmp);
        memcpy(net.addr, tmp, net.len);
        int max_bits = net.len * 8;
        if (prefix < 0) prefix = max_bits;
        if (prefix > max_bits)
            throw AllowlistError("invalid CIDR entry \"" + e + "\" in pipeline_worker.http_allowed_hosts",
                                 "The prefix length is at most 32 for IPv4 and 128 for IPv6.");
        net.prefix = prefix;
        list.nets_.push_back(net);
    }
    return list;
}

bool Allowlist::allows_name(const std::string &host) const {
    if (any_) return true;
    std::string h = trim_lower(strip_brackets(host));
    while (!h.empty() && h.back() == '.') h.pop_back();  // absolute form "example.com."
    uint8_t tmp[16];
    if (parse_ip(h, tmp) != 0) return false;  // addresses are matched as addresses
    for (const auto &n : names_)
        if (h == n) return true;
    for (const auto &s : suffixes_)
        if (h.size() > s.size() && h.compare(h.size() - s.size(), s.size(), s) == 0) return true;
    return false;
}

bool Allowlist::allows_address(const uint8_t *addr, int len) const {
    if (any_) return true;
    uint8_t a[16];
    int n = unmap(addr, len, a);
    for (const auto &net : nets_)
        if (net.len == n && prefix_match(a, net.addr, net.prefix)) return true;
    return false;
}

bool Allowlist::allows_literal(const std::string &host) const {
    uint8_t a[16];
    int n = parse_ip(host, a);
    return n != 0 && allows_address(a, n);
}

}  // namespace pw::core
