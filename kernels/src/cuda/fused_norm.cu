// adaln, gated_residual and gated_residual_adaln on CUDA: one block per token row, the row held
// in registers (read once, written once per output), float32 math. The LayerNorm takes the
// mean first and then the mean of squared deviations over the registers (two block sums, no
// E[x^2] - mean^2 cancellation). The residual is rounded to the output dtype before the norm
// reads it, so gated_residual_adaln equals adaln(gated_residual(...)) of the unfused ops.
#include <algorithm>

#include "fused_common.cuh"

namespace grat::cuda {
namespace {

using fused::load;
using fused::store;

// x + g * y with product and sum rounded apart, as the ATen reference computes them.
__device__ __forceinline__ float residual(float x, float g, float y) {
  return __fadd_rn(x, __fmul_rn(g, y));
}

// gated_residual alone: a plain stream over the row, nothing kept (any width).
template <typename T, int VEC>
__global__ void __launch_bounds__(kNormThreads) gated_residual_kernel(NormParams p) {
  const int64_t row = blockIdx.x;
  const int64_t b = row / p.tokens, n = row - b * p.tokens;
  const int chunks = static_cast<int>(p.dim / VEC);
  const T* x = static_cast<const T*>(p.x.ptr) + b * p.x.sb + n * p.x.sn;
  const T* y = static_cast<const T*>(p.y.ptr) + b * p.y.sb + n * p.y.sn;
  const T* gate = static_cast<const T*>(p.gate.ptr) + b * p.gate.sb;
  T* out = static_cast<T*>(p.out_res) + row * p.dim;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    float xv[VEC], yv[VEC], g[VEC];
    load<T, VEC>(x + c * VEC, xv);
    load<T, VEC>(y + c * VEC, yv);
    load<T, VEC>(gate + c * VEC, g);
#pragma unroll
    for (int j = 0; j < VEC; ++j) xv[j] = residual(xv[j], g[j], yv[j]);
    store<T, VEC>(out + c * VEC, xv);
  }
}

// adaln (kResidual false) or gated_residual_adaln: the row stays in registers.
template <typename T, int VEC, bool kResidual>
__global__ void __launch_bounds__(kNormThreads) norm_kernel(NormParams p) {
  __shared__ float smem[32];
  const int64_t row = blockIdx.x;
  const int64_t b = row / p.tokens, n = row - b * p.tokens;
  const int chunks = static_cast<int>(p.dim / VEC);
  const T* x = static_cast<const T*>(p.x.ptr) + b * p.x.sb + n * p.x.sn;

  float v[kNormIters][VEC];
#pragma unroll
  for (int i = 0; i < kNormIters; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c < chunks) load<T, VEC>(x + c * VEC, v[i]);
  }

  if constexpr (kResidual) {
    const T* y = static_cast<const T*>(p.y.ptr) + b * p.y.sb + n * p.y.sn;
    const T* gate = static_cast<const T*>(p.gate.ptr) + b * p.gate.sb;
    T* out = static_cast<T*>(p.out_res) + row * p.dim;
#pragma unroll
    for (int i = 0; i < kNormIters; ++i) {
      const int c = threadIdx.x + i * blockDim.x;
      if (c >= chunks) continue;
      float yv[VEC], g[VEC];
      load<T, VEC>(y + c * VEC, yv);
      load<T, VEC>(gate + c * VEC, g);
      // The norm reads the residual as stored (rounded to T).
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[i][j] = fused::round_to<T>(residual(v[i][j], g[j], yv[j]));
      store<T, VEC>(out + c * VEC, v[i]);
    }
  }

  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kNormIters; ++i) {
    if (threadIdx.x + i * blockDim.x >= chunks) continue;
#pragma unroll
    for (int j = 0; j < VEC; ++j) s += v[i][j];
  }
  const float inv_dim = 1.f / static_cast<float>(p.dim);
  const float mean = fused::block_sum(s, smem) * inv_dim;
  float q = 0.f;
#pragma unroll
  for (int i = 0; i < kNormIters; ++i) {
    if (threadIdx.x + i * blockDim.x >= chunks) continue;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const float d = v[i][j] - mean;
      q = fmaf(d, d, q);
    }
  }
  const float rstd = rsqrtf(fused::block_sum(q, smem) * inv_dim + p.eps);
  const T* scale = static_cast<const T*>(p.scale.ptr) + b * p.scale.sb;
  const T* shift = static_cast<const T*>(p.shift.ptr) + b * p.shift.sb;
  T* out = static_cast<T*>(p.out_norm) + row * p.dim;
#pragma unroll
  for (int i = 0; i < kNormIters; ++i) {
    const int c = threadIdx.x + i * blockDim.x;
    if (c >= chunks) continue;
    float sc[VEC], sh[VEC];
    load<T, VEC>(scale + c * VEC, sc);
    load<T, VEC>(shift + c * VEC, sh);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[i][j] = (v[i][j] - mean) * rstd * (1.f + sc[j]) + sh[j];
    store<T, VEC>(out + c * VEC, v[i]);
  }
}

template <typename T, int VEC>
void launch_typed(const NormParams& p, cudaStream_t stream) {
  const int64_t chunks = p.dim / VEC;
  // About kNormIters chunks per thread, whole warps: C = 3072 in bf16 is 384 chunks, 96 threads
  // (the residual alone loops over the row, so any width fits).
  const int64_t per_iter = (chunks + kNormIters - 1) / kNormIters;
  const int threads = static_cast<int>(std::min<int64_t>(kNormThreads, (per_iter + 31) / 32 * 32));
  const auto blocks = static_cast<unsigned>(p.batch * p.tokens);
  if (p.residual && p.norm) {
    norm_kernel<T, VEC, true><<<blocks, threads, 0, stream>>>(p);
  } else if (p.residual) {
    gated_residual_kernel<T, VEC><<<blocks, threads, 0, stream>>>(p);
  } else {
    norm_kernel<T, VEC, false><<<blocks, threads, 0, stream>>>(p);
  }
}

}  // namespace

void launch_norm(const NormParams& p, Dtype dt, bool vec, cudaStream_t stream) {
  if (p.batch * p.tokens == 0) return;
  fused::dispatch(dt, vec, [&](auto l) {
    using L = decltype(l);
    launch_typed<typename L::type, L::vec>(p, stream);
  });
}

}  // namespace grat::cuda
