// grat::gelu_tanh: GELU (tanh approximation) of the MLP's up-projection, optionally written
// after a prefix in one [B, N, P + C] output: Flux's single blocks feed cat([attention, mlp])
// to proj_out, and this writes both halves without a torch.cat. CPU (the reference) and Meta
// here; CUDA in cuda/fused_gelu.cu.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "fused.h"
#include "grat/ops.h"
#include "internal.h"

namespace grat {

void check_gelu_inputs(const at::Tensor& x, const std::optional<at::Tensor>& prefix) {
  check_activation("gelu_tanh", "x", x);
  if (!prefix) return;
  const at::Tensor& p = *prefix;
  TORCH_CHECK(p.dim() == 3 && p.size(0) == x.size(0) && p.size(1) == x.size(1),
              "grat: gelu_tanh prefix must be [", detail::num(x.size(0)), ", ",
              detail::num(x.size(1)), ", channels] like x; got ", detail::dims(p.sizes()));
  detail::check_same_kind("gelu_tanh", "prefix", p, x);
}

at::Tensor gelu_tanh_reference(const at::Tensor& x, const std::optional<at::Tensor>& prefix) {
  check_gelu_inputs(x, prefix);
  at::Tensor g = at::gelu(x.to(at::kFloat), "tanh").to(x.scalar_type());
  return prefix ? at::cat({*prefix, g}, 2) : g;
}

namespace {

at::Tensor gelu_tanh_meta(const at::Tensor& x, const std::optional<at::Tensor>& prefix) {
  check_gelu_inputs(x, prefix);
  const int64_t p = prefix ? prefix->size(2) : 0;
  return at::empty({x.size(0), x.size(1), p + x.size(2)}, x.options());
}

}  // namespace

at::Tensor gelu_tanh(const at::Tensor& x, const std::optional<at::Tensor>& prefix) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("grat::gelu_tanh", "")
          .typed<at::Tensor(const at::Tensor&, const std::optional<at::Tensor>&)>();
  return op.call(x, prefix);
}

}  // namespace grat

TORCH_LIBRARY_FRAGMENT(grat, m) { m.def("gelu_tanh(Tensor x, Tensor? prefix=None) -> Tensor"); }
TORCH_LIBRARY_IMPL(grat, CPU, m) { m.impl("gelu_tanh", &grat::gelu_tanh_reference); }
TORCH_LIBRARY_IMPL(grat, Meta, m) { m.impl("gelu_tanh", &grat::gelu_tanh_meta); }
