// grat::gelu_tanh (CPU reference and Meta): against the tanh-GELU formula in float64 on fresh
// random shapes, bitwise at::gelu in float32, the prefix copied exactly before it, errors.
#include <gtest/gtest.h>

#include <cmath>

#include "grat/ops.h"
#include "test_fused_util.h"

namespace grat::test {
namespace {

at::Tensor gelu_f64(const at::Tensor& x) {
  const at::Tensor xd = x.to(at::kDouble);
  return 0.5 * xd * (1 + at::tanh(std::sqrt(2.0 / M_PI) * (xd + 0.044715 * xd.pow(3))));
}

TEST(FusedGelu, MatchesFormulaAndCopiesThePrefix) {
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  at::manual_seed(seed);
  const int64_t widths[] = {1, 5, 8, 24, 96, 200};
  for (const DtypeTol& d : kFusedDtypes) {
    for (int it = 0; it < 30; ++it) {
      const int64_t b = uniform(rng, 1, 3), n = uniform(rng, 1, 30);
      const int64_t c = widths[uniform(rng, 0, 5)], p = widths[uniform(rng, 0, 5)];
      const auto opt = at::TensorOptions().dtype(d.dtype);
      const at::Tensor x = at::randn({b, n, c}, opt) * 3, prefix = at::randn({b, n, p}, opt);
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + c10::toString(d.dtype) + " x " +
                   shape_str(x) + " prefix " + shape_str(prefix));
      const at::Tensor g = gelu_tanh(x);
      EXPECT_EQ(g.scalar_type(), d.dtype);
      EXPECT_LE(max_rel(g, gelu_f64(x)), d.tol);
      const at::Tensor cat = gelu_tanh(x, prefix);
      ASSERT_EQ(cat.sizes(), (std::vector<int64_t>{b, n, p + c}));
      EXPECT_TRUE(at::equal(cat.narrow(2, 0, p), prefix));
      EXPECT_TRUE(at::equal(cat.narrow(2, p, c), g));
    }
  }
}

TEST(FusedGelu, Float32IsAtenGeluBitwise) {
  const at::Tensor x = at::randn({2, 33, 40}) * 4;
  EXPECT_TRUE(at::equal(gelu_tanh(x), at::gelu(x, "tanh")));
  // Strided views, as the chunked single block passes them.
  const at::Tensor wide = at::randn({2, 33, 64});
  const at::Tensor v = wide.narrow(2, 8, 40), pre = wide.narrow(2, 0, 8);
  EXPECT_TRUE(at::equal(gelu_tanh(v, pre), at::cat({pre, at::gelu(v, "tanh")}, 2)));
}

TEST(FusedGelu, ErrorsNameTheArgument) {
  const at::Tensor x = at::randn({2, 5, 8});
  expect_error([&] { gelu_tanh(x.flatten(0, 1)); },
               "gelu_tanh x must be [batch, tokens, channels]; got 2 dims");
  expect_error(
      [&] {
        gelu_tanh(x, at::randn({2, 4, 8}));
      },
      "gelu_tanh prefix must be [2, 5, channels] like x; got [2, 4, 8]");
  expect_error([&] { gelu_tanh(x, x.to(at::kHalf)); }, "gelu_tanh prefix must have x's dtype");
  expect_error([&] { gelu_tanh(x.to(at::kInt)); }, "gelu_tanh x must be float32");
}

TEST(FusedGelu, MetaShape) {
  const auto meta = at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16);
  const at::Tensor x = at::empty({1, 4608, 12288}, meta), a = at::empty({1, 4608, 3072}, meta);
  EXPECT_EQ(gelu_tanh(x, a).sizes(), (std::vector<int64_t>{1, 4608, 15360}));
  EXPECT_EQ(gelu_tanh(x).sizes(), x.sizes());
}

}  // namespace
}  // namespace grat::test
