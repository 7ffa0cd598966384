// The CUDA GraphBackend of StepGraphs (step_graph.h): at::cuda::CUDAGraph, captured on the
// engine's own stream (the current one: never the default stream) into a private memory pool.
#include "step_graph.h"

#if GRAT_HAVE_CUDA
#include <ATen/core/CachingHostAllocator.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <utility>
#endif

namespace grat::engine {

#if GRAT_HAVE_CUDA
namespace {

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
};

void copy_in(at::Tensor& dst, const at::Tensor& src, const char* what) {
  if (!dst.defined() && !src.defined()) return;
  TORCH_CHECK(dst.defined() && src.defined() && dst.sizes() == src.sizes() &&
                  dst.scalar_type() == src.scalar_type() && dst.device() == src.device(),
              "step graph: input ", what, " does not match the captured one");
  dst.copy_(src, /*non_blocking=*/true);
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

class CudaGraphBackend : public GraphBackend {
 public:
  CudaGraphBackend(c10::Device device, int warmups) : device_(device), warmups_(warmups) {}

  Capture capture(const StepInputs& in, const StepFn& step) override {
    const c10::DeviceIndex dev = device_.index();
    auto sg = std::make_unique<StepGraph>();
    StepInputs& s = sg->in;
    int64_t before = 0, static_bytes = 0;
    // Shared from capture_begin until the capture ended or was aborted: no engine empties the
    // allocator's cache meanwhile.
    std::shared_lock<std::shared_mutex> capturing(capture_mutex(), std::defer_lock);
    try {
      s.x = copy_of(in.x);  // the static inputs: out of memory here is transient too
      s.t = copy_of(in.t);
      s.g = copy_of(in.g);
      s.text = {copy_of(in.text.seq), copy_of(in.text.pooled), in.text.valid};
      s.neg = {copy_of(in.neg.seq), copy_of(in.neg.pooled), in.neg.valid};
      static_bytes = bytes_of(s.x) + bytes_of(s.t) + bytes_of(s.g) + bytes_of(s.text.seq) +
                     bytes_of(s.text.pooled) + bytes_of(s.neg.seq) + bytes_of(s.neg.pooled);
      for (int i = 0; i < warmups_; ++i) step(s);
      capturing.lock();
      before = reserved_bytes(dev);  // the graph's pool is new: what capture adds is its own
      // ThreadLocal: workers of other devices in this process may keep allocating meanwhile.
      sg->graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
      sg->out = step(s);
      sg->graph.capture_end();
      capturing.unlock();
    } catch (const std::exception& e) {
      sg->out = at::Tensor();
      abort_capture(sg->graph, dev);
      if (is_out_of_memory(e)) throw TransientCaptureError("out of memory: " + error_line(e));
      throw std::runtime_error(error_line(e));
    }
    Capture c;
    c.bytes = std::max<int64_t>(0, reserved_bytes(dev) - before) + static_bytes;
    c.graph = std::move(sg);
    return c;
  }

  at::Tensor replay(CachedGraph& graph, const StepInputs& src) override {
    StepGraph& sg = static_cast<StepGraph&>(graph);
    StepInputs& in = sg.in;
    copy_in(in.x, src.x, "x");
    copy_in(in.t, src.t, "t");
    copy_in(in.g, src.g, "guidance");
    copy_in(in.text.seq, src.text.seq, "text");
    copy_in(in.text.pooled, src.text.pooled, "pooled text");
    copy_in(in.neg.seq, src.neg.seq, "negative text");
    copy_in(in.neg.pooled, src.neg.pooled, "negative pooled text");
    TORCH_CHECK(in.text.valid == src.text.valid && in.neg.valid == src.neg.valid,
                "step graph: valid text counts differ from the captured ones");
    sg.graph.replay();
    // A copy: the output lives in the graph's pool, which its next replay overwrites.
    return sg.out.clone();
  }

 private:
  c10::Device device_;
  int warmups_;
};

}  // namespace

std::unique_ptr<GraphBackend> make_cuda_graph_backend(c10::Device device, int warmups) {
  if (!device.is_cuda()) return nullptr;
  return std::make_unique<CudaGraphBackend>(device, warmups);
}

#else

std::unique_ptr<GraphBackend> make_cuda_graph_backend(c10::Device, int) { return nullptr; }

#endif  // GRAT_HAVE_CUDA

}  // namespace grat::engine
