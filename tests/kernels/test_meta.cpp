// Meta implementations: shapes and dtypes without data, and the same validation.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "grat/ops.h"

namespace grat {
namespace {

TEST(Meta, AttentionReturnsInputShapeAndDtype) {
  const auto opt = at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16);
  // Flux 4096^2 shape: nothing is allocated on the meta device.
  const at::Tensor q = at::empty({2, 512 + 256 * 256, 24, 128}, opt);
  const at::Tensor out = attention(q, q, q, {256, 256}, {16, 16}, "X", 1, 512, true, {300, 512});
  EXPECT_TRUE(out.is_meta());
  EXPECT_EQ(out.sizes(), q.sizes());
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
}

TEST(Meta, AttentionValidatesLikeCpu) {
  const at::Tensor q = at::empty({1, 100, 2, 8}, at::TensorOptions().device(at::kMeta));
  EXPECT_THROW(attention(q, q, q, {10, 10}, {11, 2}), c10::Error);
  EXPECT_THROW(attention(q, q, q, {10, 11}, {2, 2}), c10::Error);
}

TEST(Meta, RegroupKeepsShape) {
  const at::Tensor x = at::empty({1, 4 + 5 * 6 * 7, 3}, at::TensorOptions().device(at::kMeta));
  const at::Tensor g = regroup(x, {5, 6, 7}, {2, 4, 4}, 1, 4, false);
  EXPECT_TRUE(g.is_meta());
  EXPECT_EQ(g.sizes(), x.sizes());
}

}  // namespace
}  // namespace grat
