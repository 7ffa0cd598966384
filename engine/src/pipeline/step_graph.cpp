// CUDA graph capture and replay of one denoising step (step_graph.h).
#include "step_graph.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <string>
#include <utility>

#if GRAT_HAVE_CUDA
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>
#endif

namespace grat::engine {
namespace {

#if GRAT_HAVE_CUDA
constexpr bool kCudaBuild = true;

// The line of an error that says what failed, short enough for one log line. TorchScript puts
// the op's own error ("RuntimeError: CUDA error: ...") after its traceback.
std::string message(const std::exception& e) {
  const auto* c10e = dynamic_cast<const c10::Error*>(&e);
  std::string m = c10e != nullptr ? c10e->what_without_backtrace() : e.what();
  if (m.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    const size_t err = m.rfind("Error: ");
    const size_t line = err == std::string::npos ? err : m.rfind('\n', err);
    if (line != std::string::npos) m = m.substr(line + 1);
  }
  m = m.substr(0, m.find('\n'));
  return m.size() > 300 ? m.substr(0, 300) + "..." : m;
}

using Clock = std::chrono::steady_clock;

// CUDAGraph keeps what a failed capture leaves to clean up in protected members.
class Graph : public at::cuda::CUDAGraph {
 public:
  bool ended() const { return capture_ended_; }
  c10::MempoolId_t pool_id() const { return mempool_id_; }
};

class StepGraph : public CachedGraph {
 public:
  Graph graph;  // declared first: destroyed after the tensors that live in its pool
  StepInputs in;
  at::Tensor out;

  at::Tensor run(const StepInputs& src);
};

void copy_in(at::Tensor& dst, const at::Tensor& src, const char* what) {
  if (!dst.defined() && !src.defined()) return;
  TORCH_CHECK(dst.defined() && src.defined() && dst.sizes() == src.sizes() &&
                  dst.scalar_type() == src.scalar_type() && dst.device() == src.device(),
              "step graph: input ", what, " does not match the captured one");
  dst.copy_(src, /*non_blocking=*/true);
}

at::Tensor StepGraph::run(const StepInputs& src) {
  copy_in(in.x, src.x, "x");
  copy_in(in.t, src.t, "t");
  copy_in(in.g, src.g, "guidance");
  copy_in(in.text.seq, src.text.seq, "text");
  copy_in(in.text.pooled, src.text.pooled, "pooled text");
  copy_in(in.neg.seq, src.neg.seq, "negative text");
  copy_in(in.neg.pooled, src.neg.pooled, "negative pooled text");
  TORCH_CHECK(in.text.valid == src.text.valid && in.neg.valid == src.neg.valid,
              "step graph: valid text counts differ from the captured ones");
  graph.replay();
  // A copy: the next replay (of any graph) may reuse the pool's memory.
  return out.clone();
}

at::Tensor copy_of(const at::Tensor& t) { return t.defined() ? t.clone() : t; }

int64_t bytes_of(const at::Tensor& t) { return t.defined() ? int64_t(t.nbytes()) : 0; }

int64_t reserved_bytes(c10::DeviceIndex dev) {
  const auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(dev);
  return s.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].current;
}

template <class F>
void ignore_errors(F&& f) {
  try {
    f();
  } catch (const std::exception&) {
  }
}

// After a capture that threw: ends the stream's capture, and stops the allocators routing to
// the graph's pool and releases it (CUDAGraph's own reset() does that only for a capture that
// ended). Without this the allocator would test every later allocation against the dead
// capture and keep the pool's memory.
void abort_capture(Graph& g, c10::DeviceIndex dev) {
  const cudaStream_t s = at::cuda::getCurrentCUDAStream(dev).stream();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(s, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
    cudaGraph_t partial = nullptr;
    if (cudaStreamEndCapture(s, &partial) == cudaSuccess && partial != nullptr) {
      (void)cudaGraphDestroy(partial);
    }
  }
  const c10::MempoolId_t pool = g.pool_id();
  if (!g.ended() && (pool.first != 0 || pool.second != 0)) {
    ignore_errors([&] { c10::cuda::CUDACachingAllocator::endAllocateToPool(dev, pool); });
    ignore_errors([&] { at::getHostAllocator(at::kCUDA)->end_allocate_to_pool(pool); });
    ignore_errors([&] { c10::cuda::CUDACachingAllocator::releasePool(dev, pool); });
    ignore_errors([&] { at::getHostAllocator(at::kCUDA)->release_pool(pool); });
  }
  (void)cudaGetLastError();  // the refused call's error is not sticky; clear it
}

// The graph's first replay must give the eager step's velocity for the same inputs (a capture
// that baked in a host buffer or a stale pointer would not).
void check_replay(const at::Tensor& replayed, const at::Tensor& eager) {
  TORCH_CHECK(replayed.sizes() == eager.sizes(), "the replay's output has another shape");
  const at::Tensor a = at::nan_to_num(replayed.to(at::kFloat));
  const at::Tensor b = at::nan_to_num(eager.to(at::kFloat));
  const double ref = b.norm().item<double>(), err = (a - b).norm().item<double>();
  if (!(err <= 1e-2 * ref + 1e-6)) {
    std::ostringstream m;
    m << "the replay differs from the eager step (relative L2 error " << err / std::max(ref, 1e-30)
      << ")";
    throw std::runtime_error(m.str());
  }
}

Capture capture_step(const StepInputs& in, const StepFn& step, const at::Tensor& eager,
                     c10::Device device, int warmups) {
  const auto t0 = Clock::now();
  const c10::DeviceIndex dev = device.index();
  auto sg = std::make_unique<StepGraph>();
  StepInputs& s = sg->in;
  s.x = copy_of(in.x);
  s.t = copy_of(in.t);
  s.g = copy_of(in.g);
  s.text = {copy_of(in.text.seq), copy_of(in.text.pooled), in.text.valid};
  s.neg = {copy_of(in.neg.seq), copy_of(in.neg.pooled), in.neg.valid};
  const int64_t static_bytes = bytes_of(s.x) + bytes_of(s.t) + bytes_of(s.g) +
                               bytes_of(s.text.seq) + bytes_of(s.text.pooled) +
                               bytes_of(s.neg.seq) + bytes_of(s.neg.pooled);
  int64_t before = 0;
  try {
    for (int i = 0; i < warmups; ++i) step(s);
    before = reserved_bytes(dev);  // the graph's pool is new: what capture adds is its own
    // ThreadLocal: workers of other devices in this process may keep allocating meanwhile.
    sg->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    sg->out = step(s);
    sg->graph.capture_end();
  } catch (const std::exception& e) {
    sg->out = at::Tensor();
    abort_capture(sg->graph, dev);
    if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) {
      throw TransientCaptureError("out of memory: " + message(e));
    }
    throw std::runtime_error(message(e));
  }
  const int64_t after = reserved_bytes(dev);
  sg->graph.replay();
  check_replay(sg->out, eager);
  Capture c;
  c.bytes = std::max<int64_t>(0, after - before) + static_bytes;
  c.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  c.graph = std::move(sg);
  return c;
}

#else
constexpr bool kCudaBuild = false;
#endif  // GRAT_HAVE_CUDA

}  // namespace

StepGraphs::StepGraphs(GraphCacheOptions options, c10::Device device, int warmups,
                       GraphCache::Log log)
    : cache_(options, std::move(log)),
      device_(device),
      warmups_(warmups),
      active_(kCudaBuild && device.is_cuda() && options.enabled) {}

StepGraphs::~StepGraphs() = default;

at::Tensor StepGraphs::velocity(const StepGraphKey& key, const StepInputs& in, const StepFn& step) {
  if (!active_) return step(in);
#if GRAT_HAVE_CUDA
  if (CachedGraph* g = cache_.find(key)) {
    try {
      return static_cast<StepGraph*>(g)->run(in);
    } catch (const c10::OutOfMemoryError&) {
      throw;  // the job's error, as it would be eagerly
    } catch (const std::exception& e) {
      cache_.fail(key, message(e));  // then this step, and the key from now on, run eagerly
    }
  }
  at::Tensor v = step(in);
  if (cache_.wants_capture(key)) {
    cache_.capture(key, [&] { return capture_step(in, step, v, device_, warmups_); });
  }
  return v;
#else
  return step(in);
#endif
}

}  // namespace grat::engine
