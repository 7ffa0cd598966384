// FastDiv (attention_params.h): the CTA prologue's division by launch-fixed divisors must
// equal integer division for every dividend the kernels use (0 <= n < 2^31).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "cuda/attention_params.h"

namespace grat::cuda {
namespace {

void ExpectExact(uint32_t d, uint32_t n) {
  const FastDiv f = FastDiv::make(d);
  ASSERT_EQ(f.div(n), n / d) << "n=" << n << " d=" << d;
}

TEST(FastDiv, SmallDivisorsAndDividends) {
  for (uint32_t d = 1; d <= 600; ++d) {
    for (uint32_t n = 0; n <= 3000; ++n) ExpectExact(d, n);
  }
}

TEST(FastDiv, EdgesAroundMultiplesAndTheTop) {
  const uint32_t top = (uint32_t{1} << 31) - 1;
  for (uint32_t d : {1u, 2u, 3u, 7u, 24u, 96u, 255u, 256u, 257u, 1000u, 65535u, 65536u, 65537u,
                     12288u, 49152u, (1u << 30) + 1, top}) {
    for (uint32_t k : {1u, 2u, 3u, 1000u, 1u << 20}) {
      const uint64_t m = uint64_t{d} * k;
      if (m <= top) {
        ExpectExact(d, static_cast<uint32_t>(m));
        ExpectExact(d, static_cast<uint32_t>(m - 1));
        if (m + 1 <= top) ExpectExact(d, static_cast<uint32_t>(m + 1));
      }
    }
    ExpectExact(d, top);
    ExpectExact(d, 0);
  }
}

TEST(FastDiv, RandomDivisorsAndDividends) {
  std::mt19937 rng(20261128);
  std::uniform_int_distribution<uint32_t> any(0, (uint32_t{1} << 31) - 1);
  for (int i = 0; i < 200000; ++i) {
    const uint32_t d = 1 + any(rng) % ((i & 1) ? 4096u : (uint32_t{1} << 31) - 1);
    ExpectExact(d, any(rng));
  }
}

TEST(FastDiv, ZeroDivisorIsTreatedAsOne) {
  // Unused divisors (pattern full has no tiles per group) must not divide by zero on the host.
  EXPECT_EQ(FastDiv::make(0).div(12345), 12345u);
}

}  // namespace
}  // namespace grat::cuda
