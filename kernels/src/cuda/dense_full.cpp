// Pattern `full` on CUDA through PyTorch's SDPA (cuDNN / FlashAttention): every query reads
// the same keys, so padded text is handled by dropping the padding keys before the call
// instead of a boolean mask (which would push SDPA off its fast kernels).
#include <ATen/ATen.h>

#include <map>

#include "../index_cache.h"
#include "dense_full.h"

namespace grat::cuda {

at::Tensor full_attention_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const Layout& l, double scale) {
  // [B, N, H, D] -> SDPA's [B, H, N, D] (views: the head dim stays contiguous).
  auto heads_first = [](const at::Tensor& x) { return x.transpose(1, 2); };
  const int64_t batch = q.size(0), img = l.geom.image_tokens();
  auto keys_for = [&](const at::Tensor& x, int64_t valid) {
    if (valid == l.text_tokens) return x;
    const at::Tensor text = x.narrow(1, l.text_begin(), valid);
    const at::Tensor image = x.narrow(1, l.image_begin(), img);
    return l.text_first ? at::cat({text, image}, 1) : at::cat({image, text}, 1);
  };
  auto run = [&](const at::Tensor& qb, const at::Tensor& kb, const at::Tensor& vb) {
    return at::scaled_dot_product_attention(heads_first(qb), heads_first(kb), heads_first(vb),
                                            std::nullopt, 0.0, false, scale)
        .transpose(1, 2);
  };
  // Batch items grouped by their number of valid text tokens: one SDPA call per group.
  std::map<int64_t, std::vector<int64_t>> by_valid;
  for (int64_t b = 0; b < batch; ++b) by_valid[l.valid_for(b)].push_back(b);
  if (by_valid.size() == 1) {
    const int64_t valid = by_valid.begin()->first;
    return run(q, keys_for(k, valid), keys_for(v, valid)).contiguous();
  }
  at::Tensor out = at::empty_like(q, at::MemoryFormat::Contiguous);
  for (const auto& [valid, items] : by_valid) {
    // Cached per item list: no host copy after the first call (index_cache.h).
    const at::Tensor idx = detail::small_ints("sdpa_items", items, at::kLong, q.device());
    const at::Tensor kb = keys_for(k.index_select(0, idx), valid);
    const at::Tensor vb = keys_for(v.index_select(0, idx), valid);
    out.index_copy_(0, idx, run(q.index_select(0, idx), kb, vb));
  }
  return out;
}

}  // namespace grat::cuda
