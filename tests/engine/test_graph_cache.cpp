// GraphCache (the CUDA graph policy) with fake captures: keys, the LRU caps, failures, stats.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "grat/engine/graph_cache.h"

namespace grat::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A stand-in for a captured graph: records its destruction (eviction) by name.
class FakeGraph : public CachedGraph {
 public:
  FakeGraph(std::string name, std::vector<std::string>* destroyed)
      : name_(std::move(name)), destroyed_(destroyed) {}
  ~FakeGraph() override { destroyed_->push_back(name_); }

 private:
  std::string name_;
  std::vector<std::string>* destroyed_;
};

StepGraphKey key(int64_t side, int64_t batch = 1) {
  StepGraphKey k;
  k.model = "flux";
  k.device = "cuda:0";
  k.dtype = "BFloat16";
  k.grid = {side, side};
  k.batch = batch;
  k.pattern = "full";
  k.group = {16, 16};
  k.radius = 1;
  k.text_tokens = 512;
  return k;
}

GraphCacheOptions on(int64_t max_graphs) {
  GraphCacheOptions o;
  o.enabled = true;
  o.max_graphs = max_graphs;
  o.max_tokens = 0;
  return o;
}

class GraphCacheTest : public ::testing::Test {
 protected:
  // Captures `k` as a fake named `name` holding `bytes`.
  CachedGraph* capture(GraphCache& c, const StepGraphKey& k, const std::string& name,
                       int64_t bytes = 100) {
    return c.capture(k, [&] {
      ++calls;
      Capture out;
      out.graph = std::make_unique<FakeGraph>(name, &destroyed);
      out.bytes = bytes;
      out.seconds = 0.25;
      return out;
    });
  }
  std::vector<std::string> keys(const GraphCache& c) {
    std::vector<std::string> out;
    for (const GraphInfo& g : c.graphs()) out.push_back(g.key);
    return out;
  }
  GraphCache::Log recorder() {
    return
        [this](const std::string& msg, const std::string& k) { logs.push_back(msg + " @ " + k); };
  }
  std::vector<std::string> destroyed, logs;
  int calls = 0;
};

TEST(StepGraphKey, EveryFieldMakesADistinctKey) {
  const StepGraphKey base = key(32);
  std::vector<StepGraphKey> variants(13, base);
  variants[0].model = "flux2";
  variants[1].device = "cuda:1";
  variants[2].dtype = "Half";
  variants[3].grid = {32, 64};
  variants[4].grid = {1, 32, 32};  // frames
  variants[5].batch = 2;
  variants[6].pattern = "B";  // the first full steps and the GRAT ones differ
  variants[7].group = {8, 16};
  variants[8].radius = 2;
  variants[9].text_tokens = 256;
  variants[10].valid_text = {77};
  variants[11].true_cfg = true;
  variants[12].guidance_embeds = true;
  std::set<std::string> seen = {base.str()};
  for (const StepGraphKey& v : variants) {
    EXPECT_TRUE(seen.insert(v.str()).second) << v.str();
  }
  EXPECT_EQ(key(32).str(), base.str());
  // Fields that print alike when joined naively stay apart.
  StepGraphKey a = base, b = base;
  a.grid = {12, 3};
  b.grid = {1, 23};
  EXPECT_NE(a.str(), b.str());
  EXPECT_EQ(key(64, 4).tokens(), 4 * 64 * 64);
}

TEST_F(GraphCacheTest, OffMeansEagerAndNoCapture) {
  GraphCacheOptions off;
  off.enabled = false;
  GraphCache c(off, recorder());
  EXPECT_EQ(c.find(key(32)), nullptr);
  EXPECT_FALSE(c.wants_capture(key(32)));
  EXPECT_EQ(c.stats().eager_steps, 1);
  EXPECT_EQ(c.stats().captures, 0);
  EXPECT_TRUE(logs.empty());
}

TEST_F(GraphCacheTest, CapturesOnceAndReplaysAfter) {
  GraphCache c(on(4), recorder());
  EXPECT_EQ(c.find(key(32)), nullptr);
  ASSERT_TRUE(c.wants_capture(key(32)));
  CachedGraph* g = capture(c, key(32), "a", 1 << 20);
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(c.find(key(32)), g);
  EXPECT_EQ(c.find(key(32)), g);
  EXPECT_EQ(c.find(key(32, 2)), nullptr);  // another batch size is another graph
  const GraphCacheStats s = c.stats();
  EXPECT_EQ(s.graphs, 1);
  EXPECT_EQ(s.bytes, 1 << 20);
  EXPECT_EQ(s.captures, 1);
  EXPECT_EQ(s.hits, 2);
  EXPECT_DOUBLE_EQ(s.capture_s, 0.25);
  EXPECT_DOUBLE_EQ(s.last_capture_s, 0.25);
  ASSERT_EQ(c.graphs().size(), 1u);
  EXPECT_EQ(c.graphs()[0].replays, 2);
  EXPECT_EQ(c.graphs()[0].bytes, 1 << 20);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_THAT(logs[0], HasSubstr("captured in 0.25 s, holding 1 MiB"));
  EXPECT_THAT(logs[0], HasSubstr(key(32).str()));
  EXPECT_EQ(calls, 1);
}

TEST_F(GraphCacheTest, EvictsTheLeastRecentlyUsedPastMaxGraphs) {
  GraphCache c(on(2), recorder());
  capture(c, key(16), "a");
  capture(c, key(32), "b");
  ASSERT_NE(c.find(key(16)), nullptr);  // a is now the most recent
  capture(c, key(48), "c");             // b goes
  EXPECT_THAT(destroyed, ElementsAre("b"));
  EXPECT_THAT(keys(c), ElementsAre(key(48).str(), key(16).str()));
  EXPECT_EQ(c.find(key(32)), nullptr);
  EXPECT_TRUE(c.wants_capture(key(32)));  // evicted, not failed: captured again when used
  capture(c, key(32), "b2");              // a goes (c was captured after a's last use)
  EXPECT_THAT(destroyed, ElementsAre("b", "a"));
  const GraphCacheStats s = c.stats();
  EXPECT_EQ(s.graphs, 2);
  EXPECT_EQ(s.evictions, 2);
  EXPECT_EQ(s.bytes, 200);
  EXPECT_THAT(logs.back(), HasSubstr("evicted"));
  EXPECT_THAT(logs.back(), HasSubstr(key(16).str()));
}

TEST_F(GraphCacheTest, NeverHoldsMoreThanTheCap) {
  GraphCache c(on(3));
  for (int64_t i = 1; i <= 6; ++i) {
    capture(c, key(8 * i), "g" + std::to_string(i));
    EXPECT_LE(c.stats().graphs, 3);
  }
  EXPECT_THAT(destroyed, ElementsAre("g1", "g2", "g3"));
  EXPECT_EQ(c.stats().evictions, 3);
}

TEST_F(GraphCacheTest, MemoryCapEvictsAndRefusesAGraphTooLargeAlone) {
  GraphCacheOptions o = on(10);
  o.max_gib = 1.0;
  GraphCache c(o, recorder());
  const int64_t gib = int64_t{1} << 30;
  capture(c, key(16), "a", gib / 2);
  capture(c, key(32), "b", gib / 2);
  EXPECT_TRUE(destroyed.empty());
  capture(c, key(48), "c", gib / 4);  // 1.25 GiB: a goes
  EXPECT_THAT(destroyed, ElementsAre("a"));
  EXPECT_EQ(c.stats().bytes, gib / 2 + gib / 4);
  EXPECT_EQ(capture(c, key(64), "huge", 2 * gib), nullptr);
  EXPECT_THAT(destroyed, ElementsAre("a", "huge"));
  EXPECT_FALSE(c.wants_capture(key(64)));  // would only evict itself again
  EXPECT_EQ(c.stats().graphs, 2);
  EXPECT_THAT(logs.back(), HasSubstr("over max_gib"));
}

TEST_F(GraphCacheTest, MaxTokensKeepsLargeStepsEager) {
  GraphCacheOptions o = on(4);
  o.max_tokens = 4 * 64 * 64;
  GraphCache c(o);
  EXPECT_TRUE(c.wants_capture(key(64, 4)));
  EXPECT_FALSE(c.wants_capture(key(64, 5)));
  EXPECT_TRUE(c.wants_capture(key(128, 1)));  // as many tokens as 64^2 x 4
  EXPECT_FALSE(c.wants_capture(key(129, 1)));
  EXPECT_EQ(c.stats().eager_steps, 2);
}

TEST_F(GraphCacheTest, AFailedCaptureRunsEagerlyFromThenOnAndLogsOnce) {
  GraphCache c(on(4), recorder());
  capture(c, key(16), "a");
  CachedGraph* g = c.capture(key(32), []() -> Capture {
    throw std::runtime_error("operation not permitted when stream is capturing");
  });
  EXPECT_EQ(g, nullptr);
  EXPECT_EQ(c.find(key(32)), nullptr);
  EXPECT_FALSE(c.wants_capture(key(32)));
  EXPECT_FALSE(c.wants_capture(key(32)));
  EXPECT_TRUE(c.wants_capture(key(48)));  // other keys still capture
  EXPECT_NE(c.find(key(16)), nullptr);    // and the graphs held stay
  const GraphCacheStats s = c.stats();
  EXPECT_EQ(s.capture_failures, 1);
  EXPECT_EQ(s.captures, 1);
  EXPECT_EQ(s.graphs, 1);
  EXPECT_EQ(s.eager_steps, 3);  // the failed step and the two refusals
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_THAT(logs[1], HasSubstr("runs eagerly: operation not permitted"));
  EXPECT_THAT(logs[1], HasSubstr(key(32).str()));
}

TEST_F(GraphCacheTest, ACaptureWithoutAGraphIsAFailure) {
  GraphCache c(on(4));
  EXPECT_EQ(c.capture(key(16), [] { return Capture{}; }), nullptr);
  EXPECT_FALSE(c.wants_capture(key(16)));
  EXPECT_EQ(c.stats().capture_failures, 1);
}

TEST_F(GraphCacheTest, OutOfMemoryDuringCaptureDropsAllGraphsButKeepsTheKey) {
  GraphCache c(on(4), recorder());
  capture(c, key(16), "a");
  capture(c, key(32), "b");
  EXPECT_EQ(c.capture(key(48), []() -> Capture { throw TransientCaptureError("out of memory"); }),
            nullptr);
  EXPECT_THAT(destroyed, ElementsAre("b", "a"));
  EXPECT_EQ(c.stats().graphs, 0);
  EXPECT_EQ(c.stats().bytes, 0);
  EXPECT_EQ(c.stats().capture_failures, 1);
  // tried again later, not on the next step (each try drops every graph)
  for (int i = 1; i < kTransientCaptureBackoffSteps; ++i) EXPECT_FALSE(c.wants_capture(key(48)));
  EXPECT_TRUE(c.wants_capture(key(48)));
  EXPECT_TRUE(c.wants_capture(key(16)));  // other keys are not held back
  EXPECT_THAT(logs.back(), HasSubstr("graphs dropped"));
}

TEST_F(GraphCacheTest, AGraphThatFailsOnReplayIsDroppedAndItsKeyRunsEagerly) {
  GraphCache c(on(4), recorder());
  capture(c, key(16), "a", 300);
  capture(c, key(32), "b", 200);
  c.fail(key(16), "input x does not match");
  EXPECT_THAT(destroyed, ElementsAre("a"));
  EXPECT_EQ(c.find(key(16)), nullptr);
  EXPECT_FALSE(c.wants_capture(key(16)));
  EXPECT_EQ(c.stats().graphs, 1);
  EXPECT_EQ(c.stats().bytes, 200);
  EXPECT_EQ(c.stats().capture_failures, 1);
  EXPECT_THAT(logs.back(), HasSubstr("input x does not match"));
}

TEST_F(GraphCacheTest, ClearDropsGraphsAndKeepsFailures) {
  GraphCache c(on(4));
  capture(c, key(16), "a");
  c.capture(key(32), []() -> Capture { throw std::runtime_error("no"); });
  c.clear();
  EXPECT_THAT(destroyed, ElementsAre("a"));
  EXPECT_EQ(c.stats().graphs, 0);
  EXPECT_EQ(c.stats().bytes, 0);
  EXPECT_EQ(c.find(key(16)), nullptr);
  EXPECT_TRUE(c.wants_capture(key(16)));
  EXPECT_FALSE(c.wants_capture(key(32)));
}

TEST_F(GraphCacheTest, ZeroMaxGraphsCapturesNothing) {
  GraphCache c(on(0));
  EXPECT_FALSE(c.wants_capture(key(16)));
}

}  // namespace
}  // namespace grat::engine
