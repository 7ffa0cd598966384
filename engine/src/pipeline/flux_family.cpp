// Flux images: T5 + CLIP text, 2x2-packed latents, the resolution-dependent shift, PNG / WebP.
#include <ATen/CPUGeneratorImpl.h>

#include <chrono>

#include "family.h"
#include "grat/engine/codec.h"
#include "grat/engine/engine.h"
#include "grat/engine/flow_match.h"
#include "grat/tokenizer/t5_tokenizer.h"

namespace grat::engine {
namespace {

// Flux packs 2x2 latent cells into one token: [B, C, 2h, 2w] <-> [B, h*w, 4C].
at::Tensor pack(const at::Tensor& lat) {
  const int64_t b = lat.size(0), c = lat.size(1), h = lat.size(2) / 2, w = lat.size(3) / 2;
  return lat.view({b, c, h, 2, w, 2}).permute({0, 2, 4, 1, 3, 5}).reshape({b, h * w, c * 4});
}

at::Tensor unpack(const at::Tensor& x, int64_t h, int64_t w, int64_t c) {
  const int64_t b = x.size(0);
  return x.view({b, h, w, c, 2, 2}).permute({0, 3, 1, 4, 2, 5}).reshape({b, c, h * 2, w * 2});
}

class FluxFamily : public Family {
 public:
  explicit FluxFamily(const Manifest& m) : m_(m) {}

  void load(c10::Device dev, c10::ScalarType dt) override {
    device = dev;
    dtype = dt;
    transformer_ = load_module(m_, "transformer", device, dtype);
    t5_ = load_module(m_, "t5", device, dtype);
    clip_ = load_module(m_, "clip", device, dtype);
    vae_ = load_module(m_, "vae_decoder", device, dtype);
    guidance_embeds = has_guidance_embedder(transformer_);
    try {
      tokenizer::T5Tokenizer::Options t5o;
      t5o.max_length = static_cast<int>(m_.text.t5_max_length);
      t5_tok_ = std::make_unique<tokenizer::T5Tokenizer>(
          tokenizer::T5Tokenizer::Load(m_.path("t5_tokenizer"), t5o));
      clip_tok_ = load_clip_tokenizer(m_);
    } catch (const std::exception& e) {
      throw EngineLoadError(std::string("engine: tokenizer files do not load: ") + e.what());
    }
  }

  Error validate(const Request& r) const override {
    if (r.frames != 1) {
      return {ErrorCode::kInvalidArgument, "frames must be 1 (or 0) for image model " + m_.name +
                                               "; got " + std::to_string(r.frames)};
    }
    if (r.fps != 0) {
      return {ErrorCode::kInvalidArgument, "fps must be 0 for image model " + m_.name +
                                               " (fps is for video models); got " +
                                               std::to_string(r.fps)};
    }
    if (r.format == OutputFormat::kMp4) {
      return {ErrorCode::kInvalidArgument, "format mp4 is for video models"};
    }
    return {};
  }

  std::vector<int64_t> token_grid(const Request& r) const override {
    const int64_t cell = m_.vae_scale * m_.patch;
    return {r.height / cell, r.width / cell};
  }

  PromptTokens tokenize(const std::string& prompt) const override {
    PromptTokens p;
    p.main = t5_tok_->Encode(prompt).ids;
    p.clip = clip_tok_->Encode(prompt).ids;
    return p;
  }

  int64_t count_prompt_tokens(const std::string& prompt) const override {
    try {
      return static_cast<int64_t>(t5_tok_->EncodePieces(prompt).size()) + 1;  // + </s>
    } catch (const std::exception&) {
      return -1;
    }
  }

  TextBatch encode(const std::vector<PromptTokens>& prompts) override {
    std::vector<std::vector<int64_t>> main, clip;
    for (const auto& p : prompts) {
      main.push_back(p.main);
      clip.push_back(p.clip);
    }
    TextBatch b;
    b.seq = t5_.forward({ids_tensor(main, device), c10::IValue()}).toTensor().to(dtype);
    b.pooled = clip_pooled(clip_, clip, device, dtype);
    return b;
  }

  at::Tensor noise(const Request& r) const override {
    const auto grid = token_grid(r);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(r.seed);
    const at::Tensor lat = at::randn({m_.latent_channels, 2 * grid[0], 2 * grid[1]}, gen,
                                     at::TensorOptions(at::kFloat));
    return pack(lat.unsqueeze(0))[0];
  }

  std::vector<double> sigmas(int64_t steps, const Request& r) const override {
    const auto grid = token_grid(r);
    return flux_sigmas(steps,
                       flux_mu(grid[0] * grid[1], m_.defaults.shift_base, m_.defaults.shift_max));
  }

  at::Tensor velocity(const at::Tensor& x, const TextBatch& text, const at::Tensor& t,
                      const at::Tensor& g, const StepAttention& a, const Request& r) override {
    const auto grid = token_grid(r);
    std::vector<c10::IValue> args = {x.to(dtype),
                                     text.seq,
                                     text.pooled,
                                     t,
                                     guidance_embeds ? c10::IValue(g) : c10::IValue(),
                                     grid[0],
                                     grid[1],
                                     a.pattern,
                                     a.group[0],
                                     a.group[1],
                                     a.radius};
    return transformer_.forward(args).toTensor().to(at::kFloat);
  }

  std::string preview(const at::Tensor& xk, const Request& r, int64_t side) const override {
    const auto grid = token_grid(r);
    const at::Tensor lat =
        unpack(xk.unsqueeze(0), grid[0], grid[1], m_.latent_channels)[0].narrow(0, 0, 3);
    return latent_preview_png(lat, side);
  }

  at::Tensor decode(const at::Tensor& x, const Request& r, int64_t tile_latent) override {
    const auto grid = token_grid(r);
    const int64_t side = std::max(2 * grid[0], 2 * grid[1]);
    const int64_t tile = tile_latent > 0 && side > tile_latent ? tile_latent : 0;
    return vae_
        .get_method("decode_image")(
            {unpack(x, grid[0], grid[1], m_.latent_channels).to(dtype), tile})
        .toTensor()
        .cpu()
        .contiguous()
        .unsqueeze(1);
  }

  EncodedOutput encode_output(const at::Tensor& frames, const Request& r) const override {
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor img = frames[0];
    const uint8_t* px = img.data_ptr<uint8_t>();
    const int w = static_cast<int>(img.size(1)), h = static_cast<int>(img.size(0));
    const bool webp = r.format == OutputFormat::kWebp;
    EncodedOutput out;
    out.bytes = webp ? encode_webp(px, w, h, 90.f) : encode_png(px, w, h);
    out.mime = webp ? "image/webp" : "image/png";
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

 private:
  const Manifest& m_;
  torch::jit::Module transformer_, t5_, clip_, vae_;
  std::unique_ptr<tokenizer::T5Tokenizer> t5_tok_;
  std::unique_ptr<tokenizer::ClipTokenizer> clip_tok_;
};

}  // namespace

std::unique_ptr<Family> make_flux_family(const Manifest& m) {
  return std::make_unique<FluxFamily>(m);
}

}  // namespace grat::engine
