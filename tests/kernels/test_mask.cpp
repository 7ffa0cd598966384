// attention_mask against the token-by-token oracle.
#include <gtest/gtest.h>

#include "grat/ops.h"
#include "random_spec.h"

namespace grat::test {
namespace {

TEST(Mask, MatchesOracleOnRandomLayouts) {
  std::mt19937_64 rng(fresh_seed());
  for (int it = 0; it < 150; ++it) {
    Spec s = random_spec(rng, 200);
    const int64_t valid = s.valid.empty() ? -1 : s.valid[0];
    s.valid = valid < 0 ? std::vector<int64_t>{} : std::vector<int64_t>{valid};
    SCOPED_TRACE(describe(s));
    const at::Tensor m =
        attention_mask(s.grid, s.group, s.pattern, s.radius, s.text, s.text_first, valid, false);
    ASSERT_EQ(m.scalar_type(), at::kBool);
    EXPECT_TRUE(at::equal(m, dense_mask(s, 0)));
    // In group-major order the mask is the oracle's, permuted on both axes.
    const at::Tensor ids =
        regroup(at::arange(s.tokens(), at::kLong), s.grid, s.group, 0, s.text, s.text_first);
    const at::Tensor mg =
        attention_mask(s.grid, s.group, s.pattern, s.radius, s.text, s.text_first, valid, true);
    EXPECT_TRUE(at::equal(mg, dense_mask(s, 0).index_select(0, ids).index_select(1, ids)));
  }
}

TEST(Mask, FluxGratBDensityAt1024) {
  // 64x64 tokens, 16x16 groups: interior groups read 9 of 16 groups.
  const at::Tensor m = attention_mask({64, 64}, {16, 16}, "B", 1, 0, true, -1, false);
  const double density = m.to(at::kDouble).mean().item<double>();
  // Row counts per group row: 2,3,3,2 groups -> (10/16)^2.
  EXPECT_NEAR(density, (10.0 / 16) * (10.0 / 16), 1e-12);
}

TEST(Mask, RefusesLargeLayouts) {
  EXPECT_THROW(attention_mask({256, 256}, {16, 16}, "B", 1, 512, true, -1, false), c10::Error);
}

}  // namespace
}  // namespace grat::test
