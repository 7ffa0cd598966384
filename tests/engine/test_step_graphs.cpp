// StepGraphs (engine/src/pipeline/step_graph.h) on the CPU with a fake graph backend: a step is
// captured after its eager run and replayed with its inputs copied in; a capture that throws,
// a first replay that disagrees with the eager step and a replay that throws all leave the
// eager result and that key eager; out-of-memory propagates as the job's error.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "step_graph.h"

namespace grat::engine {
namespace {

using ::testing::HasSubstr;

// A "graph" that keeps its own inputs and recomputes the step on them when replayed.
class FakeGraph : public CachedGraph {
 public:
  StepInputs in;
  StepFn kernel;
};

class FakeBackend : public GraphBackend {
 public:
  Capture capture(const StepInputs& in, const StepFn& step) override {
    ++captures;
    if (fail_capture) throw std::runtime_error("operation not permitted when stream is capturing");
    auto g = std::make_unique<FakeGraph>();
    g->in = {in.x.clone(), in.t.clone(), in.g.clone(), in.text, in.neg};
    g->kernel = step;  // the tests' steps outlive their graphs
    Capture c;
    c.bytes = 4096;
    c.graph = std::move(g);
    return c;
  }
  at::Tensor replay(CachedGraph& graph, const StepInputs& in) override {
    ++replays;
    if (oom_replay) TORCH_CHECK_WITH(OutOfMemoryError, false, "fake out of memory");
    if (scripted_oom_replay) throw std::runtime_error(kScriptedOom);
    if (fail_replay) throw std::runtime_error("replay failed");
    auto& g = static_cast<FakeGraph&>(graph);
    g.in.x.copy_(in.x);
    g.in.t.copy_(in.t);
    g.in.g.copy_(in.g);
    const at::Tensor v = g.kernel(g.in);
    return corrupt_replay ? v + 1 : v;
  }
  int captures = 0, replays = 0;
  bool fail_capture = false, fail_replay = false, corrupt_replay = false, oom_replay = false,
       scripted_oom_replay = false;
  // What a TorchScript forward throws when an op inside it runs out of memory.
  static constexpr const char* kScriptedOom =
      "The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript "
      "(most recent call last):\n  File \"code/flux.py\", line 12\nRuntimeError: CUDA out of "
      "memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 139.81 GiB";
};

StepGraphKey key(int64_t batch = 2) {
  StepGraphKey k;
  k.model = "fake";
  k.device = "cuda:0";
  k.grid = {4, 4};
  k.batch = batch;
  k.pattern = "full";
  return k;
}

StepInputs inputs(double seed) {
  StepInputs in;
  in.x = at::arange(32, at::kFloat).view({2, 16}) * seed;
  in.t = at::full({2}, seed, at::kFloat);
  in.g = at::full({2}, 3.5, at::kFloat);
  return in;
}

class StepGraphsTest : public ::testing::Test {
 protected:
  StepGraphsTest() {
    auto b = std::make_unique<FakeBackend>();
    backend = b.get();
    GraphCacheOptions o;
    o.enabled = true;
    graphs = std::make_unique<StepGraphs>(
        o, std::move(b), [this](const std::string& m, const std::string&) { logs.push_back(m); });
  }
  at::Tensor want(const StepInputs& in) {
    return in.x * 2 + in.t.view({-1, 1}) * in.g.view({-1, 1});
  }
  StepFn step = [this](const StepInputs& s) {
    ++eager_runs;
    return s.x * 2 + s.t.view({-1, 1}) * s.g.view({-1, 1});
  };
  FakeBackend* backend = nullptr;
  std::unique_ptr<StepGraphs> graphs;
  std::vector<std::string> logs;
  int eager_runs = 0;  // the step function's runs: the eager step, then captures and replays
};

TEST_F(StepGraphsTest, CapturesAfterTheEagerStepAndReplaysWithNewInputs) {
  const StepInputs a = inputs(1.0), b = inputs(2.0);
  EXPECT_TRUE(at::equal(graphs->velocity(key(), a, step), want(a)));
  EXPECT_EQ(backend->captures, 1);
  EXPECT_EQ(backend->replays, 1);  // the check against the eager step
  EXPECT_EQ(eager_runs, 2);        // the eager step and the check's replay
  const at::Tensor vb = graphs->velocity(key(), b, step);
  EXPECT_TRUE(at::equal(vb, want(b)));  // b's inputs were copied in, not a's reused
  EXPECT_FALSE(at::equal(vb, want(a)));
  EXPECT_EQ(backend->captures, 1);
  EXPECT_EQ(backend->replays, 2);
  const GraphCacheStats s = graphs->cache().stats();
  EXPECT_EQ(s.captures, 1);
  EXPECT_EQ(s.hits, 1);
  EXPECT_EQ(s.bytes, 4096);
  EXPECT_GT(s.last_capture_s, 0);
  graphs->velocity(key(1), inputs(1.0),
                   [&](const StepInputs& s) { return step(s).narrow(0, 0, 1); });
  EXPECT_EQ(backend->captures, 2);  // another batch size, another graph
}

TEST_F(StepGraphsTest, AFailedCaptureLeavesTheEagerResultAndIsNotRetried) {
  backend->fail_capture = true;
  const StepInputs a = inputs(1.0), b = inputs(2.0);
  EXPECT_TRUE(at::equal(graphs->velocity(key(), a, step), want(a)));
  EXPECT_TRUE(at::equal(graphs->velocity(key(), b, step), want(b)));
  EXPECT_EQ(backend->captures, 1);
  EXPECT_EQ(backend->replays, 0);
  EXPECT_EQ(graphs->cache().stats().capture_failures, 1);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_THAT(logs[0], HasSubstr("operation not permitted when stream is capturing"));
}

TEST_F(StepGraphsTest, AGraphWhoseReplayDisagreesIsNeverUsed) {
  backend->corrupt_replay = true;
  const StepInputs a = inputs(1.0), b = inputs(2.0);
  EXPECT_TRUE(at::equal(graphs->velocity(key(), a, step), want(a)));
  EXPECT_TRUE(graphs->cache().graphs().empty());
  EXPECT_TRUE(at::equal(graphs->velocity(key(), b, step), want(b)));
  EXPECT_EQ(backend->captures, 1);
  EXPECT_EQ(backend->replays, 1);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_THAT(logs[0], HasSubstr("the replay differs from the eager step"));
}

TEST_F(StepGraphsTest, AReplayThatThrowsFallsBackToEager) {
  const StepInputs a = inputs(1.0), b = inputs(2.0);
  graphs->velocity(key(), a, step);
  backend->fail_replay = true;
  EXPECT_TRUE(at::equal(graphs->velocity(key(), b, step), want(b)));
  EXPECT_TRUE(graphs->cache().graphs().empty());
  const int replays = backend->replays;
  EXPECT_TRUE(at::equal(graphs->velocity(key(), a, step), want(a)));
  EXPECT_EQ(backend->replays, replays);  // the key stays eager
  EXPECT_EQ(backend->captures, 1);
  EXPECT_THAT(logs.back(), HasSubstr("replay failed"));
}

TEST_F(StepGraphsTest, OutOfMemoryIsTheJobsError) {
  const StepFn oom = [](const StepInputs&) -> at::Tensor {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "fake out of memory");
  };
  EXPECT_THROW(graphs->velocity(key(), inputs(1.0), oom), c10::OutOfMemoryError);
  graphs->velocity(key(), inputs(1.0), step);
  backend->oom_replay = true;
  EXPECT_THROW(graphs->velocity(key(), inputs(2.0), step), c10::OutOfMemoryError);
  backend->oom_replay = false;
  EXPECT_EQ(graphs->cache().graphs().size(), 1u);  // not the graph's fault: kept
}

TEST_F(StepGraphsTest, OutOfMemoryRethrownByTorchScriptIsStillTheJobsError) {
  graphs->velocity(key(), inputs(1.0), step);
  backend->scripted_oom_replay = true;
  EXPECT_THROW(graphs->velocity(key(), inputs(2.0), step), std::runtime_error);
  backend->scripted_oom_replay = false;
  EXPECT_EQ(graphs->cache().graphs().size(), 1u);  // kept: not a failing key
  EXPECT_EQ(graphs->cache().stats().capture_failures, 0);
}

TEST(StepGraphs, OutOfMemoryIsRecognisedWhateverCarriesIt) {
  EXPECT_TRUE(is_out_of_memory(std::runtime_error(FakeBackend::kScriptedOom)));
  try {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "fake out of memory");
  } catch (const std::exception& e) {
    EXPECT_TRUE(is_out_of_memory(e));
  }
  EXPECT_FALSE(
      is_out_of_memory(std::runtime_error("RuntimeError: CUDA error: an illegal "
                                          "memory access was encountered")));
  EXPECT_FALSE(is_out_of_memory(std::runtime_error("replay failed")));
}

TEST(StepGraphs, WithoutABackendOrWhenOffEveryStepIsEager) {
  GraphCacheOptions on;
  on.enabled = true;
  StepGraphs none(on, nullptr, nullptr);
  int runs = 0;
  const StepFn step = [&](const StepInputs& s) {
    ++runs;
    return s.x + 1;
  };
  none.velocity(key(), inputs(1.0), step);
  auto b = std::make_unique<FakeBackend>();
  FakeBackend* fake = b.get();
  GraphCacheOptions disabled;
  disabled.enabled = false;
  StepGraphs off(disabled, std::move(b), nullptr);
  off.velocity(key(), inputs(1.0), step);
  off.velocity(key(), inputs(1.0), step);
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(fake->captures, 0);
  EXPECT_EQ(none.cache().stats().captures + off.cache().stats().captures, 0);
}

}  // namespace
}  // namespace grat::engine
