#include <gtest/gtest.h>

#include "core/backoff.hpp"

using pw::core::retry_delay_ms;

TEST(Backoff, ZeroBaseRetriesAtOnce) { EXPECT_EQ(retry_delay_ms(0, 3, 12345), 0); }

TEST(Backoff, DoublesPerAttemptWithinJitter) {
    for (int attempt = 1; attempt <= 5; attempt++) {
        int64_t nominal = 100LL << (attempt - 1);
        for (uint64_t r : {0ULL, 1ULL, 499ULL, 999ULL, 123456789ULL}) {
            int d = retry_delay_ms(100, attempt, r);
            EXPECT_GE(d, nominal * 3 / 4) << attempt;
            EXPECT_LT(d, nominal * 5 / 4) << attempt;
        }
    }
}

TEST(Backoff, Capped) {
    EXPECT_LT(retry_delay_ms(1000, 60, 999), 3600 * 1000 * 5 / 4);
    EXPECT_GE(retry_delay_ms(1000, 60, 0), 3600 * 1000 * 3 / 4);
}
