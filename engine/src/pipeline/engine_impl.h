// Engine internals shared by engine.cpp (loading, validation) and pipeline.cpp (generate).
#pragma once

#include <torch/script.h>

#include <optional>

#if GRAT_HAVE_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "family.h"
#include "grat/engine/engine.h"
#include "step_graph.h"

namespace grat::engine {

struct Engine::Impl {
  EngineOptions options;
  Manifest manifest;
  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  std::unique_ptr<Family> family;      // Flux images or HunyuanVideo clips
  std::unique_ptr<StepGraphs> graphs;  // after family: destroyed before the modules
  int64_t inject_oom_step = -1;
  int64_t inject_device_error_step = -1;  // sticky: every later batch fails too
  int64_t inject_hang_step = -1;
  double inject_hang_s = 0;
  double memory_budget_gib = 0;  // 0: no up-front memory check
#if GRAT_HAVE_CUDA
  std::optional<c10::cuda::CUDAStream> stream;  // this engine's own stream on its device
#endif

  // Runs the jobs at positions `active` (validated, same batch key) up to their decoded
  // outputs; `results` holds the others' errors already.
  DecodedBatch run(const std::vector<Job>& jobs, std::vector<size_t> active,
                   std::vector<Result> results);
};

}  // namespace grat::engine
