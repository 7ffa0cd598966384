#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <sstream>

#if GRAT_HAVE_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include "engine_impl.h"
#include "grat/engine/attention_policy.h"
#include "grat/pattern.h"

namespace grat::engine {
namespace {

c10::ScalarType parse_dtype(const std::string& s, const c10::Device& device) {
  if (s == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (s == "bf16") return c10::kBFloat16;
  if (s == "fp16") return c10::kHalf;
  if (s == "fp32") return c10::kFloat;
  throw EngineLoadError("engine: dtype must be auto, bf16, fp16 or fp32; got '" + s + "'");
}

Error invalid(const std::string& msg) { return Error{ErrorCode::kInvalidArgument, msg}; }

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(ch));
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// The default log: JSON lines on stderr, like the server's own.
void log_to_stderr(const std::string& msg, const std::string& key) {
  const std::string line = "{\"level\": \"info\", \"msg\": " + json_string(msg) +
                           ", \"source\": \"engine\", \"graph_key\": " + json_string(key) + "}\n";
  std::fputs(line.c_str(), stderr);
}

}  // namespace

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

std::unique_ptr<Engine> Engine::load(const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    impl->manifest = load_manifest(options.bundle);
  } catch (const BundleError& e) {
    throw EngineLoadError(std::string("engine: bad bundle: ") + e.what());
  }
  const Manifest& m = impl->manifest;
  if (m.kind == "image" && m.architecture == "flux") {
    impl->family = make_flux_family(m);
  } else if (m.kind == "video" && m.architecture == "hunyuan") {
    impl->family = make_hunyuan_family(m);
  } else {
    throw EngineLoadError("engine: model.yaml.architecture '" + m.architecture + "' (kind " +
                          m.kind + ") is not supported (flux images, hunyuan video)");
  }
  try {
    impl->device = c10::Device(options.device);
  } catch (const c10::Error&) {
    throw EngineLoadError("engine: device must be cpu, cuda or cuda:N; got '" + options.device +
                          "'");
  }
  if (impl->device.is_cuda() && !torch::cuda::is_available()) {
    throw EngineLoadError("engine: device " + options.device +
                          " requested but CUDA is not available");
  }
  if (impl->device.is_cuda() && !impl->device.has_index()) {
    impl->device = c10::Device(c10::kCUDA, 0);
  }
  if (impl->device.is_cuda() && impl->device.index() >= torch::cuda::device_count()) {
    throw EngineLoadError("engine: device " + options.device + " does not exist (" +
                          std::to_string(torch::cuda::device_count()) + " CUDA devices)");
  }
#if GRAT_HAVE_CUDA
  if (impl->device.is_cuda()) {
    impl->stream = c10::cuda::getStreamFromPool(false, impl->device.index());
  }
#endif
  impl->dtype = parse_dtype(options.dtype, impl->device);
  torch::jit::setGraphExecutorOptimize(options.optimized_execution);
  if (options.memory_limit_gib < 0) {
    throw EngineLoadError("engine: memory_limit_gib must be >= 0 (0: the device's); got " +
                          std::to_string(options.memory_limit_gib));
  }
  impl->memory_budget_gib = options.memory_limit_gib;
#if GRAT_HAVE_CUDA
  if (impl->device.is_cuda() && impl->memory_budget_gib == 0) {
    size_t free = 0, total = 0;
    {
      c10::cuda::CUDAGuard guard(impl->device.index());
      C10_CUDA_CHECK(cudaMemGetInfo(&free, &total));
    }
    impl->memory_budget_gib = 0.92 * static_cast<double>(total) / (1ull << 30);
  }
#endif
  const GraphCacheOptions& go = options.cuda_graphs;
  if (go.max_graphs < 0 || go.max_tokens < 0 || !(go.max_gib >= 0)) {
    throw EngineLoadError("engine: cuda_graphs.max_graphs, max_tokens and max_gib must be >= 0");
  }
  impl->family->load(impl->device, impl->dtype);
  // The profiling executor compiles fused kernels on its second or third run: capture after.
  impl->graphs = std::make_unique<StepGraphs>(
      go,
      go.enabled ? make_cuda_graph_backend(impl->device, options.optimized_execution ? 2 : 0)
                 : nullptr,
      options.log ? options.log : log_to_stderr);
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const Manifest& Engine::manifest() const { return impl_->manifest; }
const EngineOptions& Engine::options() const { return impl_->options; }
double Engine::memory_budget_gib() const { return impl_->memory_budget_gib; }
GraphCacheStats Engine::graph_stats() const { return impl_->graphs->cache().stats(); }
std::vector<GraphInfo> Engine::graphs() const { return impl_->graphs->cache().graphs(); }
void Engine::inject_oom_at_step(int64_t step) { impl_->inject_oom_step = step; }
void Engine::inject_device_error_at_step(int64_t step) { impl_->inject_device_error_step = step; }
void Engine::inject_hang_at_step(int64_t step, double seconds) {
  impl_->inject_hang_step = step;
  impl_->inject_hang_s = seconds;
}

Plan Engine::prepare(const Request& in) const {
  Plan plan;
  plan.request = in;
  Request& r = plan.request;
  const Manifest& m = impl_->manifest;
  const Manifest::Limits& L = m.limits;
  const auto fail = [&](const std::string& msg) {
    plan.error = invalid(msg);
    return plan;
  };
  const auto range = [](const char* field, int64_t v, int64_t lo, int64_t hi) {
    return std::string(field) + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "]; got " + std::to_string(v);
  };
  for (const auto& [field, v] : {std::pair<const char*, int64_t>{"width", r.width},
                                 std::pair<const char*, int64_t>{"height", r.height}}) {
    if (v < L.min_side || v > L.max_side) return fail(range(field, v, L.min_side, L.max_side));
    if (v % L.side_multiple != 0) {
      return fail(std::string(field) + " must be a multiple of " + std::to_string(L.side_multiple) +
                  "; got " + std::to_string(v));
    }
  }
  if (r.width * r.height > L.max_pixels) {
    return fail("width x height must be at most " + std::to_string(L.max_pixels) +
                " pixels (max_pixels); got " + std::to_string(r.width * r.height));
  }
  if (r.frames == 0) r.frames = m.is_video() ? m.defaults.frames : 1;  // 0: the default
  if (Error e = impl_->family->validate(r); !e.ok()) {
    plan.error = e;
    return plan;
  }
  if (r.steps == 0) r.steps = m.defaults.steps;
  if (r.steps < L.min_steps || r.steps > L.max_steps) {
    return fail(range("steps", r.steps, L.min_steps, L.max_steps));
  }
  if (r.guidance && !(*r.guidance >= 0.0 && *r.guidance <= 100.0)) {
    return fail("guidance must be a finite number in [0, 100]; got " + std::to_string(*r.guidance));
  }
  if (!r.guidance) r.guidance = m.defaults.guidance;
  if (m.is_video() && r.fps == 0) r.fps = m.defaults.fps;
  // The attention settings a client may ask for: groups within the token grid, radius 0 (the
  // bundle's) to 64, full attention for at most every step.
  const std::vector<int64_t> grid = impl_->family->token_grid(r);
  const auto& group = r.attention.group;
  if (!group.empty() && group.size() != grid.size()) {
    return fail("attention.group must have " + std::to_string(grid.size()) +
                " entries (one per token-grid axis) or none; got " + std::to_string(group.size()));
  }
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i] < 1 || group[i] > grid[i]) {
      return fail("attention.group[" + std::to_string(i) + "] must be in [1, " +
                  std::to_string(grid[i]) + "] (the token grid); got " + std::to_string(group[i]));
    }
  }
  if (r.attention.radius < 0 || r.attention.radius > kMaxRequestRadius) {
    return fail(range("attention.radius", r.attention.radius, 0, kMaxRequestRadius));
  }
  if (r.attention.full_steps < 0 || r.attention.full_steps > r.steps) {
    return fail(range("attention.full_steps", r.attention.full_steps, 0, r.steps));
  }
  try {
    const AttentionPolicy policy(r.attention, grid, m.grat.pattern, m.grat.group, m.grat.radius);
    const StepAttention& a = policy.sparse();
    r.attention.mode = *parse_attention_mode(a.pattern);  // auto resolved for this shape
    r.attention.group = a.group;                          // defaults filled, clipped
    r.attention.radius = a.radius;
    r.attention.full_steps = a.pattern == "full" ? 0 : policy.full_steps();
  } catch (const std::invalid_argument& e) {
    return fail(e.what());
  }
  for (const auto& [field, text] :
       {std::pair<const char*, const std::string*>{"prompt", &r.prompt},
        std::pair<const char*, const std::string*>{"negative_prompt", &r.negative_prompt}}) {
    if (text->empty()) continue;
    const int64_t n = impl_->family->count_prompt_tokens(*text);
    if (field == std::string("prompt")) plan.prompt_tokens = n;
    if (n < 0) {  // kTokenizer, as generate() reports any tokenizer error
      plan.error = {ErrorCode::kTokenizer,
                    std::string(field) + " cannot be tokenized (invalid UTF-8?)"};
      return plan;
    }
    if (n > L.max_prompt_tokens) {
      return fail(std::string(field) + " is too long: " + std::to_string(n) +
                  " tokens; max_prompt_tokens is " + std::to_string(L.max_prompt_tokens));
    }
  }
  if (!m.memory.empty() && impl_->memory_budget_gib > 0) {
    int64_t tokens = 1;
    for (int64_t g : grid) tokens *= g;
    const double need = m.memory.estimate_gib(tokens), budget = impl_->memory_budget_gib;
    if (need > budget) {
      std::ostringstream msg;
      msg.precision(3);
      msg << (m.is_video() ? "frames x width x height = " + std::to_string(r.frames) + " x "
                           : std::string("width x height = "))
          << r.width << " x " << r.height << " needs about " << need
          << " GiB of device memory (model.yaml memory.peak_gib, measured on "
          << m.memory.measured_on << "); the limit on this device is " << budget
          << " GiB (memory_limit_gib)";
      plan.error = {ErrorCode::kResourceExhausted, msg.str()};
      return plan;
    }
    plan.max_batch = 1;
    while (plan.max_batch < 1024 &&
           m.memory.estimate_gib((plan.max_batch + 1) * tokens) <= budget) {
      ++plan.max_batch;
    }
  }
  std::ostringstream key;
  key << r.width << "x" << r.height << "x" << r.frames << "@" << r.fps << "/s" << r.steps << "/"
      << attention_mode_name(r.attention.mode) << "/g";
  for (int64_t g : r.attention.group) key << g << ",";
  key << "/r" << r.attention.radius << "/f" << r.attention.full_steps;
  plan.batch_key = key.str();
  return plan;
}

Error Engine::validate(const Request& r) const { return prepare(r).error; }

std::vector<Result> Engine::generate(const std::vector<Job>& jobs) {
  return generate_decoded(jobs).finish();
}

DecodedBatch Engine::generate_decoded(const std::vector<Job>& jobs) {
  std::vector<Result> results(jobs.size());
  std::vector<Job> resolved(jobs.size());
  std::vector<size_t> active;
  std::string key;
  for (size_t j = 0; j < jobs.size(); ++j) {
    Plan plan = prepare(jobs[j].request);
    if (plan.error.ok() && !active.empty() && plan.batch_key != key) {
      plan.error = invalid("a batch must share width, height, frames, steps and attention");
    }
    if (!plan.error.ok()) {
      results[j].error = plan.error;
      continue;
    }
    if (active.empty()) key = plan.batch_key;
    resolved[j] = Job{std::move(plan.request), jobs[j].observer};
    active.push_back(j);
  }
  return impl_->run(resolved, std::move(active), std::move(results));
}

}  // namespace grat::engine
