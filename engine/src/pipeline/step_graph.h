// The engine's CUDA graphs: one denoising step's velocity (every transformer forward of the
// step, the CFG pair and its combination included) captured per StepGraphKey and replayed for
// later steps and requests. GraphCache (grat/engine/graph_cache.h) decides what is captured and
// kept; this is the thin CUDA part. On the CPU, or in a build without CUDA, every step runs
// eagerly.
#pragma once

#include <torch/script.h>

#include <functional>
#include <memory>

#include "family.h"
#include "grat/engine/graph_cache.h"

namespace grat::engine {

// What one step reads. A graph keeps static copies and copies these in before each replay.
struct StepInputs {
  at::Tensor x, t, g;   // latents (float32), timesteps [B], guidance [B]
  TextBatch text, neg;  // neg: the negative prompt's (true CFG only)
};
// The step's velocity [B, ...] (float32) from its inputs, run eagerly (and captured).
using StepFn = std::function<at::Tensor(const StepInputs&)>;

class StepGraphs {
 public:
  // warmups: eager runs on the graph's own inputs before capture, beyond the step itself
  // (TorchScript's profiling executor compiles its fused kernels on the second or third run).
  StepGraphs(GraphCacheOptions options, c10::Device device, int warmups, GraphCache::Log log);
  ~StepGraphs();

  // The step's velocity: replayed from the key's graph, or eagerly (then captured when the
  // cache wants it). Errors of the eager step propagate; a failed capture or replay never does
  // (that key runs eagerly from then on).
  at::Tensor velocity(const StepGraphKey& key, const StepInputs& in, const StepFn& step);

  // Drops every graph (after out-of-memory).
  void clear() { cache_.clear(); }
  const GraphCache& cache() const { return cache_; }

 private:
  GraphCache cache_;
  c10::Device device_;
  int warmups_;
  bool active_;  // CUDA build, CUDA device, graphs enabled
};

}  // namespace grat::engine
