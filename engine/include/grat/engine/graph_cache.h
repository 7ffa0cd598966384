// Which denoising steps run as captured CUDA graphs: the cache policy, apart from CUDA.
//
// A step graph is valid only for the exact kernels it recorded, so it is keyed by everything
// that changes them (StepGraphKey). The cache holds at most max_graphs of them (and, when set,
// max_gib of the memory they hold), evicting the least recently used; it captures on a key's
// first use and remembers keys whose capture failed, so those run eagerly from then on and are
// logged once. The graphs themselves are opaque (CachedGraph): the engine's CUDA layer
// (step_graph.h) makes them, tests use fakes.
//
// Thread-safety: one thread (the engine's worker) calls find / capture / fail / clear; stats()
// and graphs() may be called from any thread.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace grat::engine {

// The `cuda_graphs` settings (EngineOptions::cuda_graphs, server config `cuda_graphs:`).
struct GraphCacheOptions {
  // On: on the H200 a replayed FLUX.1-dev step is 1.6 ms faster at 512^2 and 1024^2 (the
  // launches between kernels); CPU devices ignore it (README "CUDA graphs").
  bool enabled = true;
  int64_t max_graphs = 8;
  // Steps with more image tokens than this (batch x token grid) run eagerly: launches are a
  // small share of such steps while their graphs hold the most memory (2048^2: 2.3 GiB, and
  // GRAT-B replayed was 5% slower there than eager). 0: no limit.
  int64_t max_tokens = 4096;  // 1024^2 at batch 1, 512^2 at batch 4
  double max_gib = 8;         // memory all graphs may hold together; 0: no limit
};

// Everything that changes the kernels of one denoising step (all transformer forwards of the
// step, the CFG pair included). Two steps share a graph only when their keys are equal.
struct StepGraphKey {
  std::string model;                // bundle name
  std::string device;               // "cuda:0"
  std::string dtype;                // the transformer's compute dtype
  std::vector<int64_t> grid;        // token grid per axis: [h, w] or [t, h, w]
  int64_t batch = 1;                // items in the step
  std::string pattern;              // this step's attention: "full", "B", "X"
  std::vector<int64_t> group;       // GRAT group per grid axis
  int64_t radius = 0;               // GRAT-B radius
  int64_t text_tokens = 0;          // text sequence length
  std::vector<int64_t> valid_text;  // per item (then -1, the negative prompt's); empty: all
  bool true_cfg = false;            // two forwards per step (with the negative prompt)
  bool guidance_embeds = false;     // guidance goes into the transformer
  // The image tokens of the step (batch x prod(grid)), which max_tokens bounds.
  int64_t tokens() const;
  // Canonical text: equal keys give equal strings, distinct keys distinct ones.
  std::string str() const;
};

// A captured step; the cache owns it and destroys it on eviction.
class CachedGraph {
 public:
  virtual ~CachedGraph() = default;
};

// What a capture function returns.
struct Capture {
  std::unique_ptr<CachedGraph> graph;
  int64_t bytes = 0;   // device memory the graph holds (allocator stats around capture)
  double seconds = 0;  // capture time (warm-up, capture, check)
};

// Thrown by a capture function for a failure that says nothing about the key (out of memory):
// the key is tried again later, and the cache drops its graphs to give their memory back. Any
// other exception marks the key as not capturable.
// Steps a key stays eager after its capture ran out of memory.
constexpr int kTransientCaptureBackoffSteps = 64;

class TransientCaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct GraphInfo {
  std::string key;
  int64_t bytes = 0;
  double capture_s = 0;
  int64_t replays = 0;
};

struct GraphCacheStats {
  int64_t graphs = 0;            // held now
  int64_t bytes = 0;             // device memory they hold now
  int64_t captures = 0;          // successful captures
  int64_t capture_failures = 0;  // captures or checks that threw, replays that threw (fail())
  int64_t hits = 0;              // steps that found their graph
  int64_t evictions = 0;         // graphs dropped for the caps (not by clear())
  int64_t eager_steps = 0;       // steps run eagerly: off, over max_tokens, or not capturable
  double capture_s = 0;          // all captures together
  double last_capture_s = 0;
};

class GraphCache {
 public:
  // (message, key): one line per event worth a log (capture, failure, eviction).
  using Log = std::function<void(const std::string&, const std::string&)>;
  using CaptureFn = std::function<Capture()>;

  explicit GraphCache(GraphCacheOptions options, Log log = nullptr);
  ~GraphCache();

  const GraphCacheOptions& options() const { return options_; }

  // The graph for `key` (now the most recently used), or null: then the caller runs the step
  // eagerly, and may call capture() for the same key afterwards when wants_capture() says so.
  CachedGraph* find(const StepGraphKey& key);
  // Whether a missing key should be captured now: graphs on, the key within max_tokens and
  // not known to fail. Counts an eager step when not.
  bool wants_capture(const StepGraphKey& key);
  // Runs `capture` and stores its graph under `key`, evicting the least recently used past
  // max_graphs / max_gib; returns it, or null when the capture threw (logged, never rethrown)
  // or the graph alone is over max_gib.
  CachedGraph* capture(const StepGraphKey& key, const CaptureFn& capture);
  // A stored graph that misbehaved (replay threw): dropped, and its key marked as failing.
  void fail(const StepGraphKey& key, const std::string& why);
  // Drops every graph (after out-of-memory, so their memory goes back); failures are kept.
  void clear();

  GraphCacheStats stats() const;
  std::vector<GraphInfo> graphs() const;  // most recently used first

 private:
  struct Entry {
    std::string key;
    std::unique_ptr<CachedGraph> graph;
    GraphInfo info;
  };
  void evict_over_caps();  // under mu_
  void remember_failure(const std::string& key);

  GraphCacheOptions options_;
  Log log_;
  mutable std::mutex mu_;
  std::list<Entry> lru_;  // front: most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
  std::set<std::string> failed_;  // keys that run eagerly (bounded: oldest forgotten)
  std::deque<std::string> failed_order_;
  // Keys whose capture ran out of memory: eager for this many more steps before the next try
  // (each try costs the eager step, warm-ups and a failed capture, and drops every graph).
  std::unordered_map<std::string, int> backoff_;
  GraphCacheStats stats_;
};

}  // namespace grat::engine
