// The denoising pipeline of Engine::generate (see engine.h).
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "engine_impl.h"
#include "grat/engine/attention_policy.h"
#include "grat/engine/codec.h"
#include "grat/engine/flow_match.h"
#include "grat/tokenizer/tokenizer_error.h"

#if GRAT_HAVE_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace grat::engine {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Flux packs 2x2 latent cells into one token: [B, C, 2h, 2w] <-> [B, h*w, 4C].
at::Tensor pack(const at::Tensor& lat) {
  const int64_t b = lat.size(0), c = lat.size(1), h = lat.size(2) / 2, w = lat.size(3) / 2;
  return lat.view({b, c, h, 2, w, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({b, h * w, c * 4});
}

at::Tensor unpack(const at::Tensor& x, int64_t h, int64_t w, int64_t c) {
  const int64_t b = x.size(0);
  return x.view({b, h, w, c, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({b, c, h * 2, w * 2});
}

// Cheap preview: three latent channels, min-max normalised, pooled to `side` pixels.
std::string preview_png(const at::Tensor& x1, int64_t h, int64_t w, int64_t c, int64_t side) {
  at::Tensor lat = unpack(x1.unsqueeze(0), h, w, c).narrow(1, 0, 3);
  const double scale = static_cast<double>(side) / static_cast<double>(std::max(2 * h, 2 * w));
  const int64_t ph = std::max<int64_t>(1, static_cast<int64_t>(2 * h * scale));
  const int64_t pw = std::max<int64_t>(1, static_cast<int64_t>(2 * w * scale));
  lat = at::adaptive_avg_pool2d(lat.to(at::kFloat), {ph, pw})[0];
  const at::Tensor lo = lat.amin({1, 2}, true), hi = lat.amax({1, 2}, true);
  const at::Tensor rgb = ((lat - lo) / (hi - lo).clamp_min(1e-6) * 255.0)
                             .round()
                             .to(at::kByte)
                             .permute({1, 2, 0})
                             .contiguous()
                             .cpu();
  return encode_png(rgb.data_ptr<uint8_t>(), static_cast<int>(pw), static_cast<int>(ph));
}

at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows, c10::Device device) {
  std::vector<at::Tensor> ts;
  for (const auto& r : rows) ts.push_back(at::tensor(r, at::kLong));
  return at::stack(ts).to(device);
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
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::emptyCache();
#else
  (void)device;
#endif
}

}  // namespace

std::vector<Result> Engine::Impl::run(const std::vector<Job>& jobs, std::vector<size_t> active,
                                      std::vector<Result>& results) {
  if (active.empty()) return results;
  c10::InferenceMode inference;
#if GRAT_HAVE_CUDA
  // Work goes to this engine's stream: engines on other devices/threads never serialise.
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
  if (stream) stream_guard.emplace(*stream);
#endif
  const Request& r0 = jobs[active[0]].request;
  const Manifest& m = manifest;
  const int64_t steps = r0.steps > 0 ? r0.steps : m.defaults.steps;
  const int64_t cell = m.vae_scale * m.patch, gh = r0.height / cell, gw = r0.width / cell;
  const int64_t ch = m.latent_channels;
  const AttentionPolicy policy(r0.attention, {gh, gw}, m.grat.pattern, m.grat.group, m.grat.radius);
  const bool cfg = m.defaults.true_cfg;

  // Tokenize; a prompt the tokenizer refuses fails only its own job.
  std::vector<std::vector<int64_t>> t5_ids, clip_ids, t5_neg, clip_neg;
  std::vector<size_t> tokenized;
  for (size_t j : active) {
    const Request& r = jobs[j].request;
    try {
      t5_ids.push_back(t5_tok->Encode(r.prompt).ids);
      clip_ids.push_back(clip_tok->Encode(r.prompt).ids);
      if (cfg) {
        t5_neg.push_back(t5_tok->Encode(r.negative_prompt).ids);
        clip_neg.push_back(clip_tok->Encode(r.negative_prompt).ids);
      }
      tokenized.push_back(j);
    } catch (const std::exception& e) {
      results[j].error = {ErrorCode::kTokenizer, std::string("prompt: ") + e.what()};
      t5_ids.resize(tokenized.size());
      clip_ids.resize(tokenized.size());
      t5_neg.resize(cfg ? tokenized.size() : 0);
      clip_neg.resize(cfg ? tokenized.size() : 0);
    }
  }
  active = tokenized;
  if (active.empty()) return results;

  StageTimings timings;
  try {
    auto t0 = Clock::now();
    auto encode = [&](const std::vector<std::vector<int64_t>>& t5r,
                      const std::vector<std::vector<int64_t>>& clipr) {
      at::Tensor seq = t5.forward({ids_tensor(t5r, device), c10::IValue()}).toTensor();
      at::Tensor pooled = clip.forward({ids_tensor(clipr, device), c10::IValue()})
                              .toTuple()
                              ->elements()[1]
                              .toTensor();
      return std::make_pair(seq.to(dtype), pooled.to(dtype));
    };
    auto [seq, pooled] = encode(t5_ids, clip_ids);
    at::Tensor neg_seq, neg_pooled;
    if (cfg) std::tie(neg_seq, neg_pooled) = encode(t5_neg, clip_neg);
    synchronize(device);  // stage boundaries only: no host sync inside the step loop
    timings.text_encode_s = since(t0);

    // Seeded noise per job on the CPU: a seed gives the same image whatever the batch.
    t0 = Clock::now();
    std::vector<at::Tensor> noise;
    std::vector<double> guidance;
    for (size_t j : active) {
      const Request& r = jobs[j].request;
      auto gen = at::make_generator<at::CPUGeneratorImpl>(r.seed);
      noise.push_back(at::randn({ch, 2 * gh, 2 * gw}, gen, at::TensorOptions(at::kFloat)));
      guidance.push_back(r.guidance.value_or(m.defaults.guidance));
    }
    at::Tensor x = pack(at::stack(noise)).to(device);
    at::Tensor g = at::tensor(guidance, at::kFloat).to(device);
    const std::vector<double> sigmas =
        flux_sigmas(steps, flux_mu(gh * gw, m.defaults.shift_base, m.defaults.shift_max));
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
      if (still.empty()) {
        release_memory(device);
        return results;
      }
      if (still.size() < active.size()) {
        const at::Tensor idx = at::tensor(keep, at::kLong).to(device);
        x = x.index_select(0, idx);
        g = g.index_select(0, idx);
        seq = seq.index_select(0, idx);
        pooled = pooled.index_select(0, idx);
        if (cfg) {
          neg_seq = neg_seq.index_select(0, idx);
          neg_pooled = neg_pooled.index_select(0, idx);
        }
        active = still;
      }
      if (inject_oom_step == i) {
        inject_oom_step = -1;
        TORCH_CHECK_WITH(OutOfMemoryError, false, "injected out-of-memory (test hook)");
      }
      const StepAttention a = policy.at_step(i);
      const at::Tensor t = at::full({x.size(0)}, sigmas[i], x.options());
      auto velocity = [&](const at::Tensor& s, const at::Tensor& p) {
        std::vector<c10::IValue> args = {x.to(dtype),
                                         s,
                                         p,
                                         t,
                                         guidance_embeds ? c10::IValue(g) : c10::IValue(),
                                         gh,
                                         gw,
                                         a.pattern,
                                         a.group[0],
                                         a.group[1],
                                         a.radius};
        if (!options.profile_forwards) return transformer.forward(args).toTensor().to(at::kFloat);
        synchronize(device);
        const auto f0 = Clock::now();
        at::Tensor out = transformer.forward(args).toTensor();
        synchronize(device);
        timings.forward_s += since(f0);
        return out.to(at::kFloat);
      };
      at::Tensor v = velocity(seq, pooled);
      if (cfg) {
        const at::Tensor vn = velocity(neg_seq, neg_pooled);
        v = vn + g.view({-1, 1, 1}) * (v - vn);
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
        const std::string pv = job.request.preview ? preview_png(x[static_cast<int64_t>(k)], gh, gw,
                                                                 ch, options.preview_side)
                                                   : std::string();
        job.observer->on_progress(i + 1, steps, pv);
      }
    }
    synchronize(device);
    timings.denoise_s = since(t0);

    t0 = Clock::now();
    const int64_t side = std::max(2 * gh, 2 * gw);
    const int64_t tile =
        options.vae_tile_latent > 0 && side > options.vae_tile_latent ? options.vae_tile_latent : 0;
    const at::Tensor images =
        vae.get_method("decode_image")({unpack(x, gh, gw, ch).to(dtype), tile})
            .toTensor()
            .cpu()
            .contiguous();
    timings.decode_s = since(t0);

    // Encoding is CPU work that leaves the device idle: the images of a batch encode in
    // parallel, one thread each (libpng / libwebp state is per call).
    struct Encoded {
      std::string bytes;
      double seconds;
    };
    std::vector<std::future<Encoded>> encoded;
    for (size_t k = 0; k < active.size(); ++k) {
      const at::Tensor img = images[static_cast<int64_t>(k)];
      const uint8_t* px = img.data_ptr<uint8_t>();
      const int w = static_cast<int>(img.size(1)), h = static_cast<int>(img.size(0));
      const bool webp = jobs[active[k]].request.format == OutputFormat::kWebp;
      encoded.push_back(std::async(
          active.size() > 1 ? std::launch::async : std::launch::deferred, [px, w, h, webp] {
            const auto te = Clock::now();
            std::string b = webp ? encode_webp(px, w, h, 90.f) : encode_png(px, w, h);
            return Encoded{std::move(b), since(te)};
          }));
    }
    for (size_t k = 0; k < active.size(); ++k) {
      const size_t j = active[k];
      const Request& r = jobs[j].request;
      Encoded e = encoded[k].get();
      Result& res = results[j];
      res.bytes = std::move(e.bytes);
      res.mime = r.format == OutputFormat::kWebp ? "image/webp" : "image/png";
      res.seed = r.seed;
      res.width = static_cast<int>(images.size(2));
      res.height = static_cast<int>(images.size(1));
      res.frames = 1;
      res.steps = steps;
      res.guidance = r.guidance.value_or(m.defaults.guidance);
      res.attention = policy.describe();
      res.timings = timings;
      res.timings.encode_s = e.seconds;
    }
  } catch (const c10::OutOfMemoryError& e) {
    for (size_t j : active) {
      results[j].error = {ErrorCode::kOutOfMemory,
                          std::string("out of device memory: ") + e.what_without_backtrace()};
    }
    release_memory(device);
  } catch (const c10::Error& e) {
    for (size_t j : active) results[j].error = {ErrorCode::kInternal, e.what_without_backtrace()};
    release_memory(device);
  } catch (const std::exception& e) {
    for (size_t j : active) results[j].error = {ErrorCode::kInternal, e.what()};
    release_memory(device);
  }
  return results;
}

}  // namespace grat::engine
