// Layout validation (every error names its parameter) and group geometry.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <functional>

#include "grat/layout.h"
#include "grat/ops.h"

namespace grat {
namespace {

using ::testing::HasSubstr;

void expect_error(const std::function<void()>& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing: " << needle;
  } catch (const c10::Error& e) {
    EXPECT_THAT(e.what_without_backtrace(), HasSubstr(needle));
  }
}

at::Tensor qkv(int64_t n, int64_t h = 2, int64_t d = 8) { return at::randn({1, n, h, d}); }

TEST(Layout, InvalidLayoutsNameTheParameter) {
  auto L = [](std::vector<int64_t> grid, std::vector<int64_t> group, std::string pattern = "B",
              int64_t radius = 1, int64_t text = 0, std::vector<int64_t> valid = {}) {
    return [=] { make_layout(grid, group, pattern, radius, text, true, valid, false); };
  };
  expect_error(L({8}, {4}), "grid must have 2 entries");
  expect_error(L({2, 2, 2, 2}, {1, 1, 1, 1}), "grid must have 2 entries");
  expect_error(L({8, 8}, {4}), "group must have one entry per grid axis");
  expect_error(L({0, 8}, {1, 4}), "grid[0] must be >= 1");
  expect_error(L({8, -3}, {4, 1}), "grid[1] must be >= 1");
  expect_error(L({8, 8}, {0, 4}), "group[0] must be >= 1");
  expect_error(L({8, 8}, {4, -1}), "group[1] must be >= 1");
  expect_error(L({8, 8}, {4, 9}), "group[1] = 9 is larger than grid[1] = 8");
  expect_error(L({2, 8, 8}, {4, 4, 4}), "group[0] = 4 is larger than grid[0] = 2");
  expect_error(L({8, 8}, {4, 4}, "Y"), "pattern must be one of");
  expect_error(L({8, 8}, {4, 4}, ""), "pattern must be one of");
  expect_error(L({8, 8}, {4, 4}, "B", 0), "radius must be >= 1");
  expect_error(L({8, 8}, {4, 4}, "X", -2), "radius must be >= 1");
  expect_error(L({8, 8}, {4, 4}, "B", 1, -1), "text_tokens must be >= 0");
  expect_error(L({8, 8}, {4, 4}, "B", 1, 4, {5}), "valid_text[0] must be in [0, text_tokens = 4]");
  expect_error(L({8, 8}, {4, 4}, "B", 1, 4, {2, -1}), "valid_text[1] must be in");
  expect_error(L({1 << 20, 1 << 20}, {1, 1}), "the limit is 2^31");
}

TEST(Layout, InvalidInputsNameTheRule) {
  const std::vector<int64_t> grid{4, 4}, group{2, 2};
  expect_error([&] { attention(qkv(15), qkv(15), qkv(15), grid, group); },
               "q has 15 tokens but the layout has text_tokens + prod(grid) = 0 + 16 = 16");
  expect_error([&] { attention(qkv(16), qkv(16, 2, 4), qkv(16), grid, group); },
               "k must have q's shape");
  expect_error([&] { attention(qkv(16), qkv(16), qkv(16, 2, 16), grid, group); },
               "head dims of q, k and v must match");
  expect_error(
      [&] {
        attention(at::randn({16, 2, 8}), qkv(16), qkv(16), grid, group);
      },
      "q must be [batch, tokens, heads, head_dim]");
  expect_error([&] { attention(qkv(16), qkv(16).to(at::kDouble), qkv(16), grid, group); },
               "q, k, v must share one dtype");
  const at::Tensor qi = at::ones({1, 16, 2, 8}, at::kInt);
  expect_error([&] { attention(qi, qi, qi, grid, group); }, "dtype must be bfloat16");
  const at::Tensor q0 = at::randn({1, 16, 0, 8});
  expect_error([&] { attention(q0, q0, q0, grid, group); }, "heads must be >= 1");
  const at::Tensor qb = at::randn({3, 20, 2, 8});
  expect_error(
      [&] {
        attention(qb, qb, qb, grid, group, "B", 1, 4, true, {1, 2});
      },
      "valid_text must have 0, 1 or batch (3) entries; got 2");
  expect_error(
      [&] { attention(qkv(16), qkv(16), qkv(16), grid, group, "B", 1, 0, true, {}, false, -1.0); },
      "scale must be finite and > 0");
  expect_error([&] { attention(qkv(16), qkv(16), qkv(16), grid, group, "B", 0); },
               "radius must be >= 1");
}

TEST(Geometry, GroupsTileTheGridContiguously) {
  const Layout l = make_layout({5, 45, 80}, {4, 8, 8}, "X", 1, 0, true, {}, false);
  const Geometry& g = l.geom;
  EXPECT_EQ(g.ngroups[0], 2);
  EXPECT_EQ(g.ngroups[1], 6);  // 45 rows, 8-row groups: the last has 5 rows
  EXPECT_EQ(g.extent(1, 5), 5);
  int64_t next = 0;
  for (int64_t i = 0; i < g.num_groups(); ++i) {
    ASSERT_EQ(g.group_offset(i), next) << "group " << i;
    next += g.group_size(i);
  }
  EXPECT_EQ(next, g.image_tokens());
  std::vector<bool> seen(g.image_tokens(), false);
  for (int64_t r = 0; r < g.image_tokens(); ++r) {
    const int64_t p = g.grouped_index(r);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, g.image_tokens());
    ASSERT_FALSE(seen[p]);
    seen[p] = true;
  }
}

TEST(Geometry, BorderGroupsReadFewerGroups) {
  const Layout l = make_layout({48, 48}, {16, 16}, "B", 1, 0, true, {}, false);
  auto count = [&](int64_t q) {
    int64_t n = 0;
    for (int64_t k = 0; k < l.geom.num_groups(); ++k) n += l.geom.attends(q, k);
    return n;
  };
  EXPECT_EQ(count(0), 4);  // corner
  EXPECT_EQ(count(1), 6);  // edge
  EXPECT_EQ(count(4), 9);  // centre
}

TEST(Layout, PatternNamesAreCaseInsensitive) {
  EXPECT_EQ(parse_pattern("b"), Pattern::kB);
  EXPECT_EQ(parse_pattern("X"), Pattern::kX);
  EXPECT_EQ(parse_pattern("FULL"), Pattern::kFull);
}

}  // namespace
}  // namespace grat
