// regroup / ungroup against an independently enumerated group-major order.
#include <gtest/gtest.h>

#include "grat/ops.h"
#include "random_spec.h"

namespace grat::test {
namespace {

// Model-order token index at each group-major position, by walking the groups.
std::vector<int64_t> expected_order(const Spec& s) {
  std::vector<int64_t> g3(3, 1), grid3(3, 1);
  const size_t off = 3 - s.grid.size();
  for (size_t a = 0; a < s.grid.size(); ++a) {
    grid3[off + a] = s.grid[a];
    g3[off + a] = s.group[a];
  }
  const int64_t base = s.text_first ? s.text : 0;
  std::vector<int64_t> order;
  if (s.text_first) {
    for (int64_t i = 0; i < s.text; ++i) order.push_back(i);
  }
  for (int64_t t0 = 0; t0 < grid3[0]; t0 += g3[0])
    for (int64_t h0 = 0; h0 < grid3[1]; h0 += g3[1])
      for (int64_t w0 = 0; w0 < grid3[2]; w0 += g3[2])
        for (int64_t t = t0; t < std::min(t0 + g3[0], grid3[0]); ++t)
          for (int64_t h = h0; h < std::min(h0 + g3[1], grid3[1]); ++h)
            for (int64_t w = w0; w < std::min(w0 + g3[2], grid3[2]); ++w)
              order.push_back(base + (t * grid3[1] + h) * grid3[2] + w);
  if (!s.text_first) {
    for (int64_t i = 0; i < s.text; ++i) order.push_back(s.image() + i);
  }
  return order;
}

TEST(Regroup, MatchesEnumeratedGroupOrder) {
  std::mt19937_64 rng(fresh_seed());
  for (int it = 0; it < 200; ++it) {
    const Spec s = random_spec(rng, 2000);
    SCOPED_TRACE(describe(s));
    const at::Tensor ids = at::arange(s.tokens(), at::kLong);
    const at::Tensor g = regroup(ids, s.grid, s.group, 0, s.text, s.text_first);
    const std::vector<int64_t> want = expected_order(s);
    ASSERT_EQ(std::vector<int64_t>(g.data_ptr<int64_t>(), g.data_ptr<int64_t>() + g.numel()), want);
    const at::Tensor back = ungroup(g, s.grid, s.group, 0, s.text, s.text_first);
    EXPECT_TRUE(at::equal(back, ids));
  }
}

TEST(Regroup, WorksAlongAnyDimAndDtype) {
  const Spec s{{5, 7}, {2, 3}, "B", 1, 3, false, {}, 1, 1, 1};
  const at::Tensor x = at::randn({2, s.tokens(), 4}, at::kBFloat16);
  const at::Tensor g = regroup(x, s.grid, s.group, 1, s.text, s.text_first);
  EXPECT_TRUE(at::equal(ungroup(g, s.grid, s.group, -2, s.text, s.text_first), x));
  const at::Tensor ids = at::tensor(expected_order(s), at::kLong);
  EXPECT_TRUE(at::equal(g, x.index_select(1, ids)));
  // Position ids [N, 3] regroup along dim 0, as a model keeping group-major order does.
  const at::Tensor pos = at::randn({s.tokens(), 3});
  EXPECT_TRUE(
      at::equal(regroup(pos, s.grid, s.group, 0, s.text, s.text_first), pos.index_select(0, ids)));
}

TEST(Regroup, RejectsWrongTokenCount) {
  const at::Tensor x = at::randn({1, 10, 2});
  try {
    regroup(x, {3, 3}, {2, 2}, 1, 0, true);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("text_tokens + prod(grid) = 9"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace grat::test
