#include <ATen/ATen.h>

#include <cmath>

#include "internal.h"

namespace grat::detail {

at::Tensor grouped_permutation(const Layout& l) {
  const int64_t n = l.total_tokens(), base = l.image_begin();
  at::Tensor perm = at::arange(n, at::kLong);
  int64_t* p = perm.data_ptr<int64_t>();
  const Geometry& g = l.geom;
  const int64_t img = g.image_tokens();
  for (int64_t r = 0; r < img; ++r) p[base + g.grouped_index(r)] = base + r;
  return perm;
}

at::Tensor inverse_permutation(const at::Tensor& perm) {
  at::Tensor inv = at::empty_like(perm);
  inv.index_put_({perm}, at::arange(perm.numel(), perm.options()));
  return inv;
}

double resolve_scale(const at::Tensor& q, std::optional<double> scale) {
  if (scale.has_value()) {
    TORCH_CHECK(std::isfinite(*scale) && *scale > 0, "grat: scale must be finite and > 0; got ",
                num(*scale));
    return *scale;
  }
  return 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
}

void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Layout& l) {
  TORCH_CHECK(q.dim() == 4, "grat: q must be [batch, tokens, heads, head_dim]; got ", num(q.dim()),
              " dims");
  TORCH_CHECK(k.sizes() == q.sizes(), "grat: k must have q's shape ", dims(q.sizes()), "; got ",
              dims(k.sizes()));
  TORCH_CHECK(v.sizes() == q.sizes(), "grat: v must have q's shape ", dims(q.sizes()), "; got ",
              dims(v.sizes()), " (head dims of q, k and v must match)");
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "grat: q, k, v must share one dtype; got ", dtype_name(q.scalar_type()), ", ",
              dtype_name(k.scalar_type()), ", ", dtype_name(v.scalar_type()));
  const auto dt = q.scalar_type();
  TORCH_CHECK(dt == at::kBFloat16 || dt == at::kHalf || dt == at::kFloat || dt == at::kDouble,
              "grat: dtype must be bfloat16, float16, float32 or float64; got ", dtype_name(dt));
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(),
              "grat: q, k, v must be on one device; got ", q.device().str(), ", ", k.device().str(),
              ", ", v.device().str());
  TORCH_CHECK(q.size(2) >= 1, "grat: heads must be >= 1; got ", num(q.size(2)));
  TORCH_CHECK(q.size(3) >= 1, "grat: head_dim must be >= 1; got ", num(q.size(3)));
  TORCH_CHECK(q.size(1) == l.total_tokens(), "grat: q has ", num(q.size(1)),
              " tokens but the layout has text_tokens + prod(grid) = ", num(l.text_tokens), " + ",
              num(l.geom.image_tokens()), " = ", num(l.total_tokens()));
  check_valid_text(l, q.size(0));
}

}  // namespace grat::detail
