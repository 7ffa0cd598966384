// grat::adaln, grat::gated_residual, grat::gated_residual_adaln: the AdaLN modulation and gated
// residuals of a DiT block ([B, N, C] activations, per-sample [B, C] modulation). Schemas,
// CPU (the reference) and Meta here; CUDA in cuda/fused_norm.cu.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "fused.h"
#include "grat/ops.h"
#include "internal.h"

namespace grat {

void detail::check_float_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto dt = t.scalar_type();
  TORCH_CHECK(dt == at::kFloat || dt == at::kBFloat16 || dt == at::kHalf, "grat: ", op, " ", name,
              " must be float32, bfloat16 or float16; got ", detail::dtype_name(dt));
}

void detail::check_same_kind(const char* op, const char* name, const at::Tensor& t,
                             const at::Tensor& like) {
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "grat: ", op, " ", name,
              " must have x's dtype (", detail::dtype_name(like.scalar_type()), "); got ",
              detail::dtype_name(t.scalar_type()));
  TORCH_CHECK(t.device() == like.device(), "grat: ", op, " ", name, " must be on x's device (",
              like.device().str(), "); got ", t.device().str());
}

void check_activation(const char* op, const char* name, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "grat: ", op, " ", name, " must be [batch, tokens, channels]; got ",
              detail::num(x.dim()), " dims");
  detail::check_float_dtype(op, name, x);
  TORCH_CHECK(x.size(2) > 0, "grat: ", op, " ", name, " has no channels");
}

namespace {

void check_rows(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.sizes() == x.sizes(), "grat: ", op, " ", name, " must have x's shape ",
              detail::dims(x.sizes()), "; got ", detail::dims(t.sizes()));
  detail::check_same_kind(op, name, t, x);
}

void check_modulation(const char* op, const char* name, const at::Tensor& m, const at::Tensor& x) {
  TORCH_CHECK(m.dim() == 2 && m.size(0) == x.size(0) && m.size(1) == x.size(2), "grat: ", op, " ",
              name, " must be [batch, channels] = [", detail::num(x.size(0)), ", ",
              detail::num(x.size(2)), "]; got ", detail::dims(m.sizes()));
  detail::check_same_kind(op, name, m, x);
}

}  // namespace

void check_adaln_inputs(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& shift, double eps) {
  check_activation(op, "x", x);
  check_modulation(op, "scale", scale, x);
  check_modulation(op, "shift", shift, x);
  TORCH_CHECK(eps >= 0, "grat: ", op, " eps must be >= 0; got ", detail::num(eps));
}

void check_residual_inputs(const char* op, const at::Tensor& x, const at::Tensor& y,
                           const at::Tensor& gate) {
  check_activation(op, "x", x);
  check_rows(op, "y", y, x);
  check_modulation(op, "gate", gate, x);
}

namespace {

at::Tensor adaln_cpu(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                     double eps) {
  return adaln_reference(x, scale, shift, eps);
}

at::Tensor adaln_meta(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                      double eps) {
  check_adaln_inputs("adaln", x, scale, shift, eps);
  return at::empty(x.sizes(), x.options());
}

at::Tensor gated_residual_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  return gated_residual_reference(x, y, gate);
}

at::Tensor gated_residual_meta(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  check_residual_inputs("gated_residual", x, y, gate);
  return at::empty(x.sizes(), x.options());
}

std::tuple<at::Tensor, at::Tensor> gated_residual_adaln_cpu(const at::Tensor& x,
                                                            const at::Tensor& y,
                                                            const at::Tensor& gate,
                                                            const at::Tensor& scale,
                                                            const at::Tensor& shift, double eps) {
  check_gated_residual_adaln_inputs(x, y, gate, scale, shift, eps);
  return gated_residual_adaln_reference(x, y, gate, scale, shift, eps);
}

std::tuple<at::Tensor, at::Tensor> gated_residual_adaln_meta(const at::Tensor& x,
                                                             const at::Tensor& y,
                                                             const at::Tensor& gate,
                                                             const at::Tensor& scale,
                                                             const at::Tensor& shift, double eps) {
  check_gated_residual_adaln_inputs(x, y, gate, scale, shift, eps);
  return {at::empty(x.sizes(), x.options()), at::empty(x.sizes(), x.options())};
}

}  // namespace

at::Tensor adaln_reference(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           double eps) {
  check_adaln_inputs("adaln", x, scale, shift, eps);
  const at::Tensor n = at::layer_norm(x.to(at::kFloat), {x.size(2)}, {}, {}, eps);
  const at::Tensor s = scale.to(at::kFloat).unsqueeze(1), b = shift.to(at::kFloat).unsqueeze(1);
  return (n * (1 + s) + b).to(x.scalar_type());
}

at::Tensor gated_residual_reference(const at::Tensor& x, const at::Tensor& y,
                                    const at::Tensor& gate) {
  check_residual_inputs("gated_residual", x, y, gate);
  const at::Tensor g = gate.to(at::kFloat).unsqueeze(1);
  return (x.to(at::kFloat) + g * y.to(at::kFloat)).to(x.scalar_type());
}

void check_gated_residual_adaln_inputs(const at::Tensor& x, const at::Tensor& y,
                                       const at::Tensor& gate, const at::Tensor& scale,
                                       const at::Tensor& shift, double eps) {
  check_residual_inputs("gated_residual_adaln", x, y, gate);
  check_adaln_inputs("gated_residual_adaln", x, scale, shift, eps);
}

std::tuple<at::Tensor, at::Tensor> gated_residual_adaln_reference(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
    const at::Tensor& shift, double eps) {
  at::Tensor r = gated_residual_reference(x, y, gate);  // rounded to x's dtype, as unfused
  return {r, adaln_reference(r, scale, shift, eps)};
}

// C++ entry points (grat/ops.h): through the dispatcher, so CUDA tensors take the kernels.
at::Tensor adaln(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                 double eps) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("grat::adaln", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, double)>();
  return op.call(x, scale, shift, eps);
}

at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("grat::gated_residual", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(x, y, gate);
}

std::tuple<at::Tensor, at::Tensor> gated_residual_adaln(const at::Tensor& x, const at::Tensor& y,
                                                        const at::Tensor& gate,
                                                        const at::Tensor& scale,
                                                        const at::Tensor& shift, double eps) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("grat::gated_residual_adaln", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                 const at::Tensor&, const at::Tensor&, double)>();
  return op.call(x, y, gate, scale, shift, eps);
}

}  // namespace grat

TORCH_LIBRARY_FRAGMENT(grat, m) {
  m.def("adaln(Tensor x, Tensor scale, Tensor shift, float eps=1e-06) -> Tensor");
  m.def("gated_residual(Tensor x, Tensor y, Tensor gate) -> Tensor");
  m.def(
      "gated_residual_adaln(Tensor x, Tensor y, Tensor gate, Tensor scale, Tensor shift, "
      "float eps=1e-06) -> (Tensor, Tensor)");
}
TORCH_LIBRARY_IMPL(grat, CPU, m) {
  m.impl("adaln", &grat::adaln_cpu);
  m.impl("gated_residual", &grat::gated_residual_cpu);
  m.impl("gated_residual_adaln", &grat::gated_residual_adaln_cpu);
}
TORCH_LIBRARY_IMPL(grat, Meta, m) {
  m.impl("adaln", &grat::adaln_meta);
  m.impl("gated_residual", &grat::gated_residual_meta);
  m.impl("gated_residual_adaln", &grat::gated_residual_adaln_meta);
}
