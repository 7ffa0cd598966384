// grat::adaln, grat::gated_residual, grat::gated_residual_adaln (CPU reference and Meta):
// against their formulas in float64 on fresh random shapes, bitwise the unfused ATen chain in
// float32 (what the models ran before), strided views, and errors that name the argument.
#include <gtest/gtest.h>

#include "grat/ops.h"
#include "test_fused_util.h"

namespace grat::test {
namespace {

constexpr double kEps = 1e-6;

struct Case {
  at::Tensor x, y, gate, scale, shift;
};

// Modulation as the models make it: chunks of one [B, k * C] linear output (strided rows).
Case random_case(std::mt19937_64& rng, at::ScalarType dt) {
  const int64_t b = uniform(rng, 1, 3), n = uniform(rng, 1, 40);
  const int64_t widths[] = {1, 3, 8, 24, 64, 100, 3072};
  const int64_t c = widths[uniform(rng, 0, 6)];
  const auto opt = at::TensorOptions().dtype(dt);
  const at::Tensor mod = at::randn({b, 3 * c}, opt) * 0.5;
  // An offset mean and scale, as residual streams have.
  return {at::randn({b, n, c}, opt) * 3 + 1, at::randn({b, n, c}, opt), mod.narrow(1, 0, c),
          mod.narrow(1, c, c), mod.narrow(1, 2 * c, c)};
}

at::Tensor adaln_formula(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor mean = xd.mean({2}, true);
  const at::Tensor var = (xd - mean).pow(2).mean({2}, true);
  const at::Tensor n = (xd - mean) / (var + kEps).sqrt();
  return n * (1 + scale.to(at::kDouble).unsqueeze(1)) + shift.to(at::kDouble).unsqueeze(1);
}

at::Tensor residual_formula(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  return x.to(at::kDouble) + gate.to(at::kDouble).unsqueeze(1) * y.to(at::kDouble);
}

TEST(FusedNorm, MatchFormulasOnRandomShapes) {
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  at::manual_seed(seed);
  for (const DtypeTol& d : kFusedDtypes) {
    for (int it = 0; it < 30; ++it) {
      const Case k = random_case(rng, d.dtype);
      SCOPED_TRACE("seed " + std::to_string(seed) + " dtype " + c10::toString(d.dtype) + " x " +
                   shape_str(k.x));
      const at::Tensor a = adaln(k.x, k.scale, k.shift, kEps);
      EXPECT_EQ(a.scalar_type(), d.dtype);
      EXPECT_LE(max_rel(a, adaln_formula(k.x, k.scale, k.shift)), d.tol);
      const at::Tensor r = gated_residual(k.x, k.y, k.gate);
      EXPECT_LE(max_rel(r, residual_formula(k.x, k.y, k.gate)), d.tol);
      // The fused pair is exactly the two ops in sequence (the norm reads the rounded residual).
      const auto [r2, n2] = gated_residual_adaln(k.x, k.y, k.gate, k.scale, k.shift, kEps);
      EXPECT_TRUE(at::equal(r2, r));
      EXPECT_TRUE(at::equal(n2, adaln(r, k.scale, k.shift, kEps)));
      EXPECT_LE(max_rel(n2, adaln_formula(r, k.scale, k.shift)), d.tol);
    }
  }
}

TEST(FusedNorm, Float32IsTheUnfusedAtenChainBitwise) {
  at::manual_seed(fresh_seed());
  std::mt19937_64 rng(fresh_seed());
  for (int it = 0; it < 10; ++it) {
    const Case k = random_case(rng, at::kFloat);
    const at::Tensor ln = at::layer_norm(k.x, {k.x.size(2)}, {}, {}, kEps);
    EXPECT_TRUE(at::equal(adaln(k.x, k.scale, k.shift, kEps),
                          ln * (1 + k.scale.unsqueeze(1)) + k.shift.unsqueeze(1)));
    EXPECT_TRUE(at::equal(gated_residual(k.x, k.y, k.gate), k.x + k.gate.unsqueeze(1) * k.y));
  }
}

TEST(FusedNorm, StridedViewsEqualContiguous) {
  const at::Tensor h = at::randn({2, 9, 16});
  const at::Tensor x = h.narrow(1, 4, 5);  // the image part of a joint sequence
  const at::Tensor y = at::randn({2, 5, 16}), m = at::randn({2, 16}), s = at::randn({2, 16});
  EXPECT_TRUE(at::equal(adaln(x, m, s), adaln(x.contiguous(), m, s)));
  EXPECT_TRUE(at::equal(gated_residual(x, y, m), gated_residual(x.contiguous(), y, m)));
}

TEST(FusedNorm, ErrorsNameTheArgument) {
  const at::Tensor x = at::randn({2, 5, 8}), m = at::randn({2, 8});
  expect_error([&] { adaln(x.flatten(0, 1), m, m); }, "adaln x must be [batch, tokens, channels]");
  expect_error([&] { adaln(x, m.narrow(0, 0, 1), m); },
               "adaln scale must be [batch, channels] = [2, 8]; got [1, 8]");
  expect_error([&] { adaln(x, m, m.narrow(1, 0, 4)); }, "adaln shift must be [batch, channels]");
  expect_error([&] { adaln(x, m.to(at::kBFloat16), m); }, "adaln scale must have x's dtype");
  expect_error([&] { adaln(x.to(at::kDouble), m, m); },
               "adaln x must be float32, bfloat16 or float16; got Double");
  expect_error([&] { adaln(x, m, m, -1.0); }, "adaln eps must be >= 0");
  expect_error(
      [&] {
        adaln(at::randn({2, 5, 0}), m.narrow(1, 0, 0), m.narrow(1, 0, 0));
      },
      "adaln x has no channels");
  expect_error([&] { gated_residual(x, x.narrow(1, 0, 4), m); },
               "gated_residual y must have x's shape [2, 5, 8]; got [2, 4, 8]");
  expect_error([&] { gated_residual(x, x, m.unsqueeze(1)); }, "gated_residual gate must be");
  expect_error([&] { gated_residual(x, x, m.to(at::kMeta)); },
               "gated_residual gate must be on x's device");
  expect_error([&] { gated_residual_adaln(x, x, m, m.t(), m); }, "gated_residual_adaln scale");
}

TEST(FusedNorm, MetaShapesAndChecks) {
  const auto meta = at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16);
  const at::Tensor x = at::empty({2, 4608, 3072}, meta), m = at::empty({2, 3072}, meta);
  const at::Tensor a = adaln(x, m, m);
  EXPECT_TRUE(a.is_meta());
  EXPECT_EQ(a.sizes(), x.sizes());
  EXPECT_EQ(a.scalar_type(), at::kBFloat16);
  const auto [r, n] = gated_residual_adaln(x, x, m, m, m);
  EXPECT_EQ(r.sizes(), x.sizes());
  EXPECT_EQ(n.sizes(), x.sizes());
  EXPECT_EQ(gated_residual(x, x, m).sizes(), x.sizes());
  EXPECT_THROW(adaln(x, m.narrow(1, 0, 8), m), c10::Error);
}

}  // namespace
}  // namespace grat::test
