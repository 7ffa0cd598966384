// The fused elementwise ops of a DiT block (issue #18): input checks and the ATen reference of
// each, shared by the CPU/Meta registration (fused_*.cpp) and the CUDA glue, which falls back
// to the reference for inputs its kernels do not take. References do float32 math and round
// once to the input dtype; on float32 inputs they run exactly the ATen ops diffusers runs.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace grat {

// qk_norm_rope: RMSNorm of each head vector (weight [D]) and Flux's RoPE (cos/sin [N, D]),
// over the tokens of x [B, N1, H, D] followed by those of x2 [B, N2, H, D] (normed with
// weight2): one contiguous [B, N1 + N2, H, D] output, the attention's input layout.
void check_qk_norm_rope_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                               const at::Tensor& sin, double eps,
                               const std::optional<at::Tensor>& x2,
                               const std::optional<at::Tensor>& weight2);
at::Tensor qk_norm_rope_reference(const at::Tensor& x, const at::Tensor& weight,
                                  const at::Tensor& cos, const at::Tensor& sin, double eps,
                                  const std::optional<at::Tensor>& x2,
                                  const std::optional<at::Tensor>& weight2);

// adaln: LayerNorm without affine of x [B, N, C], then * (1 + scale[b]) + shift[b] ([B, C]).
// gated_residual: x + gate[b] * y. gated_residual_adaln: r = gated_residual(x, y, gate)
// (rounded to x's dtype) and adaln(r, scale, shift), in one pass.
// check_activation: x is a float32/bfloat16/float16 [B, N, C], C > 0. The others throw naming
// op and argument unless scale/shift/gate are [B, C] and y is x's shape, all with x's dtype
// and device (and eps >= 0).
void check_activation(const char* op, const char* name, const at::Tensor& x);
void check_adaln_inputs(const char* op, const at::Tensor& x, const at::Tensor& scale,
                        const at::Tensor& shift, double eps);
void check_residual_inputs(const char* op, const at::Tensor& x, const at::Tensor& y,
                           const at::Tensor& gate);
at::Tensor adaln_reference(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           double eps);
at::Tensor gated_residual_reference(const at::Tensor& x, const at::Tensor& y,
                                    const at::Tensor& gate);
void check_gated_residual_adaln_inputs(const at::Tensor& x, const at::Tensor& y,
                                       const at::Tensor& gate, const at::Tensor& scale,
                                       const at::Tensor& shift, double eps);
std::tuple<at::Tensor, at::Tensor> gated_residual_adaln_reference(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate, const at::Tensor& scale,
    const at::Tensor& shift, double eps);

// gelu_tanh: GELU (tanh approximation) of x [B, N, C]; with prefix [B, N, P] the output is
// [B, N, P + C] = cat([prefix, gelu(x)], -1), written in one pass (Flux's single blocks).
void check_gelu_inputs(const at::Tensor& x, const std::optional<at::Tensor>& prefix);
at::Tensor gelu_tanh_reference(const at::Tensor& x, const std::optional<at::Tensor>& prefix);

namespace detail {
// Throws naming op and argument unless t is float32, bfloat16 or float16.
void check_float_dtype(const char* op, const char* name, const at::Tensor& t);
// Throws unless t has `like`'s dtype and device.
void check_same_kind(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like);
}  // namespace detail

}  // namespace grat
