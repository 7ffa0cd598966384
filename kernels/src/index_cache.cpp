#include "index_cache.h"

#include <ATen/ATen.h>

#if GRAT_HAVE_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace grat::detail {
namespace {

void add(IndexCache::Stats& to, const IndexCache::Stats& s) {
  to.entries += s.entries;
  to.bytes += s.bytes;
  to.hits += s.hits;
  to.misses += s.misses;
  to.not_stored += s.not_stored;
}

// Whether the current stream of `device` is capturing a CUDA graph.
bool capturing(const c10::Device& device) {
#if GRAT_HAVE_CUDA
  if (!device.is_cuda()) return false;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(c10::cuda::getCurrentCUDAStream(device.index()), &status));
  return status != cudaStreamCaptureStatusNone;
#else
  (void)device;
  return false;
#endif
}

}  // namespace

IndexCache::IndexCache(int64_t max_entries, int64_t max_bytes)
    : max_entries_(max_entries), max_bytes_(max_bytes) {}

at::Tensor IndexCache::get(const std::string& kind, const std::vector<int64_t>& values,
                           const c10::Device& device, const Make& make, bool store) {
  const DeviceKey dk{static_cast<int>(device.type()), static_cast<int>(device.index())};
  Key key{dk.first, dk.second, kind, values};
  {
    std::lock_guard<std::mutex> g(mu_);
    const auto it = entries_.find(key);
    if (it != entries_.end()) {
      ++per_device_[dk].hits;
      return it->second;
    }
  }
  // Built outside the lock: a first call may copy to its device and wait for it, and other
  // devices' workers should not wait with it.
  at::Tensor made = make();
  TORCH_CHECK(made.device() == device, "grat: index cache: ", kind, " was built on ",
              made.device().str(), " for ", device.str());
  std::lock_guard<std::mutex> g(mu_);
  Stats& s = per_device_[dk];
  ++s.misses;
  const auto [it, inserted] = entries_.try_emplace(std::move(key));
  if (!inserted) return it->second;  // another thread stored it meanwhile
  const auto bytes = static_cast<int64_t>(made.nbytes());
  if (!store || s.entries + 1 > max_entries_ || s.bytes + bytes > max_bytes_) {
    entries_.erase(it);
    ++s.not_stored;
    return made;
  }
  it->second = made;
  ++s.entries;
  s.bytes += bytes;
  return made;
}

IndexCache::Stats IndexCache::stats() const {
  std::lock_guard<std::mutex> g(mu_);
  Stats all;
  for (const auto& [d, s] : per_device_) add(all, s);
  return all;
}

IndexCache::Stats IndexCache::stats(const c10::Device& device) const {
  std::lock_guard<std::mutex> g(mu_);
  const auto it =
      per_device_.find({static_cast<int>(device.type()), static_cast<int>(device.index())});
  return it == per_device_.end() ? Stats{} : it->second;
}

IndexCache& IndexCache::global() {
  static IndexCache* cache = new IndexCache(256, int64_t{64} << 20);
  return *cache;
}

at::Tensor small_ints(const std::string& kind, const std::vector<int64_t>& values,
                      at::ScalarType dtype, const c10::Device& device) {
  const bool in_capture = capturing(device);
  const auto make = [&] {
    const auto n = static_cast<int64_t>(values.size());
    if (!in_capture) {
      at::Tensor host = at::empty({n}, at::TensorOptions().dtype(at::kLong));
      std::copy(values.begin(), values.end(), host.data_ptr<int64_t>());
      // Blocking: the copy is complete before any stream can be handed the tensor.
      return host.to(device, dtype, /*non_blocking=*/false);
    }
    at::Tensor t = at::empty({n}, at::TensorOptions().dtype(dtype).device(device));
    for (int64_t i = 0; i < n; ++i) t.narrow(0, i, 1).fill_(values[static_cast<size_t>(i)]);
    return t;
  };
  return IndexCache::global().get(kind + "/" + std::string(c10::toString(dtype)), values, device,
                                  make, /*store=*/!in_capture);
}

}  // namespace grat::detail
