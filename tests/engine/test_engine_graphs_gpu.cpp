// CUDA graphs in the engine, on a CUDA device with the tiny bundle (label gpu; skipped without
// CUDA): the images equal the eager engine's, a shape captures once and replays after, the
// cap evicts, and a key whose capture fails (or any GRAT pattern) still gives the eager image.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "grat/engine/engine.h"
#include "png_decode.h"

namespace grat::engine {
namespace {

std::string bundle_dir() {
  const char* b = std::getenv("GRAT_TINY_BUNDLE");
  return b == nullptr ? std::string("bundles/flux-tiny") : std::string(b);
}

int max_diff(const std::string& a, const std::string& b) {
  const std::vector<uint8_t> x = test_util::decode_png(a), y = test_util::decode_png(b);
  if (x.size() != y.size() || x.empty()) return 256;
  int m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(int(x[i]) - int(y[i])));
  return m;
}

Request request(uint64_t seed, int64_t w = 128, int64_t h = 96) {
  Request r;
  r.prompt = "a small boat on a calm lake";
  r.width = w;
  r.height = h;
  r.seed = seed;
  r.steps = 4;
  r.attention.mode = AttentionMode::kFull;
  return r;
}

class EngineGraphsGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
  std::unique_ptr<Engine> load(bool graphs, int64_t max_graphs = 8) {
    EngineOptions o;
    o.bundle = bundle_dir();
    o.device = "cuda";
    o.cuda_graphs.enabled = graphs;
    o.cuda_graphs.max_graphs = max_graphs;
    o.log = [this](const std::string& msg, const std::string& key) {
      logged.push_back(msg + " @ " + key);
    };
    return Engine::load(o);
  }
  static Result one(Engine& e, const Request& r) { return e.generate({Job{r, nullptr}})[0]; }
  std::vector<std::string> logged;
};

TEST_F(EngineGraphsGpu, ReplaysGiveTheEagerImage) {
  auto eager = load(false), graphs = load(true);
  const Result want = one(*eager, request(3));
  ASSERT_TRUE(want.error.ok()) << want.error.message;
  const Result first = one(*graphs, request(3));  // captures at step 1, replays steps 2..4
  ASSERT_TRUE(first.error.ok()) << first.error.message;
  GraphCacheStats s = graphs->graph_stats();
  EXPECT_EQ(s.capture_failures, 0) << ::testing::PrintToString(logged);
  EXPECT_EQ(s.captures, 1);
  EXPECT_EQ(s.hits, 3);
  EXPECT_GT(s.bytes, 0);
  EXPECT_GT(s.last_capture_s, 0);
  EXPECT_LE(max_diff(first.bytes, want.bytes), 1);
  const Result again = one(*graphs, request(3));  // a later request of the key: replays only
  ASSERT_TRUE(again.error.ok()) << again.error.message;
  s = graphs->graph_stats();
  EXPECT_EQ(s.captures, 1);
  EXPECT_EQ(s.hits, 7);
  EXPECT_LE(max_diff(again.bytes, want.bytes), 1);
  // Another seed through the same graph: its own image, not the captured inputs'.
  const Result other = one(*graphs, request(4)), other_want = one(*eager, request(4));
  ASSERT_TRUE(other.error.ok() && other_want.error.ok());
  EXPECT_LE(max_diff(other.bytes, other_want.bytes), 1);
  EXPECT_NE(other.bytes, want.bytes);
  EXPECT_EQ(graphs->graph_stats().captures, 1);
}

TEST_F(EngineGraphsGpu, BatchesAndShapesGetTheirOwnGraphsWithinTheCap) {
  auto eager = load(false), graphs = load(true, 2);
  std::vector<Job> batch = {Job{request(1), nullptr}, Job{request(2), nullptr}};
  const std::vector<Result> got = graphs->generate(batch), want = eager->generate(batch);
  ASSERT_EQ(got.size(), 2u);
  for (size_t k = 0; k < 2; ++k) {
    ASSERT_TRUE(got[k].error.ok()) << got[k].error.message;
    EXPECT_LE(max_diff(got[k].bytes, want[k].bytes), 1);
  }
  ASSERT_TRUE(one(*graphs, request(1)).error.ok());            // batch 1: a second graph
  ASSERT_TRUE(one(*graphs, request(1, 192, 128)).error.ok());  // a third shape: one evicted
  const GraphCacheStats s = graphs->graph_stats();
  EXPECT_EQ(s.captures, 3);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(graphs->graphs().size(), 2u);
  // The evicted batch-of-two graph is captured again when used, and still right.
  const std::vector<Result> again = graphs->generate(batch);
  EXPECT_LE(max_diff(again[0].bytes, want[0].bytes), 1);
  EXPECT_EQ(graphs->graph_stats().captures, 4);
}

// GRAT patterns with full first steps: two keys per request. Whether a GRAT step can be captured
// depends on the kernels (a host copy inside the forward cannot); either way the image is the
// eager one, and the engine keeps replaying the keys that did capture.
TEST_F(EngineGraphsGpu, FullThenGratStepsAndFailedCapturesStayCorrect) {
  auto eager = load(false), graphs = load(true);
  Request r = request(9);
  r.attention.mode = AttentionMode::kB;
  r.attention.full_steps = 2;
  const Result want = one(*eager, r), got = one(*graphs, r);
  ASSERT_EQ(got.error.ok(), want.error.ok()) << got.error.message << want.error.message;
  if (want.error.ok()) {
    EXPECT_LE(max_diff(got.bytes, want.bytes), 1);
  }
  const GraphCacheStats s = graphs->graph_stats();
  EXPECT_EQ(s.captures + s.capture_failures, 2) << ::testing::PrintToString(logged);
  const Result again = one(*graphs, r);
  if (want.error.ok()) {
    EXPECT_LE(max_diff(again.bytes, want.bytes), 1);
  }
  EXPECT_EQ(graphs->graph_stats().capture_failures, s.capture_failures);  // logged once
  const Result full = one(*graphs, request(5)), full_want = one(*eager, request(5));
  ASSERT_TRUE(full.error.ok()) << full.error.message;
  EXPECT_LE(max_diff(full.bytes, full_want.bytes), 1);
}

}  // namespace
}  // namespace grat::engine
