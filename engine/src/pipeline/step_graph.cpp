// StepGraphs (step_graph.h): a step through the graph cache, on any backend.
#include "step_graph.h"

#include <algorithm>
#include <chrono>
#include <sstream>
#include <utility>

namespace grat::engine {
namespace {

// A new graph's first replay must give the eager step's velocity for the same inputs: it
// catches a capture that recorded the wrong work or whose replay fails, not one that reads
// memory outside its static inputs (same values here); the keyed step reads only those.
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

}  // namespace

std::string error_line(const std::exception& e) {
  const auto* c10e = dynamic_cast<const c10::Error*>(&e);
  std::string m = c10e != nullptr ? c10e->what_without_backtrace() : e.what();
  // TorchScript puts the op's own error ("RuntimeError: CUDA error: ...") after its traceback.
  if (m.rfind("The following operation failed in the TorchScript interpreter", 0) == 0) {
    const size_t err = m.rfind("Error: ");
    const size_t line = err == std::string::npos ? err : m.rfind('\n', err);
    if (line != std::string::npos) m = m.substr(line + 1);
  }
  m = m.substr(0, m.find('\n'));
  return m.size() > 300 ? m.substr(0, 300) + "..." : m;
}

bool is_out_of_memory(const std::exception& e) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr) return true;
  return std::string(e.what()).find("CUDA out of memory") != std::string::npos;
}

std::shared_mutex& capture_mutex() {
  static std::shared_mutex m;
  return m;
}

StepGraphs::StepGraphs(GraphCacheOptions options, std::unique_ptr<GraphBackend> backend,
                       GraphCache::Log log)
    : backend_(std::move(backend)), cache_(options, std::move(log)) {}

StepGraphs::~StepGraphs() = default;

at::Tensor StepGraphs::velocity(const StepGraphKey& key, const StepInputs& in, const StepFn& step) {
  if (!backend_ || !cache_.options().enabled) return step(in);
  if (CachedGraph* g = cache_.find(key)) {
    try {
      return backend_->replay(*g, in);
    } catch (const std::exception& e) {
      if (is_out_of_memory(e)) throw;   // the job's error, as it would be eagerly
      cache_.fail(key, error_line(e));  // this step, and the key from now on, run eagerly
    }
  }
  const at::Tensor v = step(in);  // the step's result, whatever becomes of the capture
  if (cache_.wants_capture(key)) {
    cache_.capture(key, [&] {
      const auto t0 = std::chrono::steady_clock::now();
      Capture c = backend_->capture(in, step);
      if (!c.graph) throw std::runtime_error("the backend captured no graph");
      try {
        check_replay(backend_->replay(*c.graph, in), v);
      } catch (const std::exception& e) {
        if (is_out_of_memory(e)) throw TransientCaptureError("out of memory: " + error_line(e));
        throw;
      }
      c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return c;
    });
  }
  return v;
}

}  // namespace grat::engine
