// grat::qk_norm_rope: the per-head RMSNorm of q (or k) and Flux's RoPE, for one stream or two
// (text and image, each with its own norm weight) written as one [B, N1 + N2, H, D] tensor, so
// the model's torch.cat of the streams goes away. CPU (the reference) and Meta here; CUDA in
// cuda/fused_qk.cu.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "fused.h"
#include "grat/ops.h"
#include "internal.h"
#include "rope.h"

namespace grat {

namespace {

constexpr const char* kOp = "qk_norm_rope";

// One stream's q/k and norm weight; `first` is x (the first stream) itself or the first stream
// the second must match.
void check_stream(const char* name, const at::Tensor& x, const char* wname, const at::Tensor& w,
                  const at::Tensor& first, bool is_first) {
  TORCH_CHECK(x.dim() == 4, "grat: qk_norm_rope ", name,
              " must be [batch, tokens, heads, head_dim]; got ", detail::num(x.dim()), " dims");
  if (is_first) {
    detail::check_float_dtype(kOp, name, x);
    TORCH_CHECK(x.size(3) % 2 == 0, "grat: qk_norm_rope head_dim must be even; got ",
                detail::num(x.size(3)));
  } else {
    TORCH_CHECK(
        x.size(0) == first.size(0) && x.size(2) == first.size(2) && x.size(3) == first.size(3),
        "grat: qk_norm_rope x2 must be [", detail::num(first.size(0)), ", tokens, ",
        detail::num(first.size(2)), ", ", detail::num(first.size(3)), "] like x; got ",
        detail::dims(x.sizes()));
    detail::check_same_kind(kOp, name, x, first);
  }
  TORCH_CHECK(w.dim() == 1 && w.size(0) == first.size(3), "grat: qk_norm_rope ", wname,
              " must be [head_dim] = [", detail::num(first.size(3)), "]; got ",
              detail::dims(w.sizes()));
  detail::check_same_kind(kOp, wname, w, first);
}

}  // namespace

void check_qk_norm_rope_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                               const at::Tensor& sin, double eps,
                               const std::optional<at::Tensor>& x2,
                               const std::optional<at::Tensor>& weight2) {
  TORCH_CHECK(eps >= 0, "grat: qk_norm_rope eps must be >= 0; got ", detail::num(eps));
  check_stream("x", x, "weight", weight, x, true);
  TORCH_CHECK(x2.has_value() == weight2.has_value(),
              "grat: qk_norm_rope x2 and weight2 come together; got ",
              x2.has_value() ? "x2 without weight2" : "weight2 without x2");
  const int64_t tokens = x.size(1) + (x2 ? x2->size(1) : 0), dim = x.size(3);
  if (x2) check_stream("x2", *x2, "weight2", *weight2, x, false);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"cos", &cos},
                                std::pair<const char*, const at::Tensor*>{"sin", &sin}}) {
    TORCH_CHECK(t->dim() == 2 && t->size(0) == tokens && t->size(1) == dim, "grat: qk_norm_rope ",
                name, " must be [tokens, head_dim] = [", detail::num(tokens), ", ",
                detail::num(dim), "]; got ", detail::dims(t->sizes()));
    TORCH_CHECK(t->scalar_type() == at::kFloat, "grat: qk_norm_rope ", name,
                " must be float32; got ", detail::dtype_name(t->scalar_type()));
    TORCH_CHECK(t->device() == x.device(), "grat: qk_norm_rope ", name, " must be on x's device (",
                x.device().str(), "); got ", t->device().str());
  }
}

at::Tensor qk_norm_rope_reference(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& cos, const at::Tensor& sin, double eps,
                                  const std::optional<at::Tensor>& x2,
                                  const std::optional<at::Tensor>& weight2) {
  check_qk_norm_rope_inputs(x, weight, cos, sin, eps, x2, weight2);
  const auto norm = [&](const at::Tensor& t, const at::Tensor& w) {
    return at::rms_norm(t.to(at::kFloat), {t.size(3)}, w.to(at::kFloat), eps);
  };
  at::Tensor y = norm(x, weight);
  if (x2) y = at::cat({y, norm(*x2, *weight2)}, 1);
  if (y.numel() == 0) return y.to(x.scalar_type());        // rope's pair reshape needs an element
  return rope_reference(y, cos, sin).to(x.scalar_type());  // float32 rotation, one rounding
}

namespace {

at::Tensor qk_norm_rope_meta(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                             const at::Tensor& sin, double eps, const std::optional<at::Tensor>& x2,
                             const std::optional<at::Tensor>& weight2) {
  check_qk_norm_rope_inputs(x, weight, cos, sin, eps, x2, weight2);
  const int64_t tokens = x.size(1) + (x2 ? x2->size(1) : 0);
  return at::empty({x.size(0), tokens, x.size(2), x.size(3)}, x.options());
}

}  // namespace

at::Tensor qk_norm_rope(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                        const at::Tensor& sin, double eps, const std::optional<at::Tensor>& x2,
                        const std::optional<at::Tensor>& weight2) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("grat::qk_norm_rope", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, double, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&)>();
  return op.call(x, weight, cos, sin, eps, x2, weight2);
}

}  // namespace grat

TORCH_LIBRARY_FRAGMENT(grat, m) {
  m.def(
      "qk_norm_rope(Tensor x, Tensor weight, Tensor cos, Tensor sin, float eps=1e-06, "
      "Tensor? x2=None, Tensor? weight2=None) -> Tensor");
}
TORCH_LIBRARY_IMPL(grat, CPU, m) { m.impl("qk_norm_rope", &grat::qk_norm_rope_reference); }
TORCH_LIBRARY_IMPL(grat, Meta, m) { m.impl("qk_norm_rope", &grat::qk_norm_rope_meta); }
