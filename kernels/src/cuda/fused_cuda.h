// Launchers of the fused elementwise kernels (fused_qk.cu, fused_norm.cu, fused_gelu.cu); the
// op glue (checks, fallbacks, allocation) is in fused_cuda.cpp. Plain structs of pointers and
// element strides; the innermost dim is contiguous everywhere.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace grat::cuda {

enum class Dtype { kFloat, kBFloat16, kHalf };

// Row = one token's channels of a [B, N, C] activation: element (b, n, c) is at
// b * sb + n * sn + c. Modulation rows ([B, C]) are at b * sb + c.
struct RowView {
  const void* ptr;
  int64_t sb, sn;
};

// adaln / gated_residual / gated_residual_adaln over rows = batch * tokens of width dim.
// y and gate are read when residual; out_norm is written when norm, out_res when residual.
// Outputs are contiguous [B, N, C].
struct NormParams {
  int64_t batch, tokens, dim;
  RowView x, y;
  RowView gate, scale, shift;  // sn unused
  void* out_res;
  void* out_norm;
  float eps;
  bool residual, norm;
};

// The norm kernel keeps a row in registers: at most kNormThreads threads per row (one block),
// kNormIters chunks each (a chunk is 16 bytes of elements, or one element without `vec`).
// Wider rows (dim > 16384 in bf16) take the ATen reference in the glue.
constexpr int kNormThreads = 512, kNormIters = 4;
constexpr int64_t kNormMaxChunks = kNormThreads * kNormIters;

// vec: every row base, stride and modulation pointer is 16-byte aligned and dim a multiple of
// 16 bytes of elements (16-byte loads); otherwise element loads.
void launch_norm(const NormParams& p, Dtype dt, bool vec, cudaStream_t stream);

// gelu_tanh: out [B, N, P + C] = cat([prefix, gelu(x)], -1), P = 0 without a prefix.
struct GeluParams {
  int64_t batch, tokens, dim, prefix_dim;
  RowView x, prefix;
  void* out;
};
void launch_gelu(const GeluParams& p, Dtype dt, bool vec, cudaStream_t stream);

// qk_norm_rope: x1 [B, N1, H, D] then x2 [B, N2, H, D] (n2 = 0: none) into contiguous
// out [B, N1 + N2, H, D]; weights [D] in x's dtype; cos/sin float32 [N1 + N2, D] contiguous.
struct QkParams {
  int64_t batch, n1, n2, heads, dim;
  const void* x1;
  int64_t x1_sb, x1_sn, x1_sh;
  const void* x2;
  int64_t x2_sb, x2_sn, x2_sh;
  const void* w1;
  const void* w2;
  const float* cos;
  const float* sin;
  void* out;
  float eps;
};

// True when the kernel takes head_dim `dim` of this dtype (dim a multiple of 16 bytes of
// elements and dim / that a power of two <= 32: 8..256 in bf16/fp16, 4..128 in fp32).
bool qk_kernel_supports(int64_t dim, Dtype dt);
void launch_qk_norm_rope(const QkParams& p, Dtype dt, cudaStream_t stream);

}  // namespace grat::cuda
