// IndexCache (kernels/src/index_cache.h): regroup / ungroup through the cache equal the
// uncached permutation for many layouts, calls after the first build nothing, the caps bound
// what is stored (per device, nothing ever dropped), and concurrent callers agree.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "grat/ops.h"
#include "index_cache.h"
#include "internal.h"
#include "random_spec.h"

namespace grat::test {
namespace {

using detail::IndexCache;

// The permutation as regroup built it before the cache: from the layout, on every call.
at::Tensor uncached(const Spec& s, bool forward) {
  const Layout l = make_layout(s.grid, s.group, "full", 1, s.text, s.text_first, {}, false);
  at::Tensor p = detail::grouped_permutation(l);
  return forward ? p : detail::inverse_permutation(p);
}

TEST(IndexCache, RegroupEqualsTheUncachedPermutation) {
  std::mt19937_64 rng(fresh_seed());
  std::vector<Spec> specs{{{5, 7}, {2, 3}, "B", 1, 3, false, {}, 1, 1, 1},
                          {{4, 4}, {4, 4}, "B", 1, 0, true, {}, 1, 1, 1},
                          {{3, 6, 5}, {2, 4, 5}, "B", 1, 7, true, {}, 1, 1, 1}};
  for (int i = 0; i < 20; ++i) specs.push_back(random_spec(rng, 1500));
  for (const Spec& s : specs) {
    SCOPED_TRACE(describe(s));
    const at::Tensor x = at::randn({2, s.tokens(), 3});
    const at::Tensor want_g = x.index_select(1, uncached(s, true));
    const at::Tensor want_u = x.index_select(1, uncached(s, false));
    for (int call = 0; call < 2; ++call) {  // a miss (unless an earlier layout was equal), a hit
      EXPECT_TRUE(at::equal(regroup(x, s.grid, s.group, 1, s.text, s.text_first), want_g));
      EXPECT_TRUE(at::equal(ungroup(x, s.grid, s.group, 1, s.text, s.text_first), want_u));
    }
  }
}

TEST(IndexCache, SecondRegroupIsAHit) {
  const Spec s{{9, 11}, {3, 4}, "B", 1, 5, true, {}, 1, 1, 1};
  const at::Tensor x = at::randn({1, s.tokens(), 2});
  const at::Device cpu(at::kCPU);
  regroup(x, s.grid, s.group, 1, s.text, s.text_first);  // stored now (if it was not before)
  const IndexCache::Stats before = IndexCache::global().stats(cpu);
  const at::Tensor g = regroup(x, s.grid, s.group, 1, s.text, s.text_first);
  const IndexCache::Stats after = IndexCache::global().stats(cpu);
  EXPECT_EQ(after.hits, before.hits + 1);
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.entries, before.entries);
  EXPECT_TRUE(at::equal(ungroup(g, s.grid, s.group, 1, s.text, s.text_first), x));
}

at::Tensor ints(int64_t n, const at::Device& d = at::kCPU) {
  return at::arange(n, at::TensorOptions().dtype(at::kLong).device(d));
}

TEST(IndexCache, EntriesCapStoresNothingNewAndDropsNothing) {
  IndexCache cache(3, 1 << 20);
  const at::Device cpu(at::kCPU);
  int made = 0;
  const auto get = [&](int64_t k) {
    return cache.get("k", {k}, cpu, [&] {
      ++made;
      return ints(k + 1);
    });
  };
  for (int64_t k = 0; k < 5; ++k) EXPECT_EQ(get(k).numel(), k + 1);
  EXPECT_EQ(made, 5);
  IndexCache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 3);
  EXPECT_EQ(s.misses, 5);
  EXPECT_EQ(s.not_stored, 2);
  EXPECT_EQ(s.bytes, 8 * (1 + 2 + 3));
  // The first three stay (a graph may read them); the others are built on every call.
  for (int64_t k = 0; k < 3; ++k) EXPECT_EQ(get(k).numel(), k + 1);
  EXPECT_EQ(made, 5);
  EXPECT_EQ(get(4).numel(), 5);
  EXPECT_EQ(made, 6);
  s = cache.stats();
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.entries, 3);
}

TEST(IndexCache, BytesCapAndStoreFlag) {
  IndexCache cache(100, 64);  // 8 int64 values
  const at::Device cpu(at::kCPU);
  const auto make = [](int64_t n) { return [n] { return ints(n); }; };
  cache.get("big", {9}, cpu, make(9));  // 72 bytes: over the cap on its own
  cache.get("a", {6}, cpu, make(6));    // 48
  cache.get("b", {3}, cpu, make(3));    // 48 + 24 > 64
  cache.get("c", {2}, cpu, make(2));    // 48 + 16 = 64
  cache.get("d", {1}, cpu, make(1), /*store=*/false);
  const IndexCache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, 64);
  EXPECT_EQ(s.not_stored, 3);
}

TEST(IndexCache, CapsArePerDeviceAndKeysIncludeTheDevice) {
  IndexCache cache(1, 1 << 20);
  const at::Device cpu(at::kCPU), meta(at::kMeta);
  const at::Tensor a = cache.get("k", {1}, cpu, [] { return ints(4); });
  const at::Tensor m = cache.get("k", {1}, meta, [&] { return ints(4, meta); });
  EXPECT_TRUE(m.is_meta());
  EXPECT_EQ(cache.stats(cpu).entries, 1);
  EXPECT_EQ(cache.stats(meta).entries, 1);
  EXPECT_EQ(cache.get("k", {1}, cpu, [] { return ints(1); }).data_ptr(), a.data_ptr());
  EXPECT_EQ(cache.get("k2", {1}, cpu, [] { return ints(1); }).numel(), 1);  // CPU full
  EXPECT_EQ(cache.stats().entries, 2);
  EXPECT_THROW(cache.get("x", {}, cpu, [&] { return ints(1, meta); }), c10::Error);
}

TEST(IndexCache, ConcurrentCallersAgree) {
  IndexCache cache(8, 1 << 20);
  const at::Device cpu(at::kCPU);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const int64_t k = (i + t) % 12;
        const at::Tensor v = cache.get("k", {k}, cpu, [k] { return ints(k + 1); });
        if (v.numel() != k + 1 || v[k].item<int64_t>() != k) ++wrong;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  const IndexCache::Stats s = cache.stats();
  EXPECT_EQ(s.entries, 8);
  EXPECT_EQ(s.hits + s.misses, 8 * 200);
}

TEST(IndexCache, SmallIntsOnTheCpu) {
  const std::vector<int64_t> v{7, 0, 3};
  const at::Tensor a = detail::small_ints("test_small_ints", v, at::kInt, at::kCPU);
  EXPECT_EQ(a.scalar_type(), at::kInt);
  EXPECT_TRUE(at::equal(a, at::tensor({7, 0, 3}, at::kInt)));
  EXPECT_EQ(detail::small_ints("test_small_ints", v, at::kInt, at::kCPU).data_ptr(), a.data_ptr());
  const at::Tensor l = detail::small_ints("test_small_ints", v, at::kLong, at::kCPU);
  EXPECT_EQ(l.scalar_type(), at::kLong);  // the dtype is part of the key
}

}  // namespace
}  // namespace grat::test
