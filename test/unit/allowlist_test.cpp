// pipeline_worker.http_allowed_hosts: parsing and matching.
#include <gtest/gtest.h>

#include "core/allowlist.hpp"

using pw::core::Allowlist;
using pw::core::AllowlistError;

namespace {

bool addr_allowed(const Allowlist &l, const std::string &ip) {
    uint8_t a[16];
    int n = Allowlist::parse_ip(ip, a);
    EXPECT_NE(n, 0) << ip;
    return l.allows_address(a, n);
}

}  // namespace

TEST(Allowlist, EmptyAllowsNothing) {
    Allowlist l = Allowlist::parse("");
    EXPECT_TRUE(l.empty());
    EXPECT_FALSE(l.allows_name("localhost"));
    EXPECT_FALSE(addr_allowed(l, "127.0.0.1"));
    EXPECT_TRUE(Allowlist::parse(" , ,").empty());
}

TEST(Allowlist, NamesAreExactAndCaseInsensitive) {
    Allowlist l = Allowlist::parse("api.example.com, LocalHost");
    EXPECT_TRUE(l.allows_name("API.example.com"));
    EXPECT_TRUE(l.allows_name("api.example.com."));
    EXPECT_TRUE(l.allows_name("localhost"));
    EXPECT_FALSE(l.allows_name("example.com"));
    EXPECT_FALSE(l.allows_name("evil-api.example.com"));
    EXPECT_FALSE(l.allows_name("api.example.com.evil.org"));
    EXPECT_FALSE(addr_allowed(l, "127.0.0.1"));  // a name entry says nothing about addresses
}

TEST(Allowlist, Wildcards) {
    Allowlist l = Allowlist::parse("*.example.com");
    EXPECT_TRUE(l.allows_name("a.example.com"));
    EXPECT_TRUE(l.allows_name("a.b.example.com"));
    EXPECT_FALSE(l.allows_name("example.com"));
    EXPECT_FALSE(l.allows_name("badexample.com"));
    Allowlist all = Allowlist::parse("*");
    EXPECT_TRUE(all.allows_name("anything.org"));
    EXPECT_TRUE(addr_allowed(all, "10.1.2.3"));
    EXPECT_FALSE(all.empty());
}

TEST(Allowlist, AddressesAndCidrs) {
    Allowlist l = Allowlist::parse("127.0.0.1, 10.0.0.0/8, fd00::/8, ::1, 192.168.1.0/24");
    EXPECT_TRUE(addr_allowed(l, "127.0.0.1"));
    EXPECT_FALSE(addr_allowed(l, "127.0.0.2"));
    EXPECT_TRUE(addr_allowed(l, "10.255.1.2"));
    EXPECT_FALSE(addr_allowed(l, "11.0.0.1"));
    EXPECT_TRUE(addr_allowed(l, "192.168.1.77"));
    EXPECT_FALSE(addr_allowed(l, "192.168.2.1"));
    EXPECT_TRUE(addr_allowed(l, "::1"));
    EXPECT_TRUE(addr_allowed(l, "fd12::5"));
    EXPECT_FALSE(addr_allowed(l, "fe80::1"));
    // IPv4-mapped IPv6 is compared as IPv4, both ways
    EXPECT_TRUE(addr_allowed(l, "::ffff:10.1.1.1"));
    EXPECT_FALSE(addr_allowed(l, "::ffff:8.8.8.8"));
    EXPECT_TRUE(l.allows_literal("[::1]"));
    EXPECT_TRUE(l.allows_literal("127.0.0.1"));
    EXPECT_FALSE(l.allows_literal("localhost"));
    // an address is never matched as a name
    EXPECT_FALSE(Allowlist::parse("127.0.0.1").allows_name("127.0.0.1"));
}

TEST(Allowlist, PrefixBoundaries) {
    Allowlist l = Allowlist::parse("172.16.0.0/12, 0.0.0.0/0");
    EXPECT_TRUE(addr_allowed(l, "8.8.8.8"));  // /0 is everything (IPv4)
    EXPECT_FALSE(addr_allowed(l, "2001:db8::1"));
    Allowlist m = Allowlist::parse("172.16.0.0/12");
    EXPECT_TRUE(addr_allowed(m, "172.31.255.255"));
    EXPECT_FALSE(addr_allowed(m, "172.32.0.0"));
}

TEST(Allowlist, RejectsMalformedEntries) {
    EXPECT_THROW(Allowlist::parse("10.0.0.0/33"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("10.0.0.0/"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("::1/129"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("exa mple.com"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("*.bad host"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("http://example.com"), AllowlistError);
    EXPECT_THROW(Allowlist::parse("host/8"), AllowlistError);
}

TEST(Allowlist, RefusesUrlsAndBadAddresses) {
    auto hint_of = [](const std::string &text) {
        try {
            pw::core::Allowlist::parse(text);
        } catch (const pw::core::AllowlistError &e) {
            return std::string(e.what()) + " | " + e.hint;
        }
        return std::string("accepted");
    };
    EXPECT_NE(hint_of("http://example.com").find("not URLs"), std::string::npos);
    EXPECT_NE(hint_of("256.1.1.1").find("invalid entry"), std::string::npos);
    EXPECT_NE(hint_of("10.0.0.0/33").find("at most 32"), std::string::npos);
    EXPECT_EQ(hint_of("example.com, 10.0.0.0/8, *.x.org, 127.0.0.1"), "accepted");
}

TEST(Allowlist, HasAddresses) {
    EXPECT_FALSE(Allowlist::parse("").has_addresses());
    EXPECT_FALSE(Allowlist::parse("localhost, *.example.com").has_addresses());
    EXPECT_TRUE(Allowlist::parse("localhost, 127.0.0.1").has_addresses());
    EXPECT_TRUE(Allowlist::parse("10.0.0.0/8").has_addresses());
    EXPECT_TRUE(Allowlist::parse("*").has_addresses());
}
