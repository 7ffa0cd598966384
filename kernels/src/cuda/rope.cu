// grat::rope on CUDA: one pass, 8 elements (16 bytes of bf16/fp16) per thread, float32 math
// with the same roundings as the ATen reference (two products, one sum, one final rounding),
// so results are bitwise equal to it. The ATen version costs ~8 full passes in float32.
#include <cstdint>

#include "fused_common.cuh"
#include "rope_cuda.h"

namespace grat::cuda {
namespace {

using fused::from_f;
using fused::to_f;

template <typename T>
__global__ void rope_kernel(T* __restrict__ out, const T* __restrict__ x,
                            const float* __restrict__ cos, const float* __restrict__ sin,
                            RopeParams p) {
  const int64_t vecs_per_row = p.dim / 8;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= p.rows * vecs_per_row) return;
  const int64_t row = i / vecs_per_row, v = i % vecs_per_row;
  const int64_t h = row % p.heads, n = (row / p.heads) % p.tokens, b = row / (p.heads * p.tokens);
  const T* src = x + b * p.x_sb + n * p.x_sn + h * p.x_sh + v * 8;
  uint4 raw = *reinterpret_cast<const uint4*>(src);
  const T* e = reinterpret_cast<const T*>(&raw);
  const float4* c4 = reinterpret_cast<const float4*>(cos + n * p.dim + v * 8);
  const float4* s4 = reinterpret_cast<const float4*>(sin + n * p.dim + v * 8);
  const float4 ca = c4[0], cb = c4[1], sa = s4[0], sb = s4[1];
  const float c[8] = {ca.x, ca.y, ca.z, ca.w, cb.x, cb.y, cb.z, cb.w};
  const float s[8] = {sa.x, sa.y, sa.z, sa.w, sb.x, sb.y, sb.z, sb.w};
  uint4 res;
  T* o = reinterpret_cast<T*>(&res);
#pragma unroll
  for (int j = 0; j < 8; j += 2) {
    const float re = to_f(e[j]), im = to_f(e[j + 1]);
    o[j] = from_f<T>(__fadd_rn(__fmul_rn(re, c[j]), __fmul_rn(-im, s[j])));
    o[j + 1] = from_f<T>(__fadd_rn(__fmul_rn(im, c[j + 1]), __fmul_rn(re, s[j + 1])));
  }
  *reinterpret_cast<uint4*>(out + row * p.dim + v * 8) = res;
}

}  // namespace

void launch_rope(void* out, const void* x, const float* cos, const float* sin, bool bf16,
                 const RopeParams& p, cudaStream_t stream) {
  const int64_t total = p.rows * (p.dim / 8);
  if (total == 0) return;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>((total + threads - 1) / threads);
  if (bf16) {
    rope_kernel<__nv_bfloat16><<<blocks, threads, 0, stream>>>(
        static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(x), cos, sin, p);
  } else {
    rope_kernel<__half><<<blocks, threads, 0, stream>>>(static_cast<__half*>(out),
                                                        static_cast<const __half*>(x), cos, sin, p);
  }
}

}  // namespace grat::cuda
