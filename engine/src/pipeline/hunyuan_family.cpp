// HunyuanVideo clips: Llama text (prompt template, cropped, padded text masked through
// valid_text) + CLIP pooled, 3-D latents [16, t, h, w], the fixed flow shift, embedded guidance,
// the causal 3-D VAE (tiled / chunked) and H.264 MP4.
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>

#include "family.h"
#include "grat/engine/codec.h"
#include "grat/engine/engine.h"
#include "grat/engine/flow_match.h"
#include "grat/tokenizer/llama_tokenizer.h"

namespace grat::engine {
namespace {

class HunyuanFamily : public Family {
 public:
  explicit HunyuanFamily(const Manifest& m) : m_(m) {}

  void load(c10::Device dev, c10::ScalarType dt) override {
    device = dev;
    dtype = dt;
    transformer_ = load_module(m_, "transformer", device, dtype);
    llm_ = load_module(m_, "llm", device, dtype);
    clip_ = load_module(m_, "clip", device, dtype);
    vae_ = load_module(m_, "vae_decoder", device, dtype);
    guidance_embeds = has_guidance_embedder(transformer_);
    const auto slot = m_.text.llm_template.find("{}");
    prefix_ = m_.text.llm_template.substr(0, slot);
    suffix_ = m_.text.llm_template.substr(slot + 2);
    try {
      tokenizer::LlamaTokenizer::Options lo;
      lo.max_length = static_cast<int>(m_.text.llm_max_length + m_.text.llm_crop_start);
      llm_tok_ = std::make_unique<tokenizer::LlamaTokenizer>(
          tokenizer::LlamaTokenizer::Load(m_.path("llm_tokenizer"), lo));
      clip_tok_ = load_clip_tokenizer(m_);
    } catch (const std::exception& e) {
      throw EngineLoadError(std::string("engine: tokenizer files do not load: ") + e.what());
    }
  }

  Error validate(const Request& r) const override {
    const auto invalid = [](const std::string& msg) {
      return Error{ErrorCode::kInvalidArgument, msg};
    };
    const int64_t f = r.frames, max_f = m_.limits.max_frames, ts = m_.vae_temporal_scale;
    if (f < 1 || (f - 1) % ts != 0 || f > max_f) {
      return invalid("frames must be " + std::to_string(ts) + "k+1 in [1, " +
                     std::to_string(max_f) + "] (or 0 for the model's default " +
                     std::to_string(m_.defaults.frames) + "); got " + std::to_string(f));
    }
    if (f * r.width * r.height > m_.limits.max_video_pixels) {
      return invalid("frames x width x height must be at most " +
                     std::to_string(m_.limits.max_video_pixels) + " (max_video_pixels); got " +
                     std::to_string(f) + " x " + std::to_string(r.width) + " x " +
                     std::to_string(r.height) + " = " + std::to_string(f * r.width * r.height));
    }
    if (r.fps < 0 || r.fps > 60) {
      return invalid("fps must be in [1, 60] (or 0 for the model's default " +
                     std::to_string(m_.defaults.fps) + "); got " + std::to_string(r.fps));
    }
    if (r.format != OutputFormat::kMp4) {
      return invalid("format must be mp4 for video model " + m_.name);
    }
    if (!video_encoding_available()) {
      return invalid("this build has no MP4 encoder (GRAT_WITH_VIDEO off)");
    }
    return {};
  }

  std::vector<int64_t> token_grid(const Request& r) const override {
    const int64_t cell = m_.vae_scale * m_.patch;
    return {latent_frames(r), r.height / cell, r.width / cell};
  }

  PromptTokens tokenize(const std::string& prompt) const override {
    PromptTokens p;
    // diffusers' HunyuanVideoPipeline: template.format(prompt), padded to max + crop, then the
    // template's first crop_start tokens cut from the encoder's output.
    const tokenizer::TokenIds ids = llm_tok_->Encode(prefix_ + prompt + suffix_);
    p.main = ids.ids;
    p.main_mask = ids.attention_mask;
    p.valid = std::clamp<int64_t>(ids.length - m_.text.llm_crop_start, 0, m_.text.llm_max_length);
    p.clip = clip_tok_->Encode(prompt).ids;
    return p;
  }

  // The prompt's own tokens (the template's are not the client's to spend).
  int64_t count_prompt_tokens(const std::string& prompt) const override {
    try {
      return static_cast<int64_t>(llm_tok_->EncodePieces(prompt).size());
    } catch (const std::exception&) {
      return -1;
    }
  }

  TextBatch encode(const std::vector<PromptTokens>& prompts) override {
    std::vector<std::vector<int64_t>> main, mask, clip;
    TextBatch b;
    for (const auto& p : prompts) {
      main.push_back(p.main);
      mask.push_back(p.main_mask);
      clip.push_back(p.clip);
      b.valid.push_back(p.valid);
    }
    const at::Tensor hidden =
        llm_.forward({ids_tensor(main, device), ids_tensor(mask, device)}).toTensor();
    b.seq = hidden.narrow(1, m_.text.llm_crop_start, m_.text.llm_max_length).to(dtype);
    b.pooled = clip_pooled(clip_, clip, device, dtype);
    return b;
  }

  at::Tensor noise(const Request& r) const override {
    const auto grid = token_grid(r);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(r.seed);
    return at::randn({m_.latent_channels, grid[0], grid[1] * m_.patch, grid[2] * m_.patch}, gen,
                     at::TensorOptions(at::kFloat));
  }

  std::vector<double> sigmas(int64_t steps, const Request&) const override {
    return shifted_sigmas(steps, m_.defaults.shift);
  }

  at::Tensor velocity(const at::Tensor& x, const TextBatch& text, const at::Tensor& t,
                      const at::Tensor& g, const StepAttention& a, const Request&) override {
    const bool all_valid = std::all_of(text.valid.begin(), text.valid.end(),
                                       [&](int64_t v) { return v == text.seq.size(1); });
    c10::IValue valid;  // None: every text token valid
    if (!all_valid) valid = text.valid;
    std::vector<c10::IValue> args = {x.to(dtype),
                                     text.seq,
                                     text.pooled,
                                     t,
                                     guidance_embeds ? c10::IValue(g) : c10::IValue(),
                                     a.pattern,
                                     a.group[0],
                                     a.group[1],
                                     a.group[2],
                                     a.radius,
                                     valid};
    return transformer_.forward(args).toTensor().to(at::kFloat);
  }

  std::string preview(const at::Tensor& xk, const Request&, int64_t side) const override {
    return latent_preview_png(xk.select(1, xk.size(1) / 2).narrow(0, 0, 3), side);  // middle
  }

  at::Tensor decode(const at::Tensor& x, const Request&, int64_t) override {
    return vae_.get_method("decode_video")({x.to(dtype), true}).toTensor().cpu().contiguous();
  }

  EncodedOutput encode_output(const at::Tensor& frames, const Request& r) const override {
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor f = frames.contiguous();
    EncodedOutput out;
    out.bytes = encode_mp4(f.data_ptr<uint8_t>(), static_cast<size_t>(f.numel()),
                           static_cast<int>(f.size(0)), static_cast<int>(f.size(2)),
                           static_cast<int>(f.size(1)),
                           static_cast<int>(r.fps));  // resolved by the plan
    out.mime = "video/mp4";
    out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return out;
  }

 private:
  int64_t latent_frames(const Request& r) const {
    return (r.frames - 1) / m_.vae_temporal_scale + 1;
  }

  const Manifest& m_;
  torch::jit::Module transformer_, llm_, clip_, vae_;
  std::unique_ptr<tokenizer::LlamaTokenizer> llm_tok_;
  std::unique_ptr<tokenizer::ClipTokenizer> clip_tok_;
  std::string prefix_, suffix_;
};

}  // namespace

std::unique_ptr<Family> make_hunyuan_family(const Manifest& m) {
  return std::make_unique<HunyuanFamily>(m);
}

}  // namespace grat::engine
