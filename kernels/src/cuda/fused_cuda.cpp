// CUDA glue of the fused elementwise ops (fused.h): the same input checks as the CPU reference,
// then our kernels (fused_*.cu) for float32/bfloat16/float16. 16-byte loads when every row is
// 16-byte aligned, element loads otherwise; the ATen reference (on the GPU) only for shapes the
// kernels do not take: rows wider than the norm kernel's registers (C > 16384 in bf16), head
// dims off the qk kernel's table, misaligned q/k/cos/sin, and over 2^31 rows.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>

#include "../fused.h"
#include "../internal.h"
#include "fused_cuda.h"

namespace grat {
namespace {

cuda::Dtype dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kBFloat16:
      return cuda::Dtype::kBFloat16;
    case at::kHalf:
      return cuda::Dtype::kHalf;
    default:
      return cuda::Dtype::kFloat;  // the checks admitted float32, bfloat16 and float16 only
  }
}

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();
// qk_norm_rope_kernel's 32-bit thread index, a block short of wrapping.
constexpr int64_t kMaxQkThreads = int64_t{std::numeric_limits<uint32_t>::max()} - 1024;

// Last dim contiguous (the kernels index c directly).
at::Tensor inner_contiguous(const at::Tensor& t) {
  return t.stride(-1) == 1 || t.size(-1) <= 1 ? t : t.contiguous();
}

// 16-byte loads of t's rows: aligned base, and every stride but the last a whole number of
// 16-byte packs (size-1 dims are never stepped over).
bool vec_ok(const at::Tensor& t) {
  const int64_t pack = 16 / static_cast<int64_t>(t.element_size());
  if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0 || t.size(-1) % pack != 0) return false;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) {
    if (t.size(d) > 1 && t.stride(d) % pack != 0) return false;
  }
  return true;
}

cuda::RowView rows_of(const at::Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1)}; }
cuda::RowView modulation_of(const at::Tensor& t) { return {t.data_ptr(), t.stride(0), 0}; }

// The row kernel (fused_norm.cu) for x, and for y/gate when residual, scale/shift when norm;
// nullopt when a row to normalize does not fit the registers (or the rows the grid): the caller
// falls back.
std::optional<std::tuple<at::Tensor, at::Tensor>> run_norm(const at::Tensor& x_in,
                                                           const at::Tensor* y_in,
                                                           const at::Tensor* gate_in,
                                                           const at::Tensor* scale_in,
                                                           const at::Tensor* shift_in, double eps) {
  const at::Tensor x = inner_contiguous(x_in);
  at::Tensor y, gate, scale, shift;
  bool vec = vec_ok(x);
  if (y_in) {
    y = inner_contiguous(*y_in), gate = inner_contiguous(*gate_in);
    vec = vec && vec_ok(y) && vec_ok(gate);
  }
  if (scale_in) {
    scale = inner_contiguous(*scale_in), shift = inner_contiguous(*shift_in);
    vec = vec && vec_ok(scale) && vec_ok(shift);
  }
  const int64_t pack = vec ? 16 / static_cast<int64_t>(x.element_size()) : 1;
  if ((scale_in && x.size(2) / pack > cuda::kNormMaxChunks) || x.size(0) * x.size(1) > kMaxRows) {
    return std::nullopt;
  }
  const c10::cuda::CUDAGuard guard(x.device());
  cuda::NormParams p{};
  p.batch = x.size(0), p.tokens = x.size(1), p.dim = x.size(2);
  p.x = rows_of(x);
  p.eps = static_cast<float>(eps);
  p.residual = y_in != nullptr;
  p.norm = scale_in != nullptr;
  at::Tensor out_res, out_norm;
  if (p.residual) {
    p.y = rows_of(y), p.gate = modulation_of(gate);
    out_res = at::empty(x.sizes(), x.options());
    p.out_res = out_res.data_ptr();
  }
  if (p.norm) {
    p.scale = modulation_of(scale), p.shift = modulation_of(shift);
    out_norm = at::empty(x.sizes(), x.options());
    p.out_norm = out_norm.data_ptr();
  }
  cuda::launch_norm(p, dtype_of(x), vec, at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return std::make_tuple(out_res, out_norm);
}

at::Tensor adaln_cuda(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                      double eps) {
  check_adaln_inputs("adaln", x, scale, shift, eps);
  auto out = run_norm(x, nullptr, nullptr, &scale, &shift, eps);
  return out ? std::get<1>(*out) : adaln_reference(x, scale, shift, eps);
}

at::Tensor gated_residual_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate) {
  check_residual_inputs("gated_residual", x, y, gate);
  auto out = run_norm(x, &y, &gate, nullptr, nullptr, 0.0);
  return out ? std::get<0>(*out) : gated_residual_reference(x, y, gate);
}

std::tuple<at::Tensor, at::Tensor> gated_residual_adaln_cuda(const at::Tensor& x,
                                                             const at::Tensor& y,
                                                             const at::Tensor& gate,
                                                             const at::Tensor& scale,
                                                             const at::Tensor& shift, double eps) {
  check_gated_residual_adaln_inputs(x, y, gate, scale, shift, eps);
  if (auto out = run_norm(x, &y, &gate, &scale, &shift, eps)) return *out;
  return gated_residual_adaln_reference(x, y, gate, scale, shift, eps);
}

at::Tensor gelu_tanh_cuda(const at::Tensor& x_in, const std::optional<at::Tensor>& prefix_in) {
  check_gelu_inputs(x_in, prefix_in);
  if (x_in.size(0) * x_in.size(1) > kMaxRows) return gelu_tanh_reference(x_in, prefix_in);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = inner_contiguous(x_in);
  cuda::GeluParams p{};
  p.batch = x.size(0), p.tokens = x.size(1), p.dim = x.size(2);
  p.x = rows_of(x);
  bool vec = vec_ok(x);
  at::Tensor prefix;
  if (prefix_in) {
    prefix = inner_contiguous(*prefix_in);
    p.prefix_dim = prefix.size(2);
    p.prefix = rows_of(prefix);
    vec = vec && vec_ok(prefix);
  } else {
    p.prefix = {x.data_ptr(), 0, 0};  // never read: prefix_dim is 0
  }
  at::Tensor out = at::empty({p.batch, p.tokens, p.prefix_dim + p.dim}, x.options());
  p.out = out.data_ptr();
  cuda::launch_gelu(p, dtype_of(x), vec, at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// 16-byte aligned head rows, weight and cos/sin rows: what the qk kernel loads.
bool qk_aligned(const at::Tensor& x, const at::Tensor& w) {
  return x.stride(3) == 1 && vec_ok(x) && w.stride(0) == 1 && vec_ok(w);
}

at::Tensor qk_norm_rope_cuda(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                             const at::Tensor& sin, double eps, const std::optional<at::Tensor>& x2,
                             const std::optional<at::Tensor>& weight2) {
  check_qk_norm_rope_inputs(x, weight, cos, sin, eps, x2, weight2);
  const auto fallback = [&] {
    return qk_norm_rope_reference(x, weight, cos, sin, eps, x2, weight2);
  };
  const int64_t n2 = x2 ? x2->size(1) : 0;
  const int64_t tokens = x.size(1) + n2, dim = x.size(3);
  const cuda::Dtype dt = dtype_of(x);
  // The kernel indexes its threads (dim / pack per head row) in 32 bits.
  const int64_t threads = x.size(0) * tokens * x.size(2) * (dim * x.element_size() / 16);
  if (!cuda::qk_kernel_supports(dim, dt) || threads > kMaxQkThreads || !qk_aligned(x, weight) ||
      (x2 && !qk_aligned(*x2, *weight2)) || !cos.is_contiguous() || !sin.is_contiguous() ||
      !vec_ok(cos) || !vec_ok(sin)) {
    return fallback();
  }
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({x.size(0), tokens, x.size(2), dim}, x.options());
  cuda::QkParams p{};
  p.batch = x.size(0), p.n1 = x.size(1), p.n2 = n2, p.heads = x.size(2), p.dim = dim;
  p.x1 = x.data_ptr(), p.x1_sb = x.stride(0), p.x1_sn = x.stride(1), p.x1_sh = x.stride(2);
  p.w1 = weight.data_ptr();
  if (x2) {
    p.x2 = x2->data_ptr(), p.x2_sb = x2->stride(0), p.x2_sn = x2->stride(1);
    p.x2_sh = x2->stride(2), p.w2 = weight2->data_ptr();
  } else {
    p.x2 = p.x1, p.w2 = p.w1;  // never read: every token is in x
  }
  p.cos = cos.data_ptr<float>(), p.sin = sin.data_ptr<float>();
  p.out = out.data_ptr();
  p.eps = static_cast<float>(eps);
  cuda::launch_qk_norm_rope(p, dt, at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace grat

TORCH_LIBRARY_IMPL(grat, CUDA, m) {
  m.impl("adaln", &grat::adaln_cuda);
  m.impl("gated_residual", &grat::gated_residual_cuda);
  m.impl("gated_residual_adaln", &grat::gated_residual_adaln_cuda);
  m.impl("gelu_tanh", &grat::gelu_tanh_cuda);
  m.impl("qk_norm_rope", &grat::qk_norm_rope_cuda);
}
