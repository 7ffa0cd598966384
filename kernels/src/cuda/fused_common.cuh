// Device helpers of the fused elementwise kernels: dtype conversions, 16-byte (or element)
// loads and stores through float registers, warp and block sums.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "fused_cuda.h"

namespace grat::cuda::fused {

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <>
__device__ __forceinline__ __half from_f<__half>(float v) {
  return __float2half_rn(v);
}

// The value v takes once stored as T (the next op of an unfused chain would read that).
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_f(from_f<T>(v));
}

// Elements per 16-byte load.
template <typename T>
constexpr int kPack = 16 / static_cast<int>(sizeof(T));

// N consecutive elements at p as float: one 16-byte load when N is a whole pack (p aligned),
// else element loads.
template <typename T, int N>
__device__ __forceinline__ void load(const T* __restrict__ p, float (&f)[N]) {
  if constexpr (N == kPack<T>) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < N; ++j) f[j] = to_f(e[j]);
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) f[j] = to_f(p[j]);
  }
}

template <typename T, int N>
__device__ __forceinline__ void store(T* __restrict__ p, const float (&f)[N]) {
  if constexpr (N == kPack<T>) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < N; ++j) e[j] = from_f<T>(f[j]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
#pragma unroll
    for (int j = 0; j < N; ++j) p[j] = from_f<T>(f[j]);
  }
}

// Sum over aligned groups of `width` lanes (a power of two <= 32); every lane of the warp
// must call it.
__device__ __forceinline__ float group_sum(float v, int width) {
  for (int o = width >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over a 1-D block (blockDim.x a multiple of 32); every thread gets it. smem: 32 floats.
__device__ __forceinline__ float block_sum(float v, float* smem) {
  v = group_sum(v, 32);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  v = group_sum(lane < static_cast<int>(blockDim.x >> 5) ? smem[lane] : 0.f, 32);
  __syncthreads();  // smem is free for the next call
  return v;
}

// The element type and load width of a launch: f(Launch<T, VEC>{}) for the tensor's dtype, VEC
// the 16-byte pack when `vec` (aligned rows) or 1.
template <typename T, int V>
struct Launch {
  using type = T;
  static constexpr int vec = V;
};

template <typename T, class F>
void with_width(bool vec, F&& f) {
  if (vec) {
    f(Launch<T, kPack<T>>{});
  } else {
    f(Launch<T, 1>{});
  }
}

template <class F>
void dispatch(Dtype dt, bool vec, F&& f) {
  switch (dt) {
    case Dtype::kBFloat16:
      with_width<__nv_bfloat16>(vec, f);
      break;
    case Dtype::kHalf:
      with_width<__half>(vec, f);
      break;
    case Dtype::kFloat:
      with_width<float>(vec, f);
      break;
  }
}

}  // namespace grat::cuda::fused
