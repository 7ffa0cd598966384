// What a model family (Flux images, HunyuanVideo clips) supplies to the one denoising loop of
// pipeline.cpp: its modules and tokenizers, its own request limits, text encoding, the latent
// layout, the schedule, the transformer call, previews, decode and output encoding. The loop
// (batching, cancellation, deadlines, progress, errors) is written once.
#pragma once

#include <torch/script.h>

#include <memory>
#include <string>
#include <vector>

#include "grat/engine/attention_policy.h"
#include "grat/engine/manifest.h"
#include "grat/engine/request.h"
#include "grat/tokenizer/clip_tokenizer.h"

namespace grat::engine {

// One prompt's token ids: the main text encoder's (T5 / LLM) and CLIP's.
struct PromptTokens {
  std::vector<int64_t> main, main_mask, clip;
  int64_t valid = -1;  // text tokens the transformer may read (-1: all)
};

// A batch's encoded text; select() keeps the items of a shrinking batch.
struct TextBatch {
  at::Tensor seq, pooled;
  std::vector<int64_t> valid;  // per item; empty: all valid
  TextBatch select(const std::vector<int64_t>& keep, const at::Tensor& idx) const;
};

// Output bytes of one job and the seconds they took.
struct EncodedOutput {
  std::string bytes, mime;
  double seconds = 0;
};

class Family {
 public:
  virtual ~Family() = default;
  // Loads the TorchScript modules and tokenizers; throws EngineLoadError naming the file.
  virtual void load(c10::Device device, c10::ScalarType dtype) = 0;
  // Limits of this kind (frames, fps, output format); the shared ones are Engine::validate's.
  virtual Error validate(const Request& r) const = 0;
  // Transformer tokens per axis: [h, w] (images) or [t, h, w] (video).
  virtual std::vector<int64_t> token_grid(const Request& r) const = 0;
  // Throws the tokenizer's error for a prompt it refuses.
  virtual PromptTokens tokenize(const std::string& prompt) const = 0;
  // The prompt's length in the main text encoder's tokens, as max_prompt_tokens counts them;
  // -1 when the tokenizer refuses the text.
  virtual int64_t count_prompt_tokens(const std::string& prompt) const = 0;
  virtual TextBatch encode(const std::vector<PromptTokens>& prompts) = 0;
  // One job's seeded starting noise in the transformer's input layout (float32, CPU).
  virtual at::Tensor noise(const Request& r) const = 0;
  // steps + 1 sigmas, the last 0.
  virtual std::vector<double> sigmas(int64_t steps, const Request& r) const = 0;
  // The transformer's velocity for the batch x (float32 result); r: any request of the batch
  // (they share a batch key).
  virtual at::Tensor velocity(const at::Tensor& x, const TextBatch& text, const at::Tensor& t,
                              const at::Tensor& guidance, const StepAttention& a,
                              const Request& r) = 0;
  // A small PNG of one item's latent (x[k]).
  virtual std::string preview(const at::Tensor& xk, const Request& r, int64_t side) const = 0;
  // uint8 frames [B, F, H, W, 3] on the CPU (F = 1 for images).
  virtual at::Tensor decode(const at::Tensor& x, const Request& r, int64_t tile_latent) = 0;
  // Encodes one job's frames [F, H, W, 3] (contiguous uint8).
  virtual EncodedOutput encode_output(const at::Tensor& frames, const Request& r) const = 0;

  c10::Device device = c10::kCPU;
  c10::ScalarType dtype = c10::kFloat;
  bool guidance_embeds = true;  // the transformer takes a guidance value
};

std::unique_ptr<Family> make_flux_family(const Manifest& m);
std::unique_ptr<Family> make_hunyuan_family(const Manifest& m);

// Shared helpers of the families.
torch::jit::Module load_module(const Manifest& m, const std::string& role, c10::Device device,
                               c10::ScalarType dtype);
// The bundle's CLIP tokenizer (clip_vocab, clip_merges; text.clip_max_length), which both
// families use. Throws what the tokenizer library throws.
std::unique_ptr<tokenizer::ClipTokenizer> load_clip_tokenizer(const Manifest& m);
at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows, c10::Device device);
// Guidance-distilled transformers (FLUX.1-dev, HunyuanVideo) carry a guidance embedder.
bool has_guidance_embedder(const torch::jit::Module& transformer);
// The pooled CLIP vector of a batch of CLIP ids [B, 77] -> [B, D] in `dtype`.
at::Tensor clip_pooled(torch::jit::Module& clip, const std::vector<std::vector<int64_t>>& ids,
                       c10::Device device, c10::ScalarType dtype);
// Three latent channels [3, h, w], min-max normalised, pooled to `side` pixels, as PNG.
std::string latent_preview_png(const at::Tensor& lat3, int64_t side);

}  // namespace grat::engine
