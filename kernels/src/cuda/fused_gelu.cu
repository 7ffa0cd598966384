// gelu_tanh on CUDA: out [B, N, P + C] = cat([prefix, gelu(x)], -1) in one pass, 16-byte chunks
// (element chunks when a row is not 16-byte aligned); a block covers one or more rows.
#include <algorithm>

#include "fused_common.cuh"

namespace grat::cuda {
namespace {

constexpr int kThreads = 256;

// PyTorch's tanh approximation: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
__device__ __forceinline__ float gelu_tanh_f(float x) {
  constexpr float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
  const float cube = x * x * x;
  const float inner = kBeta * (x + kKappa * cube);
  return 0.5f * x * (1.f + tanhf(inner));
}

// blockDim = (threads across a row, rows per block).
template <typename T, int VEC>
__global__ void __launch_bounds__(kThreads) gelu_kernel(GeluParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  if (row >= p.batch * p.tokens) return;
  const int64_t b = row / p.tokens, n = row - b * p.tokens;
  const int64_t width = p.prefix_dim + p.dim;
  const int pre = static_cast<int>(p.prefix_dim / VEC),
            chunks = pre + static_cast<int>(p.dim / VEC);
  const T* x = static_cast<const T*>(p.x.ptr) + b * p.x.sb + n * p.x.sn;
  const T* prefix = static_cast<const T*>(p.prefix.ptr) + b * p.prefix.sb + n * p.prefix.sn;
  T* out = static_cast<T*>(p.out) + row * width;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    if (c < pre) {  // bit copy
      if constexpr (VEC == fused::kPack<T>) {
        reinterpret_cast<uint4*>(out)[c] = reinterpret_cast<const uint4*>(prefix)[c];
      } else {
        out[c] = prefix[c];
      }
      continue;
    }
    float v[VEC];
    fused::load<T, VEC>(x + (c - pre) * VEC, v);
#pragma unroll
    for (int j = 0; j < VEC; ++j) v[j] = gelu_tanh_f(v[j]);
    fused::store<T, VEC>(out + c * VEC, v);
  }
}

template <typename T, int VEC>
void launch_typed(const GeluParams& p, cudaStream_t stream) {
  const int64_t chunks = (p.prefix_dim + p.dim) / VEC;
  int tx = 32;
  while (tx < kThreads && tx < chunks) tx *= 2;
  const int ty = kThreads / tx;
  const int64_t rows = p.batch * p.tokens;
  const auto blocks = static_cast<unsigned>((rows + ty - 1) / ty);
  gelu_kernel<T, VEC><<<blocks, dim3(tx, ty), 0, stream>>>(p);
}

}  // namespace

void launch_gelu(const GeluParams& p, Dtype dt, bool vec, cudaStream_t stream) {
  if (p.batch * p.tokens == 0) return;
  fused::dispatch(dt, vec, [&](auto l) {
    using L = decltype(l);
    launch_typed<typename L::type, L::vec>(p, stream);
  });
}

}  // namespace grat::cuda
