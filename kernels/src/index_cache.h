// Small integer tensors the ops derive from their parameters (token permutations, per-item
// valid-text counts), kept per (kind, values, device) so that a call after the first only
// reads memory already on its device: no host-to-device copy, which stalls the launching
// thread until the GPU catches up and cannot be captured in a CUDA graph.
//
// Entries are never dropped: a captured CUDA graph keeps reading the tensor it saw at capture,
// so freeing one could let a replay read reused memory. The cache is bounded instead by
// storing nothing new on a device past max_entries or max_bytes; such calls build their
// tensor each time, as without a cache.
//
// Thread-safety: every member may be called from any thread (the engine's workers on
// different devices call at once). Tensors it returns are shared: callers only read them.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace grat::detail {

class IndexCache {
 public:
  struct Stats {
    int64_t entries = 0;     // stored tensors
    int64_t bytes = 0;       // their memory
    int64_t hits = 0;        // calls served from the cache
    int64_t misses = 0;      // calls that built their tensor
    int64_t not_stored = 0;  // misses not stored: over a device's caps, or asked not to
  };
  using Make = std::function<at::Tensor()>;

  // Caps per device.
  IndexCache(int64_t max_entries, int64_t max_bytes);

  // The tensor stored for (kind, values, device), or make()'s (a tensor on `device`), stored
  // when `store` and within the device's caps. `values` must determine make()'s result.
  at::Tensor get(const std::string& kind, const std::vector<int64_t>& values,
                 const c10::Device& device, const Make& make, bool store = true);

  Stats stats() const;                           // all devices
  Stats stats(const c10::Device& device) const;  // one device (hits / misses included)

  // The process's cache (never destroyed: CUDA tensors must not outlive the CUDA context at
  // exit): 256 entries and 64 MiB per device.
  static IndexCache& global();

 private:
  using Key = std::tuple<int, int, std::string, std::vector<int64_t>>;  // device, kind, values
  using DeviceKey = std::pair<int, int>;

  const int64_t max_entries_, max_bytes_;
  mutable std::mutex mu_;
  std::map<Key, at::Tensor> entries_;
  std::map<DeviceKey, Stats> per_device_;
};

// `values` as a 1-D `dtype` tensor on `device` through IndexCache::global() (kind names the
// use). On CUDA the first call copies from the host and waits for the copy, so any stream may
// read the stored tensor; inside a CUDA graph capture a miss writes the values with one fill
// per element instead (capturable, no host copy) and is not stored, since captured kernels
// run only at replay.
at::Tensor small_ints(const std::string& kind, const std::vector<int64_t>& values,
                      at::ScalarType dtype, const c10::Device& device);

}  // namespace grat::detail
