// grat::qk_norm_rope (CPU reference and Meta): against RMSNorm + RoPE in float64 on fresh random
// shapes, bitwise the unfused ATen chain in float32 (rms_norm, cat, the rotation), the two
// streams in either order, strided views, and errors that name the argument.
#include <gtest/gtest.h>

#include "grat/ops.h"
#include "test_fused_util.h"

namespace grat::test {
namespace {

constexpr double kEps = 1e-6;

at::Tensor rope_f64(const at::Tensor& y, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor p = y.reshape({y.size(0), y.size(1), y.size(2), y.size(3) / 2, 2});
  const at::Tensor rot = at::stack({-p.select(4, 1), p.select(4, 0)}, -1).flatten(3);
  const at::Tensor c = cos.to(at::kDouble).unsqueeze(0).unsqueeze(2);
  const at::Tensor s = sin.to(at::kDouble).unsqueeze(0).unsqueeze(2);
  return y * c + rot * s;
}

at::Tensor rms_f64(const at::Tensor& x, const at::Tensor& w) {
  const at::Tensor xd = x.to(at::kDouble);
  return xd / (xd.pow(2).mean({3}, true) + kEps).sqrt() * w.to(at::kDouble);
}

// The rotation as grat::rope's reference computes it, in float32.
at::Tensor rope_f32(const at::Tensor& y, const at::Tensor& cos, const at::Tensor& sin) {
  const at::Tensor p = y.reshape({y.size(0), y.size(1), y.size(2), y.size(3) / 2, 2});
  const at::Tensor rot = at::stack({-p.select(4, 1), p.select(4, 0)}, -1).flatten(3);
  return y * cos.unsqueeze(0).unsqueeze(2) + rot * sin.unsqueeze(0).unsqueeze(2);
}

TEST(FusedQk, MatchesRmsNormThenRopeOnRandomShapes) {
  const uint64_t seed = fresh_seed();
  std::mt19937_64 rng(seed);
  at::manual_seed(seed);
  const int64_t dims[] = {2, 8, 24, 64, 128};
  for (const DtypeTol& d : kFusedDtypes) {
    for (int it = 0; it < 30; ++it) {
      const int64_t b = uniform(rng, 1, 3), h = uniform(rng, 1, 4), dim = dims[uniform(rng, 0, 4)];
      const int64_t n1 = uniform(rng, 0, 20), n2 = uniform(rng, 0, 1) ? uniform(rng, 1, 30) : 0;
      const auto opt = at::TensorOptions().dtype(d.dtype);
      const at::Tensor x = at::randn({b, n1, h, dim}, opt) * 4, w = at::randn({dim}, opt);
      const at::Tensor x2 = at::randn({b, n2, h, dim}, opt), w2 = at::randn({dim}, opt);
      const at::Tensor cos = at::randn({n1 + n2, dim}), sin = at::randn({n1 + n2, dim});
      SCOPED_TRACE("seed " + std::to_string(seed) + " " + c10::toString(d.dtype) + " x " +
                   shape_str(x) + " x2 " + shape_str(x2));
      at::Tensor out, ref;
      if (n2 > 0) {
        out = qk_norm_rope(x, w, cos, sin, kEps, x2, w2);
        ref = rope_f64(at::cat({rms_f64(x, w), rms_f64(x2, w2)}, 1), cos, sin);
      } else {
        out = qk_norm_rope(x, w, cos, sin, kEps);
        ref = rope_f64(rms_f64(x, w), cos, sin);
      }
      ASSERT_EQ(out.sizes(), ref.sizes());
      EXPECT_EQ(out.scalar_type(), d.dtype);
      if (out.numel() > 0) {
        EXPECT_LE(max_rel(out, ref), d.tol);
      }
    }
  }
}

TEST(FusedQk, Float32IsTheUnfusedAtenChainBitwise) {
  const at::Tensor x = at::randn({2, 7, 3, 16}), x2 = at::randn({2, 11, 3, 16});
  const at::Tensor w = at::randn({16}), w2 = at::randn({16});
  const at::Tensor cos = at::randn({18, 16}), sin = at::randn({18, 16});
  const at::Tensor y =
      at::cat({at::rms_norm(x, {16}, w, kEps), at::rms_norm(x2, {16}, w2, kEps)}, 1);
  EXPECT_TRUE(at::equal(qk_norm_rope(x, w, cos, sin, kEps, x2, w2), rope_f32(y, cos, sin)));
}

TEST(FusedQk, StreamsKeepTheirOrderAndWeights) {
  // [x, x2] with cos/sin over the joint sequence = each stream alone with its slice of cos/sin.
  const at::Tensor x = at::randn({1, 5, 2, 8}, at::kBFloat16),
                   x2 = at::randn({1, 9, 2, 8}, at::kBFloat16);
  const at::Tensor w = at::randn({8}, at::kBFloat16), w2 = at::randn({8}, at::kBFloat16);
  const at::Tensor cos = at::randn({14, 8}), sin = at::randn({14, 8});
  const at::Tensor joint = qk_norm_rope(x, w, cos, sin, kEps, x2, w2);
  EXPECT_TRUE(at::equal(joint.narrow(1, 0, 5),
                        qk_norm_rope(x, w, cos.narrow(0, 0, 5), sin.narrow(0, 0, 5), kEps)));
  EXPECT_TRUE(at::equal(joint.narrow(1, 5, 9),
                        qk_norm_rope(x2, w2, cos.narrow(0, 5, 9), sin.narrow(0, 5, 9), kEps)));
}

TEST(FusedQk, StridedViewEqualsContiguous) {
  // q as a view of a fused qkv projection: strided tokens, contiguous heads.
  const at::Tensor qkv = at::randn({2, 6, 3 * 4 * 16});
  const at::Tensor q = qkv.narrow(2, 4 * 16, 4 * 16).unflatten(2, {4, 16});
  const at::Tensor w = at::randn({16}), cos = at::randn({6, 16}), sin = at::randn({6, 16});
  EXPECT_TRUE(at::equal(qk_norm_rope(q, w, cos, sin), qk_norm_rope(q.contiguous(), w, cos, sin)));
}

TEST(FusedQk, ErrorsNameTheArgument) {
  const at::Tensor x = at::randn({2, 5, 3, 8}), w = at::randn({8});
  const at::Tensor cos = at::randn({5, 8}), sin = at::randn({5, 8});
  expect_error([&] { qk_norm_rope(x.flatten(2), w, cos, sin); },
               "qk_norm_rope x must be [batch, tokens, heads, head_dim]; got 3 dims");
  expect_error(
      [&] {
        qk_norm_rope(at::randn({2, 5, 3, 7}), at::randn({7}), cos, sin);
      },
      "qk_norm_rope head_dim must be even; got 7");
  expect_error([&] { qk_norm_rope(x, at::randn({4}), cos, sin); },
               "qk_norm_rope weight must be [head_dim] = [8]; got [4]");
  expect_error([&] { qk_norm_rope(x, w.to(at::kHalf), cos, sin); },
               "qk_norm_rope weight must have x's dtype (Float); got Half");
  expect_error([&] { qk_norm_rope(x, w, cos.narrow(0, 0, 4), sin); },
               "qk_norm_rope cos must be [tokens, head_dim] = [5, 8]; got [4, 8]");
  expect_error([&] { qk_norm_rope(x, w, cos, sin.to(at::kBFloat16)); },
               "qk_norm_rope sin must be float32; got BFloat16");
  expect_error([&] { qk_norm_rope(x, w, cos, sin, kEps, x, std::nullopt); },
               "x2 and weight2 come together; got x2 without weight2");
  expect_error(
      [&] {
        qk_norm_rope(x, w, at::randn({10, 8}), at::randn({10, 8}), kEps, at::randn({2, 5, 4, 8}),
                     w);
      },
      "qk_norm_rope x2 must be [2, tokens, 3, 8] like x; got [2, 5, 4, 8]");
  expect_error(
      [&] {
        qk_norm_rope(x, w, at::randn({10, 8}), at::randn({10, 8}), kEps, x.to(at::kBFloat16), w);
      },
      "qk_norm_rope x2 must have x's dtype");
  expect_error([&] { qk_norm_rope(x.to(at::kLong), w, cos, sin); },
               "qk_norm_rope x must be float32, bfloat16 or float16; got Long");
}

TEST(FusedQk, MetaShape) {
  const auto meta = at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16);
  const at::Tensor img = at::empty({2, 4096, 24, 128}, meta),
                   txt = at::empty({2, 512, 24, 128}, meta);
  const at::Tensor w = at::empty({128}, meta);
  const auto fmeta = at::TensorOptions().device(at::kMeta).dtype(at::kFloat);
  const at::Tensor cos = at::empty({4608, 128}, fmeta);
  const at::Tensor out = qk_norm_rope(txt, w, cos, cos, kEps, img, w);
  EXPECT_TRUE(out.is_meta());
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, 4608, 24, 128}));
  EXPECT_THROW(qk_norm_rope(txt, w, cos, cos), c10::Error);  // cos covers 4608 tokens, not 512
}

}  // namespace
}  // namespace grat::test
