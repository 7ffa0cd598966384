// CPU reference of grat::attention against the independent dense float64 oracle.
#include <gtest/gtest.h>

#include "grat/ops.h"
#include "random_spec.h"

namespace grat::test {
namespace {

at::Tensor run_op(const Spec& s, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  bool grouped, std::optional<double> scale) {
  if (!grouped) {
    return attention(q, k, v, s.grid, s.group, s.pattern, s.radius, s.text, s.text_first, s.valid,
                     false, scale);
  }
  auto rg = [&](const at::Tensor& x) {
    return regroup(x, s.grid, s.group, 1, s.text, s.text_first);
  };
  const at::Tensor out = attention(rg(q), rg(k), rg(v), s.grid, s.group, s.pattern, s.radius,
                                   s.text, s.text_first, s.valid, true, scale);
  return ungroup(out, s.grid, s.group, 1, s.text, s.text_first);
}

double rel_err(const at::Tensor& out, const at::Tensor& ref) {
  return ((out.to(at::kDouble) - ref).norm() / ref.norm().clamp_min(1e-30)).item<double>();
}

struct DtypeCase {
  at::ScalarType dtype;
  double tol;
};

TEST(Reference, MatchesDenseOracleOnRandomLayouts) {
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  at::manual_seed(seed);
  const DtypeCase dtypes[] = {
      {at::kDouble, 1e-10}, {at::kFloat, 2e-5}, {at::kBFloat16, 2e-2}, {at::kHalf, 4e-3}};
  for (int it = 0; it < 400; ++it) {
    const Spec s = random_spec(rng);
    const DtypeCase dc = dtypes[it % 4];
    const bool grouped = it % 5 == 0;
    const std::optional<double> scale =
        it % 3 == 0 ? std::optional<double>(0.05 + 0.5 * (it % 7) / 7.0) : std::nullopt;
    SCOPED_TRACE("seed=" + std::to_string(seed) + " it=" + std::to_string(it) + " " + describe(s) +
                 " dtype=" + c10::toString(dc.dtype) + (grouped ? " grouped" : ""));
    const auto opt = at::TensorOptions().dtype(dc.dtype);
    const at::Tensor q = at::randn({s.batch, s.tokens(), s.heads, s.dim}, opt);
    const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
    const at::Tensor out = run_op(s, q, k, v, grouped, scale);
    ASSERT_EQ(out.sizes(), q.sizes());
    ASSERT_EQ(out.scalar_type(), dc.dtype);
    ASSERT_TRUE(out.isfinite().all().item<bool>());
    const double sc = scale.value_or(1.0 / std::sqrt(static_cast<double>(s.dim)));
    const at::Tensor ref = dense_attention(s, q, k, v, sc);
    EXPECT_LT(rel_err(out, ref), dc.tol);
  }
}

TEST(Reference, NonContiguousInputsGiveTheSameResult) {
  Spec s{{6, 10}, {4, 4}, "X", 1, 5, false, {3}, 2, 3, 16};
  const at::Tensor base = at::randn({s.batch, s.heads, s.tokens(), s.dim}, at::kDouble);
  const at::Tensor q = base.transpose(1, 2);  // [B, N, H, D] view, not contiguous
  const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
  const at::Tensor out = run_op(s, q, k, v, false, std::nullopt);
  EXPECT_LT(rel_err(out, dense_attention(s, q, k, v, 0.25)), 1e-10);
}

TEST(Reference, RadiusCoveringTheGridEqualsFullAttention) {
  Spec s{{3, 9, 7}, {2, 4, 3}, "B", 5, 6, true, {}, 1, 2, 8};
  const at::Tensor q = at::randn({1, s.tokens(), 2, 8}, at::kDouble);
  const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
  const at::Tensor b = run_op(s, q, k, v, false, std::nullopt);
  s.pattern = "full";
  const at::Tensor f = run_op(s, q, k, v, false, std::nullopt);
  EXPECT_LT(rel_err(b, f.to(at::kDouble)), 1e-12);
}

TEST(Reference, ZeroValidTextStillAttendsImageTokens) {
  Spec s{{8, 8}, {4, 4}, "B", 1, 4, true, {0}, 1, 1, 8};
  const at::Tensor q = at::randn({1, s.tokens(), 1, 8}, at::kDouble);
  const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
  const at::Tensor out = run_op(s, q, k, v, false, std::nullopt);
  EXPECT_TRUE(out.isfinite().all().item<bool>());
  EXPECT_LT(rel_err(out, dense_attention(s, q, k, v, 1 / std::sqrt(8.0))), 1e-10);
}

TEST(Reference, PaddedTextValuesDoNotLeakIntoOutputs) {
  Spec s{{4, 6}, {2, 3}, "X", 1, 8, true, {5}, 1, 2, 8};
  const at::Tensor q = at::randn({1, s.tokens(), 2, 8}, at::kDouble);
  const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
  const at::Tensor a = run_op(s, q, k, v, false, std::nullopt);
  at::Tensor k2 = k.clone(), v2 = v.clone();
  k2.narrow(1, 5, 3).fill_(1e3);  // padding keys/values changed wildly
  v2.narrow(1, 5, 3).fill_(-1e3);
  const at::Tensor b = run_op(s, q, k2, v2, false, std::nullopt);
  EXPECT_TRUE(at::allclose(a, b, 0, 0));
}

TEST(Reference, EmptyBatch) {
  const at::Tensor q = at::randn({0, 20, 2, 8});
  const at::Tensor out = attention(q, q, q, {4, 4}, {2, 2}, "B", 1, 4);
  EXPECT_EQ(out.sizes(), q.sizes());
}

}  // namespace
}  // namespace grat::test
