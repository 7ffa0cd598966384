// The denoising pipeline of Engine::generate (see engine.h).
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "engine_impl.h"
#include "family.h"
#include "grat/engine/attention_policy.h"
#include "step_graph.h"

#if GRAT_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace grat::engine {
namespace {

using Clock = std::chrono::steady_clock;

// CUDA errors that poison the context: every later call on the device fails the same way.
bool sticky_device_error(const std::string& msg) {
  for (const char* s : {"illegal memory access", "unspecified launch failure", "device-side assert",
                        "illegal instruction", "misaligned address", "uncorrectable ECC error",
                        "hardware stack error", "invalid program counter", "an illegal address"}) {
    if (msg.find(s) != std::string::npos) return true;
  }
  return false;
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void synchronize(const c10::Device& device) {
#if GRAT_HAVE_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

void release_memory(const c10::Device& device) {
#if GRAT_HAVE_CUDA
  if (device.is_cuda()) {
    // Exclusive: emptying the cache (every device's) while a stream captures a graph fails.
    std::unique_lock<std::shared_mutex> no_capture(capture_mutex());
    c10::cuda::CUDACachingAllocator::emptyCache();
  }
#else
  (void)device;
#endif
}

// The outputs of a batch encode in parallel, one thread each (libpng / libwebp / libavcodec
// state is per call). A failed encode fails only its own job.
void encode_outputs(const Family& fam, const at::Tensor& frames,
                    const std::vector<std::pair<size_t, Request>>& items,
                    std::vector<Result>& results) {
  std::vector<std::future<EncodedOutput>> encoded;
  for (size_t k = 0; k < items.size(); ++k) {
    const at::Tensor item = frames[static_cast<int64_t>(k)];
    const Request* r = &items[k].second;
    auto encode = [&fam, item, r] { return fam.encode_output(item, *r); };
    try {
      encoded.push_back(
          std::async(items.size() > 1 ? std::launch::async : std::launch::deferred, encode));
    } catch (const std::system_error&) {  // no thread to spare: encode it on this one
      encoded.push_back(std::async(std::launch::deferred, encode));
    }
  }
  for (size_t k = 0; k < items.size(); ++k) {
    Result& res = results[items[k].first];
    try {
      EncodedOutput e = encoded[k].get();
      res.bytes = std::move(e.bytes);
      res.mime = e.mime;
      res.timings.encode_s = e.seconds;
    } catch (const std::exception& e) {
      res.error = {ErrorCode::kInternal, std::string("encoding the output: ") + e.what()};
    }
  }
}

}  // namespace

DecodedBatch Engine::Impl::run(const std::vector<Job>& jobs, std::vector<size_t> active,
                               std::vector<Result> results) {
  DecodedBatch out;
  auto done = [&]() -> DecodedBatch {
    out.results = std::move(results);
    return std::move(out);
  };
  if (active.empty()) return done();
  c10::InferenceMode inference;
#if GRAT_HAVE_CUDA
  // Work goes to this engine's stream: engines on other devices/threads never serialise.
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
  if (stream) stream_guard.emplace(*stream);
#endif
  const Request& r0 = jobs[active[0]].request;
  const Manifest& m = manifest;
  Family& fam = *family;
  const int64_t steps = r0.steps > 0 ? r0.steps : m.defaults.steps;
  const std::vector<int64_t> grid = fam.token_grid(r0);
  const AttentionPolicy policy(r0.attention, grid, m.grat.pattern, m.grat.group, m.grat.radius);
  const bool cfg = m.defaults.true_cfg;
  // Everything but the step's attention and batch size that its kernels depend on.
  const auto step_key = [&](const StepAttention& a, int64_t batch, const TextBatch& text,
                            const TextBatch& neg) {
    StepGraphKey k;
    k.model = m.name;
    k.device = device.str();
    k.dtype = c10::toString(dtype);
    k.grid = grid;
    k.batch = batch;
    k.pattern = a.pattern;
    k.group = a.group;
    k.radius = a.radius;
    k.text_tokens = text.seq.size(1);
    // Valid text counts as the transformer gets them (none when all are valid); the negative
    // prompt's after a -1.
    for (const TextBatch* tb : {&text, &neg}) {
      if (tb->valid.empty() || !tb->seq.defined()) continue;
      if (std::any_of(tb->valid.begin(), tb->valid.end(),
                      [&](int64_t v) { return v != tb->seq.size(1); })) {
        if (tb == &neg) k.valid_text.push_back(-1);
        k.valid_text.insert(k.valid_text.end(), tb->valid.begin(), tb->valid.end());
      }
    }
    k.true_cfg = cfg;
    k.guidance_embeds = fam.guidance_embeds;
    return k;
  };

  // Tokenize; a prompt the tokenizer refuses fails only its own job.
  std::vector<PromptTokens> pos, neg;
  std::vector<size_t> tokenized;
  for (size_t j : active) {
    const Request& r = jobs[j].request;
    try {
      PromptTokens p = fam.tokenize(r.prompt);
      PromptTokens n;
      if (cfg) n = fam.tokenize(r.negative_prompt);
      pos.push_back(std::move(p));
      if (cfg) neg.push_back(std::move(n));
      tokenized.push_back(j);
    } catch (const std::exception& e) {
      results[j].error = {ErrorCode::kTokenizer, std::string("prompt: ") + e.what()};
    }
  }
  active = tokenized;
  if (active.empty()) return done();

  StageTimings timings;
  try {
    auto t0 = Clock::now();
    TextBatch text = fam.encode(pos);
    TextBatch neg_text;
    if (cfg) neg_text = fam.encode(neg);
    synchronize(device);  // stage boundaries only: no host sync inside the step loop
    timings.text_encode_s = since(t0);

    // Seeded noise per job on the CPU: a seed gives the same output whatever the batch.
    t0 = Clock::now();
    std::vector<at::Tensor> noise;
    std::vector<double> guidance;
    for (size_t j : active) {
      const Request& r = jobs[j].request;
      noise.push_back(fam.noise(r));
      guidance.push_back(r.guidance.value_or(m.defaults.guidance));
    }
    at::Tensor x = at::stack(noise).to(device);
    at::Tensor g = at::tensor(guidance, at::kFloat).to(device);
    const std::vector<double> sigmas = fam.sigmas(steps, r0);
    synchronize(device);
    timings.noise_s = since(t0);

    t0 = Clock::now();  // denoise_s: the step loop alone
    for (int64_t i = 0; i < steps; ++i) {
      // Cancellation and deadlines act here, before each step: a stopped job leaves the batch.
      std::vector<int64_t> keep;
      std::vector<size_t> still;
      const auto now = Clock::now();
      for (size_t k = 0; k < active.size(); ++k) {
        const size_t j = active[k];
        JobObserver* obs = jobs[j].observer;
        if (obs != nullptr && obs->cancelled()) {
          results[j].error = {ErrorCode::kCancelled, "cancelled at step " + std::to_string(i)};
        } else if (obs != nullptr && now >= obs->deadline()) {
          results[j].error = {ErrorCode::kDeadlineExceeded,
                              "deadline passed at step " + std::to_string(i)};
        } else {
          keep.push_back(static_cast<int64_t>(k));
          still.push_back(j);
        }
      }
      for (size_t j : active) {  // a stopped job reports the stages it ran (benchmarks use it)
        if (results[j].error.ok()) continue;
        results[j].timings = timings;
        results[j].timings.denoise_s = since(t0);
        results[j].attention = policy.describe();
      }
      if (still.empty()) {
        release_memory(device);
        return done();
      }
      if (still.size() < active.size()) {
        const at::Tensor idx = at::tensor(keep, at::kLong).to(device);
        x = x.index_select(0, idx);
        g = g.index_select(0, idx);
        text = text.select(keep, idx);
        if (cfg) neg_text = neg_text.select(keep, idx);
        active = still;
      }
      if (inject_device_error_step >= 0 && i >= inject_device_error_step) {
        TORCH_CHECK(false, "CUDA error: an illegal memory access was encountered (test hook)");
      }
      if (inject_hang_step == i) {
        inject_hang_step = -1;
        std::this_thread::sleep_for(std::chrono::duration<double>(inject_hang_s));
      }
      if (inject_oom_step == i) {
        inject_oom_step = -1;
        TORCH_CHECK_WITH(OutOfMemoryError, false, "injected out-of-memory (test hook)");
      }
      const StepAttention a = policy.at_step(i);
      const at::Tensor t = at::full({x.size(0)}, sigmas[i], x.options());
      // The step's velocity, the CFG pair combined: what a CUDA graph captures (step_graph.h).
      const StepFn step = [&](const StepInputs& s) {
        at::Tensor v = fam.velocity(s.x, s.text, s.t, s.g, a, r0);
        if (!cfg) return v;
        const at::Tensor vn = fam.velocity(s.x, s.neg, s.t, s.g, a, r0);
        std::vector<int64_t> shape(static_cast<size_t>(s.x.dim()), 1);
        shape[0] = -1;
        return vn + s.g.view(shape) * (v - vn);
      };
      if (options.profile_forwards) synchronize(device);
      const auto f0 = Clock::now();
      const at::Tensor v = graphs->velocity(step_key(a, x.size(0), text, neg_text),
                                            StepInputs{x, t, g, text, neg_text}, step);
      if (options.profile_forwards) {
        synchronize(device);
        timings.forward_s += since(f0);
      }
      x = x + (sigmas[i + 1] - sigmas[i]) * v;
      if (i == 0) {
        if (options.profile_forwards) synchronize(device);
        timings.first_step_s = since(t0);
        timings.first_forward_s = timings.forward_s;
      }
      for (size_t k = 0; k < active.size(); ++k) {
        const Job& job = jobs[active[k]];
        if (job.observer == nullptr) continue;
        const std::string pv = job.request.preview ? fam.preview(x[static_cast<int64_t>(k)],
                                                                 job.request, options.preview_side)
                                                   : std::string();
        job.observer->on_progress(i + 1, steps, pv);
      }
    }
    synchronize(device);
    timings.denoise_s = since(t0);

    t0 = Clock::now();
    const at::Tensor frames = fam.decode(x, r0, options.vae_tile_latent);  // [B, F, H, W, 3]
    timings.decode_s = since(t0);

    std::vector<std::pair<size_t, Request>> items;  // (job index, request) per output
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t j = active[k];
      const Request& r = jobs[j].request;
      Result& res = results[j];
      res.seed = r.seed;
      res.width = frames.size(3);
      res.height = frames.size(2);
      res.frames = frames.size(1);
      res.steps = steps;
      res.fps = r.fps;
      res.guidance = r.guidance.value_or(m.defaults.guidance);
      res.attention = policy.describe();
      res.timings = timings;
      items.emplace_back(j, r);
    }
    // Encoding is CPU work only: the caller may run it while the device runs the next batch.
    out.encode = [fam = &fam, frames, items = std::move(items)](std::vector<Result>& rs) {
      encode_outputs(*fam, frames, items, rs);
    };
  } catch (const std::exception& e) {
    // One handler for every error: TorchScript rethrows an op's c10::Error (out-of-memory or a
    // CUDA error inside a forward) as a plain std::runtime_error carrying its message.
    const auto* c10e = dynamic_cast<const c10::Error*>(&e);
    const std::string msg = c10e != nullptr ? c10e->what_without_backtrace() : e.what();
    if (is_out_of_memory(e)) {
      for (size_t j : active) {
        results[j].error = {ErrorCode::kOutOfMemory, "out of device memory: " + error_line(e)};
      }
      graphs->clear();  // their pools go back before the cache is emptied
      release_memory(device);
    } else {
      const bool sticky = sticky_device_error(msg);
      for (size_t j : active) {
        results[j].error = {sticky ? ErrorCode::kDeviceFailed : ErrorCode::kInternal, msg};
      }
      if (!sticky) release_memory(device);  // after a sticky error every CUDA call fails
    }
  }
  return done();
}

}  // namespace grat::engine
