// Retry back-off: exponential with jitter, capped. Pure C++ (unit-tested).
#pragma once

#include <cstdint>

namespace pw::core {

constexpr int64_t kMaxRetryDelayMs = 3600 * 1000;  // one hour

// Delay before attempt (failed_attempt + 1):
//   d = min(base_ms * 2^(failed_attempt - 1), 1 h), then scaled by a factor in [0.75, 1.25) drawn from `random`.
// base_ms = 0 retries at once.
inline int retry_delay_ms(int base_ms, int failed_attempt, uint64_t random) {
    if (base_ms <= 0) return 0;
    if (failed_attempt < 1) failed_attempt = 1;
    int64_t d = base_ms;
    for (int i = 1; i < failed_attempt && d < kMaxRetryDelayMs; i++) d *= 2;
    if (d > kMaxRetryDelayMs) d = kMaxRetryDelayMs;
    // jitter: 0.75 + (random mod 1000) / 2000  ->  [0.75, 1.25)
    int64_t permille = 750 + static_cast<int64_t>(random % 1000) / 2;
    return static_cast<int>(d * permille / 1000);
}

}  // namespace pw::core
