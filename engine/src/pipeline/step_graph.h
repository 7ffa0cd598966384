// The engine's CUDA graphs: one denoising step's velocity (every transformer forward of the
// step, the CFG pair and its combination included) captured per StepGraphKey and replayed for
// later steps and requests. GraphCache (grat/engine/graph_cache.h) decides what is captured and
// kept; StepGraphs runs a step through it, checks each new graph's first replay against the
// eager step, and falls back to eager on any failure; a GraphBackend captures and replays
// (cuda_step_graph.cpp; tests use a fake). On the CPU, or in a build without CUDA, there is no
// backend and every step runs eagerly.
#pragma once

#include <torch/script.h>

#include <exception>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>

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

// Captures and replays step graphs on one device.
class GraphBackend {
 public:
  virtual ~GraphBackend() = default;
  // Captures `step` on the graph's own copies of `in` (Capture::bytes: the memory it holds).
  // Throws when it cannot: TransientCaptureError for out-of-memory, anything else for a step
  // that cannot be captured; the device is left as it was.
  virtual Capture capture(const StepInputs& in, const StepFn& step) = 0;
  // Copies `in` into the graph's inputs and replays it; the velocity, in memory of its own.
  virtual at::Tensor replay(CachedGraph& graph, const StepInputs& in) = 0;
};

// CUDA graphs on `device` (at::cuda::CUDAGraph); null in a build without CUDA. warmups: eager
// runs on the graph's own inputs before capture, beyond the step itself (TorchScript's
// profiling executor compiles its fused kernels on the second or third run).
std::unique_ptr<GraphBackend> make_cuda_graph_backend(c10::Device device, int warmups);

// The line of an error that says what failed, short enough for one log line.
std::string error_line(const std::exception& e);

// Out of device memory, also when raised inside a TorchScript forward: the interpreter
// rethrows an op's c10::OutOfMemoryError as a plain std::runtime_error with its message.
bool is_out_of_memory(const std::exception& e);

// Held shared while a CUDA graph is being captured, exclusively to empty the allocator's
// cache: emptying it (every device's) while any stream in the process is capturing fails.
std::shared_mutex& capture_mutex();

class StepGraphs {
 public:
  // backend null: every step eager.
  StepGraphs(GraphCacheOptions options, std::unique_ptr<GraphBackend> backend, GraphCache::Log log);
  ~StepGraphs();

  // The step's velocity: replayed from the key's graph, or eagerly (then captured when the
  // cache wants it). Errors of the eager step propagate, and out-of-memory in a replay; any
  // other failure of a capture or replay does not (that key runs eagerly from then on).
  at::Tensor velocity(const StepGraphKey& key, const StepInputs& in, const StepFn& step);

  // Drops every graph (after out-of-memory).
  void clear() { cache_.clear(); }
  const GraphCache& cache() const { return cache_; }

 private:
  std::unique_ptr<GraphBackend> backend_;
  GraphCache cache_;  // declared after the backend: its graphs are destroyed first
};

}  // namespace grat::engine
