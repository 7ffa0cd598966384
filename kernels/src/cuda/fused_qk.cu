// qk_norm_rope on CUDA: one pass over q (or k) of both streams into the attention's layout.
// A head row of D elements is G = D / pack threads of one warp (16 bytes each: D = 128 in bf16
// is 16 threads, two rows per warp); the RMS is a sum over those lanes. Every (2i, 2i+1) RoPE
// pair sits in one thread. Rotation as grat::rope: two products and a sum rounded apart.
#include "fused_common.cuh"

namespace grat::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads) qk_norm_rope_kernel(QkParams p, int group_log2) {
  constexpr int VEC = fused::kPack<T>;
  const int group = 1 << group_log2;
  const uint32_t tokens = static_cast<uint32_t>(p.n1 + p.n2),
                 heads = static_cast<uint32_t>(p.heads);
  const uint32_t rows = static_cast<uint32_t>(p.batch) * tokens * heads;
  const uint32_t row = (blockIdx.x * kThreads + threadIdx.x) >> group_log2;
  const int lane = threadIdx.x & (group - 1);
  const bool active = row < rows;
  const uint32_t h = row % heads, bn = row / heads, n = bn % tokens, b = bn / tokens;
  const bool first = n < p.n1;

  float v[VEC] = {};
  if (active) {
    const T* src =
        first ? static_cast<const T*>(p.x1) + b * p.x1_sb + n * p.x1_sn + h * p.x1_sh
              : static_cast<const T*>(p.x2) + b * p.x2_sb + (n - p.n1) * p.x2_sn + h * p.x2_sh;
    fused::load<T, VEC>(src + lane * VEC, v);
  }
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < VEC; ++j) ss = fmaf(v[j], v[j], ss);
  ss = fused::group_sum(ss, group);  // every lane takes part, active or not
  if (!active) return;
  const float rstd = rsqrtf(ss / static_cast<float>(p.dim) + p.eps);

  float w[VEC], c[VEC], s[VEC];
  fused::load<T, VEC>(static_cast<const T*>(first ? p.w1 : p.w2) + lane * VEC, w);
  const float* cs = p.cos + static_cast<int64_t>(n) * p.dim + lane * VEC;
  const float* sn = p.sin + static_cast<int64_t>(n) * p.dim + lane * VEC;
#pragma unroll
  for (int j = 0; j < VEC; j += 4) {
    const float4 c4 = *reinterpret_cast<const float4*>(cs + j);
    const float4 s4 = *reinterpret_cast<const float4*>(sn + j);
    c[j] = c4.x, c[j + 1] = c4.y, c[j + 2] = c4.z, c[j + 3] = c4.w;
    s[j] = s4.x, s[j + 1] = s4.y, s[j + 2] = s4.z, s[j + 3] = s4.w;
  }
#pragma unroll
  for (int j = 0; j < VEC; ++j) v[j] = __fmul_rn(__fmul_rn(v[j], rstd), w[j]);
  float o[VEC];
#pragma unroll
  for (int j = 0; j < VEC; j += 2) {
    o[j] = __fadd_rn(__fmul_rn(v[j], c[j]), __fmul_rn(-v[j + 1], s[j]));
    o[j + 1] = __fadd_rn(__fmul_rn(v[j + 1], c[j + 1]), __fmul_rn(v[j], s[j + 1]));
  }
  fused::store<T, VEC>(static_cast<T*>(p.out) + static_cast<int64_t>(row) * p.dim + lane * VEC, o);
}

template <typename T>
void launch_typed(const QkParams& p, cudaStream_t stream) {
  const int64_t group = p.dim / fused::kPack<T>;
  int group_log2 = 0;
  while ((int64_t{1} << group_log2) < group) ++group_log2;
  const int64_t threads = p.batch * (p.n1 + p.n2) * p.heads * group;
  const auto blocks = static_cast<unsigned>((threads + kThreads - 1) / kThreads);
  qk_norm_rope_kernel<T><<<blocks, kThreads, 0, stream>>>(p, group_log2);
}

template <typename T>
bool supports(int64_t dim) {
  if (dim % fused::kPack<T> != 0) return false;
  const int64_t g = dim / fused::kPack<T>;
  return g >= 1 && g <= 32 && (g & (g - 1)) == 0;
}

}  // namespace

bool qk_kernel_supports(int64_t dim, Dtype dt) {
  switch (dt) {
    case Dtype::kBFloat16:
      return supports<__nv_bfloat16>(dim);
    case Dtype::kHalf:
      return supports<__half>(dim);
    case Dtype::kFloat:
      return supports<float>(dim);
  }
  return false;
}

void launch_qk_norm_rope(const QkParams& p, Dtype dt, cudaStream_t stream) {
  if (p.batch * (p.n1 + p.n2) * p.heads == 0) return;
  switch (dt) {
    case Dtype::kBFloat16:
      launch_typed<__nv_bfloat16>(p, stream);
      break;
    case Dtype::kHalf:
      launch_typed<__half>(p, stream);
      break;
    case Dtype::kFloat:
      launch_typed<float>(p, stream);
      break;
  }
}

}  // namespace grat::cuda
