#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/cuda.h>

#include <sstream>

#include "engine_impl.h"
#include "grat/engine/attention_policy.h"

namespace grat::engine {
namespace {

c10::ScalarType parse_dtype(const std::string& s, const c10::Device& device) {
  if (s == "auto") return device.is_cuda() ? c10::kBFloat16 : c10::kFloat;
  if (s == "bf16") return c10::kBFloat16;
  if (s == "fp16") return c10::kHalf;
  if (s == "fp32") return c10::kFloat;
  throw EngineLoadError("engine: dtype must be auto, bf16, fp16 or fp32; got '" + s + "'");
}

torch::jit::Module load_module(const Manifest& m, const std::string& role, c10::Device device,
                               c10::ScalarType dtype) {
  try {
    torch::jit::Module mod = torch::jit::load(m.path(role), device);
    mod.to(device, dtype);
    mod.eval();
    return mod;
  } catch (const c10::Error& e) {
    throw EngineLoadError("engine: bundle file for '" + role + "' (" + m.path(role) +
                          ") does not load: " + e.what_without_backtrace());
  }
}

Error invalid(const std::string& msg) { return Error{ErrorCode::kInvalidArgument, msg}; }

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
  if (m.architecture != "flux" || m.kind != "image") {
    throw EngineLoadError("engine: model.yaml.architecture '" + m.architecture + "' (kind " +
                          m.kind + ") is not supported by this engine (flux image models)");
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
  impl->transformer = load_module(m, "transformer", impl->device, impl->dtype);
  impl->t5 = load_module(m, "t5", impl->device, impl->dtype);
  impl->clip = load_module(m, "clip", impl->device, impl->dtype);
  impl->vae = load_module(m, "vae_decoder", impl->device, impl->dtype);
  // Guidance-distilled models (FLUX.1-dev) carry a guidance embedder; schnell does not.
  impl->guidance_embeds = false;
  for (const auto& p : impl->transformer.named_parameters()) {
    if (p.name.rfind("time_text_embed.guidance_embedder.", 0) == 0) impl->guidance_embeds = true;
  }
  try {
    tokenizer::T5Tokenizer::Options t5o;
    t5o.max_length = static_cast<int>(m.text.t5_max_length);
    impl->t5_tok.emplace(tokenizer::T5Tokenizer::Load(m.path("t5_tokenizer"), t5o));
    tokenizer::ClipTokenizer::Options co;
    co.max_length = static_cast<int>(m.text.clip_max_length);
    impl->clip_tok.emplace(
        tokenizer::ClipTokenizer::Load(m.path("clip_vocab"), m.path("clip_merges"), co));
  } catch (const std::exception& e) {
    throw EngineLoadError(std::string("engine: tokenizer files do not load: ") + e.what());
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

const Manifest& Engine::manifest() const { return impl_->manifest; }
const EngineOptions& Engine::options() const { return impl_->options; }
void Engine::inject_oom_at_step(int64_t step) { impl_->inject_oom_step = step; }

Error Engine::validate(const Request& r) const {
  const Manifest::Limits& L = impl_->manifest.limits;
  const auto range = [&](const char* field, int64_t v, int64_t lo, int64_t hi) -> Error {
    if (v < lo || v > hi) {
      return invalid(std::string(field) + " must be in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]; got " + std::to_string(v));
    }
    return {};
  };
  for (const auto& [field, v] : {std::pair<const char*, int64_t>{"width", r.width},
                                 std::pair<const char*, int64_t>{"height", r.height}}) {
    if (Error e = range(field, v, L.min_side, L.max_side); !e.ok()) return e;
    if (v % L.side_multiple != 0) {
      return invalid(std::string(field) + " must be a multiple of " +
                     std::to_string(L.side_multiple) + "; got " + std::to_string(v));
    }
  }
  if (r.width * r.height > L.max_pixels) {
    return invalid("width x height must be at most " + std::to_string(L.max_pixels) +
                   " pixels; got " + std::to_string(r.width * r.height));
  }
  if (r.frames != 1) return invalid("frames must be 1 for image model " + impl_->manifest.name);
  if (r.steps != 0) {
    if (Error e = range("steps", r.steps, L.min_steps, L.max_steps); !e.ok()) return e;
  }
  if (r.guidance && !(*r.guidance >= 0.0 && *r.guidance <= 100.0)) {
    return invalid("guidance must be in [0, 100]");
  }
  if (r.format == OutputFormat::kMp4) return invalid("format mp4 is for video models");
  if (r.attention.full_steps < 0) return invalid("attention.full_steps must be >= 0");
  try {
    const int64_t cell = impl_->manifest.vae_scale * impl_->manifest.patch;
    const std::vector<int64_t> grid = {r.height / cell, r.width / cell};
    AttentionPolicy(r.attention, grid, impl_->manifest.grat.pattern, impl_->manifest.grat.group,
                    impl_->manifest.grat.radius);
  } catch (const std::invalid_argument& e) {
    return invalid(e.what());
  }
  return {};
}

std::string Engine::batch_key(const Request& r) {
  std::ostringstream o;
  o << r.width << "x" << r.height << "x" << r.frames << "/s" << r.steps << "/"
    << attention_mode_name(r.attention.mode) << "/g";
  for (int64_t g : r.attention.group) o << g << ",";
  o << "/r" << r.attention.radius << "/f" << r.attention.full_steps;
  return o.str();
}

std::vector<Result> Engine::generate(const std::vector<Job>& jobs) {
  std::vector<Result> results(jobs.size());
  std::vector<size_t> active;
  for (size_t j = 0; j < jobs.size(); ++j) {
    Error e = validate(jobs[j].request);
    if (e.ok() && !active.empty() &&
        batch_key(jobs[j].request) != batch_key(jobs[active[0]].request)) {
      e = invalid("a batch must share width, height, frames, steps and attention settings");
    }
    if (e.ok()) {
      active.push_back(j);
    } else {
      results[j].error = e;
    }
  }
  return impl_->run(jobs, std::move(active), results);
}

}  // namespace grat::engine
