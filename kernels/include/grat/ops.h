// C++ entry points of the grat:: operators. Each goes through the dispatcher, so the
// CPU reference, the CUDA kernels and the Meta shape functions sit behind one call.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace grat {

// q, k, v: [batch, tokens, heads, head_dim] in the model's token order; returns the same.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                     const std::string& pattern = "B", int64_t radius = 1, int64_t text_tokens = 0,
                     bool text_first = true, const std::vector<int64_t>& valid_text = {},
                     bool grouped = false, std::optional<double> scale = std::nullopt);

// Model order <-> group-major order along `dim`; text tokens stay where they are.
at::Tensor regroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim = 1, int64_t text_tokens = 0,
                   bool text_first = true);
at::Tensor ungroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim = 1, int64_t text_tokens = 0,
                   bool text_first = true);

// Boolean [tokens, tokens] mask (true = query row may read key column) for small layouts.
at::Tensor attention_mask(const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                          const std::string& pattern = "B", int64_t radius = 1,
                          int64_t text_tokens = 0, bool text_first = true, int64_t valid_text = -1,
                          bool grouped = false);

// Fused elementwise ops of a DiT block (issue #18); float32/bfloat16/float16, float32 math,
// one rounding. Activations are [batch, tokens, channels], modulation [batch, channels].
// RMSNorm (weight [D]) + Flux RoPE (cos/sin float32 [N1 + N2, D]) of q or k [B, N1, H, D],
// followed in the output by x2 [B, N2, H, D] normed with weight2: [B, N1 + N2, H, D].
at::Tensor qk_norm_rope(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& cos,
                        const at::Tensor& sin, double eps = 1e-6,
                        const std::optional<at::Tensor>& x2 = std::nullopt,
                        const std::optional<at::Tensor>& weight2 = std::nullopt);
// LayerNorm(x) (no affine) * (1 + scale) + shift.
at::Tensor adaln(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                 double eps = 1e-6);
// x + gate * y.
at::Tensor gated_residual(const at::Tensor& x, const at::Tensor& y, const at::Tensor& gate);
// (r, adaln(r, scale, shift)) with r = gated_residual(x, y, gate), in one pass.
std::tuple<at::Tensor, at::Tensor> gated_residual_adaln(const at::Tensor& x, const at::Tensor& y,
                                                        const at::Tensor& gate,
                                                        const at::Tensor& scale,
                                                        const at::Tensor& shift, double eps = 1e-6);
// GELU (tanh) of x; with prefix [B, N, P]: cat([prefix, gelu(x)], -1) in one pass.
at::Tensor gelu_tanh(const at::Tensor& x, const std::optional<at::Tensor>& prefix = std::nullopt);

}  // namespace grat
