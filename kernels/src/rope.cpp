// grat::rope: rotary position embedding of [B, N, H, D] q or k by per-token cos/sin [N, D]
// (pairs (2i, 2i+1) rotate as one complex number), computed in float32 and rounded once to the
// input dtype, as diffusers' apply_rotary_emb does. CPU and Meta here; CUDA in cuda/rope.cu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "internal.h"
#include "rope.h"

namespace grat {

void check_rope_inputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  TORCH_CHECK(x.dim() == 4, "grat: rope x must be [batch, tokens, heads, head_dim]; got ",
              detail::num(x.dim()), " dims");
  TORCH_CHECK(x.size(3) % 2 == 0, "grat: rope head_dim must be even; got ", detail::num(x.size(3)));
  for (const at::Tensor* t : {&cos, &sin}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == x.size(1) && t->size(1) == x.size(3),
                "grat: rope cos and sin must be [tokens, head_dim] = [", detail::num(x.size(1)),
                ", ", detail::num(x.size(3)), "]");
    TORCH_CHECK(t->scalar_type() == at::kFloat, "grat: rope cos and sin must be float32");
    TORCH_CHECK(t->device() == x.device(), "grat: rope cos, sin and x must share a device");
  }
}

at::Tensor rope_reference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(x, cos, sin);
  const at::Tensor c = cos.unsqueeze(0).unsqueeze(2), s = sin.unsqueeze(0).unsqueeze(2);
  const at::Tensor pairs = x.reshape({x.size(0), x.size(1), x.size(2), -1, 2});
  const at::Tensor rotated = at::stack({-pairs.select(4, 1), pairs.select(4, 0)}, -1).flatten(3);
  return (x.to(at::kFloat) * c + rotated.to(at::kFloat) * s).to(x.scalar_type());
}

namespace {

at::Tensor rope_meta(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(x, cos, sin);
  return at::empty_like(x, at::MemoryFormat::Contiguous);
}

}  // namespace
}  // namespace grat

TORCH_LIBRARY_FRAGMENT(grat, m) { m.def("rope(Tensor x, Tensor cos, Tensor sin) -> Tensor"); }
TORCH_LIBRARY_IMPL(grat, CPU, m) { m.impl("rope", &grat::rope_reference); }
TORCH_LIBRARY_IMPL(grat, Meta, m) { m.impl("rope", &grat::rope_meta); }
