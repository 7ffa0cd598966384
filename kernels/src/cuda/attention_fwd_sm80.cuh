// Portable GRAT attention forward (sm_80 and up): FlashAttention-2 style, mma.sync m16n8k16
// with fp32 accumulation, ldmatrix from XOR-swizzled shared memory, cp.async double
// buffering of K/V tiles, online softmax in the exp2 domain.
//
// Tile table (BM x BN, warps): BM = 128 query rows per CTA (8 warps x 16 rows), BN = 64 keys
// per step. Shared memory: Q BM x D + 2 stages of K and V (BN x D each):
//   D = 128: 32 KiB + 64 KiB = 96 KiB (2 CTAs / SM on sm_80/sm_90)
//   D =  64: 16 KiB + 32 KiB = 48 KiB
// Q fragments are re-read from shared memory every key tile (aims at < 128 registers so two
// CTAs fit per SM; ptxas still spills ~156 B at D = 128, 52-80 B at D = 64).
//
// Each CTA handles one query tile of one (batch, head): a text tile (reads all image tokens
// and the valid text) or a slice of one query group (reads the valid text and the groups of
// its region, see key_ranges.cuh). Tiles are ordered text first (longest work first), then
// image tiles head-major (decode_block), which keeps one head's K/V in L2 while neighbouring
// groups read it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "attention_params.h"
#include "key_ranges.cuh"

namespace grat::cuda {

template <typename T>
struct MmaType;
template <>
struct MmaType<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};
template <>
struct MmaType<__half> {
  static __device__ __forceinline__ uint32_t pack(float a, float b) {
    __half2 h = __floats2half2_rn(a, b);
    return *reinterpret_cast<uint32_t*>(&h);
  }
  static __device__ __forceinline__ void mma(float* c, const uint32_t* a, uint32_t b0,
                                             uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// 2^x on the special-function unit, flushing denormals (softmax weights below 2^-126 are 0).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte async copy; zero-fills the destination when !valid (src is then not read).
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)),
               "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <int D>
struct Tile {
  static constexpr int BM = 128, BN = 64, kWarps = 8, kThreads = kWarps * 32;
  static constexpr int CH = D / 8;  // 16-byte chunks per row
  static constexpr int kSmemElems = BM * D + 4 * BN * D;
  // Element offset of (row, 16-byte chunk) in a swizzled [rows][D] tile.
  static __device__ __forceinline__ int off(int r, int c) { return r * D + ((c ^ (r & 7)) << 3); }
};

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ int32_t mem_row(const int32_t* rowmap, int64_t pos) {
  return rowmap ? __ldg(rowmap + pos) : static_cast<int32_t>(pos);
}

template <typename T, int D>
__global__ void __launch_bounds__(256, 2) attention_fwd_sm80(const __grid_constant__ AttentionParams p) {
  using TL = Tile<D>;
  constexpr int BM = TL::BM, BN = TL::BN, NT = TL::kThreads, CH = TL::CH;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + BM * D;      // 2 stages
  T* sV = sK + 2 * BN * D;  // 2 stages

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  CtaTile ct;
  if (!decode_cta<BM>(p, ct)) return;
  const int head = ct.head, b = ct.b;
  const int32_t q0 = ct.q0, q1 = ct.q1;
  const int32_t valid = p.valid_per_batch ? p.valid_per_batch[b] : p.valid_uniform;

  const T* gq = static_cast<const T*>(p.q) + b * p.q_sb + head * p.q_sh;
  const T* gk = static_cast<const T*>(p.k) + b * p.k_sb + head * p.k_sh;
  const T* gv = static_cast<const T*>(p.v) + b * p.v_sb + head * p.v_sh;

  // Q tile.
#pragma unroll
  for (int i = tid; i < BM * CH; i += NT) {
    const int r = i / CH, c = i % CH;
    const int64_t pos = q0 + r;
    const bool ok = pos < q1;
    const T* src = ok ? gq + static_cast<int64_t>(mem_row(p.rowmap, pos)) * p.q_sn + c * 8 : gq;
    cp_async16(sQ + TL::off(r, c), src, ok);
  }

  KeyRangeGen gen;
  gen.init(p, ct, valid);
  int32_t rs, re;  // current key range
  gen.next(p.geom, rs, re);  // every query reads at least its own group / the image
  int32_t k0 = rs;

  auto load_kv = [&](int stage, int32_t kstart, int32_t kend) {
    T* dk = sK + stage * BN * D;
    T* dv = sV + stage * BN * D;
#pragma unroll
    for (int i = tid; i < BN * CH; i += NT) {
      const int r = i / CH, c = i % CH;
      const int32_t pos = kstart + r;
      const bool ok = pos < kend;
      const int64_t row = ok ? mem_row(p.rowmap, pos) : 0;
      cp_async16(dk + TL::off(r, c), ok ? gk + row * p.k_sn + c * 8 : gk, ok);
      cp_async16(dv + TL::off(r, c), ok ? gv + row * p.v_sn + c * 8 : gv, ok);
    }
  };
  load_kv(0, k0, re);
  cp_async_commit();

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};

  int stage = 0;
  bool more = true;
  while (more) {
    // Advance to the next tile and prefetch it into the other stage.
    const int32_t cur0 = k0, cur_end = re;
    k0 += BN;
    if (k0 >= re) more = gen.next(p.geom, rs, re), k0 = rs;
    if (more) load_kv(stage ^ 1, k0, re);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();

    const T* cK = sK + stage * BN * D;
    const T* cV = sV + stage * BN * D;

    // S = Q K^T for this warp's 16 rows and BN keys.
    float s[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t a[4];
      ldsm_x4(a, sQ + TL::off(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
#pragma unroll
      for (int nb = 0; nb < BN / 16; ++nb) {
        uint32_t bf[4];
        ldsm_x4(bf, cK + TL::off(nb * 16 + ((lane >> 4) << 3) + (lane & 7),
                                 kk * 2 + ((lane >> 3) & 1)));
        MmaType<T>::mma(s[2 * nb], a, bf[0], bf[1]);
        MmaType<T>::mma(s[2 * nb + 1], a, bf[2], bf[3]);
      }
    }

    // Mask keys past the range end (ragged ranges), scale into the log2 domain.
    const int col0 = (lane & 3) * 2;
    const int32_t lim = cur_end - cur0;
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int col = nb * 8 + col0 + (j & 1);
        s[nb][j] = col < lim ? s[nb][j] * p.scale_log2 : -INFINITY;
      }
    }

    // Online softmax: rows lane/4 (j = 0,1) and lane/4 + 8 (j = 2,3).
    float mx[2] = {m_r[0], m_r[1]};
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
      mx[0] = fmaxf(mx[0], fmaxf(s[nb][0], s[nb][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[nb][2], s[nb][3]));
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
    }
    float corr[2], rsum[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      corr[r] = ex2(m_r[r] - mx[r]);  // m_r = -inf on the first tile: corr = 0
      m_r[r] = mx[r];
    }
    uint32_t pa[BN / 16][4];
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
      const float p0 = ex2(s[nb][0] - mx[0]), p1 = ex2(s[nb][1] - mx[0]);
      const float p2 = ex2(s[nb][2] - mx[1]), p3 = ex2(s[nb][3] - mx[1]);
      rsum[0] += p0 + p1;
      rsum[1] += p2 + p3;
      pa[nb >> 1][(nb & 1) * 2 + 0] = MmaType<T>::pack(p0, p1);
      pa[nb >> 1][(nb & 1) * 2 + 1] = MmaType<T>::pack(p2, p3);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) l_r[r] = l_r[r] * corr[r] + rsum[r];
#pragma unroll
    for (int db = 0; db < D / 8; ++db) {
      o[db][0] *= corr[0];
      o[db][1] *= corr[0];
      o[db][2] *= corr[1];
      o[db][3] *= corr[1];
    }

    // O += P V.
#pragma unroll
    for (int j = 0; j < BN / 16; ++j) {
#pragma unroll
      for (int db = 0; db < D / 16; ++db) {
        uint32_t bf[4];
        ldsm_x4_t(bf, cV + TL::off(j * 16 + (((lane >> 3) & 1) << 3) + (lane & 7),
                                   db * 2 + (lane >> 4)));
        MmaType<T>::mma(o[2 * db], pa[j], bf[0], bf[1]);
        MmaType<T>::mma(o[2 * db + 1], pa[j], bf[2], bf[3]);
      }
    }
    __syncthreads();  // this stage is refilled two iterations on
    stage ^= 1;
  }

  // Normalise (row sums across the 4 lanes of a row), stage through shared memory (Q's
  // buffer, free now), store 16-byte chunks to the rows' memory positions.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
    l_r[r] = 1.f / l_r[r];
  }
  const int row0 = warp * 16 + (lane >> 2);
#pragma unroll
  for (int db = 0; db < D / 8; ++db) {
    const int c = db * 8 + (lane & 3) * 2;
    *reinterpret_cast<uint32_t*>(sQ + TL::off(row0, c >> 3) + (c & 7)) =
        MmaType<T>::pack(o[db][0] * l_r[0], o[db][1] * l_r[0]);
    *reinterpret_cast<uint32_t*>(sQ + TL::off(row0 + 8, c >> 3) + (c & 7)) =
        MmaType<T>::pack(o[db][2] * l_r[1], o[db][3] * l_r[1]);
  }
  __syncthreads();
  T* go = static_cast<T*>(p.o) + b * p.o_sb + head * p.o_sh;
#pragma unroll
  for (int i = tid; i < BM * CH; i += NT) {
    const int r = i / CH, c = i % CH;
    const int64_t pos = q0 + r;
    if (pos < q1) {
      *reinterpret_cast<uint4*>(go + static_cast<int64_t>(mem_row(p.rowmap, pos)) * p.o_sn +
                                c * 8) = *reinterpret_cast<const uint4*>(sQ + TL::off(r, c));
    }
  }
}

template <typename T, int D>
void launch_attention_sm80(const AttentionParams& p, cudaStream_t stream) {
  using TL = Tile<D>;
  const size_t smem = TL::kSmemElems * sizeof(T);
  auto kernel = attention_fwd_sm80<T, D>;
  // Per device, so set on every launch (a cheap host call); errors surface at the launch check.
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  const int64_t tiles = static_cast<int64_t>(p.text_tiles) + p.image_tiles;
  const int64_t blocks = tiles * p.batch * p.heads;
  if (blocks == 0) return;
  kernel<<<static_cast<unsigned>(blocks), TL::kThreads, smem, stream>>>(p);
}

}  // namespace grat::cuda
