// Helpers shared by the model families (family.h).
#include "family.h"

#include "grat/engine/codec.h"
#include "grat/engine/engine.h"

namespace grat::engine {

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

std::unique_ptr<tokenizer::ClipTokenizer> load_clip_tokenizer(const Manifest& m) {
  tokenizer::ClipTokenizer::Options o;
  o.max_length = static_cast<int>(m.text.clip_max_length);
  return std::make_unique<tokenizer::ClipTokenizer>(
      tokenizer::ClipTokenizer::Load(m.path("clip_vocab"), m.path("clip_merges"), o));
}

at::Tensor ids_tensor(const std::vector<std::vector<int64_t>>& rows, c10::Device device) {
  std::vector<at::Tensor> ts;
  for (const auto& r : rows) ts.push_back(at::tensor(r, at::kLong));
  return at::stack(ts).to(device);
}

bool has_guidance_embedder(const torch::jit::Module& transformer) {
  for (const auto& p : transformer.named_parameters()) {
    if (p.name.rfind("time_text_embed.guidance_embedder.", 0) == 0) return true;
  }
  return false;
}

at::Tensor clip_pooled(torch::jit::Module& clip, const std::vector<std::vector<int64_t>>& ids,
                       c10::Device device, c10::ScalarType dtype) {
  return clip.forward({ids_tensor(ids, device), c10::IValue()})
      .toTuple()
      ->elements()[1]
      .toTensor()
      .to(dtype);
}

std::string latent_preview_png(const at::Tensor& lat3, int64_t side) {
  const int64_t h = lat3.size(1), w = lat3.size(2);
  const double scale = static_cast<double>(side) / static_cast<double>(std::max(h, w));
  const int64_t ph = std::max<int64_t>(1, static_cast<int64_t>(h * scale));
  const int64_t pw = std::max<int64_t>(1, static_cast<int64_t>(w * scale));
  const at::Tensor lat = at::adaptive_avg_pool2d(lat3.unsqueeze(0).to(at::kFloat), {ph, pw})[0];
  const at::Tensor lo = lat.amin({1, 2}, true), hi = lat.amax({1, 2}, true);
  const at::Tensor rgb = ((lat - lo) / (hi - lo).clamp_min(1e-6) * 255.0)
                             .round()
                             .to(at::kByte)
                             .permute({1, 2, 0})
                             .contiguous()
                             .cpu();
  return encode_png(rgb.data_ptr<uint8_t>(), static_cast<int>(pw), static_cast<int>(ph));
}

TextBatch TextBatch::select(const std::vector<int64_t>& keep, const at::Tensor& idx) const {
  TextBatch b;
  b.seq = seq.index_select(0, idx);
  b.pooled = pooled.index_select(0, idx);
  if (!valid.empty()) {
    for (int64_t k : keep) b.valid.push_back(valid[static_cast<size_t>(k)]);
  }
  return b;
}

}  // namespace grat::engine
