// Engine: one device's generation pipeline over a loaded model bundle.
//
// tokenize -> text encode -> seeded noise -> flow-matching Euler steps (per-step attention
// from AttentionPolicy) -> VAE decode (tiled when large) -> PNG / WebP.
// Weights are loaded once and shared by every request on this engine. Not thread-safe: one
// worker thread drives one engine (the scheduler's per-device worker). Failures come back as
// Result::error values; generate() never throws, and the engine serves the next batch after
// any error (out-of-memory included).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "grat/engine/graph_cache.h"
#include "grat/engine/manifest.h"
#include "grat/engine/observer.h"
#include "grat/engine/request.h"

namespace grat::engine {

class EngineLoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct EngineOptions {
  std::string bundle;             // bundle folder (model.yaml, TorchScript, tokenizer files)
  std::string device = "cpu";     // "cpu", "cuda", "cuda:1"
  std::string dtype = "auto";     // "bf16", "fp16", "fp32"; auto: bf16 on CUDA, fp32 on CPU
  int64_t vae_tile_latent = 128;  // tiled decode when a latent side exceeds this (0: never)
  int64_t preview_side = 64;      // longest side of preview images
  // TorchScript's optimizing (profiling) executor: faster once warm, but it re-specializes
  // for every new resolution (seconds each at full size). Off by default for a service.
  bool optimized_execution = false;
  // Benchmarks: synchronize around each transformer forward to report StageTimings::forward_s
  // (adds a host sync per step; off in service).
  bool profile_forwards = false;
  // Device memory a request (or batch) may plan for, against the bundle's measured table
  // (model.yaml memory): 0 = on CUDA the device's total memory less 8% (context, cuBLAS
  // workspaces, fragmentation); on the CPU no check. Requests over it are refused up front.
  double memory_limit_gib = 0;
  // CUDA graphs of denoising steps (graph_cache.h): captured on a step shape's first use and
  // replayed after; CUDA devices only. Each graph holds device memory that memory_limit_gib's
  // planning does not see: max_graphs / max_tokens / max_gib bound it, and out-of-memory drops
  // every graph.
  GraphCacheOptions cuda_graphs;
  // Where the engine's few log lines go (graph captures, failures, evictions): (message, key).
  // Null: one JSON object per line on stderr.
  GraphCache::Log log;
};

struct Job {
  Request request;
  JobObserver* observer = nullptr;  // not owned; may be null
};

// A request resolved once (Engine::prepare): the model's defaults filled in (steps, guidance,
// fps, attention mode / group / radius as they will run), every limit of the model checked, the
// prompt's tokens counted with the engine's own tokenizer, and the batch key built from the
// resolved values (so `steps: 0` and the explicit default share a batch).
struct Plan {
  Error error;      // not ok: refused; kInvalidArgument names the field and its limit
  Request request;  // resolved
  std::string batch_key;
  int64_t prompt_tokens = -1;  // -1: not countable here (generate() reports kTokenizer)
  // Jobs of this plan's shape that fit in memory together (model.yaml memory); 0: no limit.
  int64_t max_batch = 0;
};

// A batch whose device work is done (DecodedBatch, from Engine::generate_decoded): its outputs
// are decoded to host memory; encode() (CPU only: PNG / WebP / MP4) fills each ok result's bytes.
// encode() touches no device and no engine state the next batch uses, so a server runs it on
// another thread while the engine denoises the next batch. It must run before the engine is
// destroyed; it never throws (a failed encode becomes that job's kInternal error).
struct DecodedBatch {
  std::vector<Result> results;  // one per job, in order; ok ones have no bytes until encode()
  std::function<void(std::vector<Result>&)> encode;  // null: nothing left to encode

  // Runs encode (if any) on this thread and returns the finished results.
  std::vector<Result> finish() && {
    if (encode) encode(results);
    encode = nullptr;
    return std::move(results);
  }
};

class Engine {
 public:
  // Throws EngineLoadError naming what failed (bundle key, file, device, dtype).
  static std::unique_ptr<Engine> load(const EngineOptions& options);
  ~Engine();

  const Manifest& manifest() const;
  const EngineOptions& options() const;
  // The memory requests are planned against (EngineOptions::memory_limit_gib); 0: no check.
  double memory_budget_gib() const;

  // Resolves and checks a request (see Plan). Thread-safe (tokenizers are immutable).
  Plan prepare(const Request& request) const;
  // prepare(request).error.
  Error validate(const Request& request) const;

  // Runs jobs whose plans share a batch key as one batch (each job is prepared again here);
  // one Result per job, in order. Equal to generate_decoded(jobs).finish().
  std::vector<Result> generate(const std::vector<Job>& jobs);
  // The same up to the host copy of the decoded outputs; the caller runs encode (see
  // DecodedBatch), possibly on another thread while the next batch runs.
  DecodedBatch generate_decoded(const std::vector<Job>& jobs);

  // The CUDA graph cache's counters and the graphs it holds (most recently used first).
  // Thread-safe.
  GraphCacheStats graph_stats() const;
  std::vector<GraphInfo> graphs() const;

  // Testing: the next generate() fails with out-of-memory before step `step` (0-based).
  void inject_oom_at_step(int64_t step);
  // Testing: from step `step` on, every generate() fails as a sticky CUDA error would.
  void inject_device_error_at_step(int64_t step);
  // Testing: the next generate() stops for `seconds` before step `step`, deaf to cancellation,
  // as a hung kernel would.
  void inject_hang_at_step(int64_t step, double seconds);

 private:
  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace grat::engine
