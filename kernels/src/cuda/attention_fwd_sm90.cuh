// Hopper GRAT attention forward (sm_90a): wgmma with fp32 accumulators.
//
// Tile table: BM = 128 query rows per CTA = 2 warpgroups x 64 rows; BN = 128 keys per step.
// S = Q K^T: wgmma m64n128k16, A (Q) and B (K) from shared memory; O += P V: wgmma
// m64nDk16 with P in registers (the S accumulators converted in place: the accumulator
// layout is the register-A layout) and V from shared memory read transposed (MN-major).
// Shared memory tiles use the 128-byte swizzle: each tile is [D/64 halves][rows][64] with
// 16-byte chunk c of row r stored at chunk c ^ (r % 8), 1024-byte aligned atoms.
//   D = 128: Q 32 KiB + 3 stages x (K 32 KiB + V 32 KiB) = 224 KiB (1 CTA / SM)
//   D =  64: Q 16 KiB + 4 stages x (K 16 KiB + V 16 KiB) = 144 KiB (1 CTA / SM)
// 384 threads: two consumer warpgroups and one producer warpgroup filling a ring of K/V
// stages guarded by full/empty mbarriers. Group-major input (kTma): one producer thread
// loads each tile as TMA boxes (a key tile is BN consecutive rows); 12-14% faster than
// cp.async on every benchmark case. Raster input: the producer warpgroup gathers 16-byte
// row chunks through the row map by cp.async (the regroup folded into the loads) and the
// consumers fence the async proxy before wgmma reads them. Raster input whose key tiles are
// boxes of the token grid (raster_tma_mode) goes by TMA too, through 5-D maps. Schedule and
// masking are those of the portable kernel (key_ranges.cuh); only the producer walks the
// schedule: each stage carries the tile's key count and a last-tile flag (tile_meta).
#pragma once

#include "attention_fwd_sm80.cuh"
#include "wgmma_ops.cuh"

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

namespace grat::cuda {

template <int D>
struct Sm90Tile {
  static constexpr int BM = 128, BN = 128, kThreads = 384;
  static constexpr int CH = D / 8;
  static constexpr int kStages = D == 128 ? 3 : 4;
  // + per stage: full and empty mbarriers and the tile's metadata word (tile_meta).
  static constexpr int kSmemBytes = (BM * D + 2 * kStages * BN * D) * 2 + 1024 + 20 * kStages;
  // Element offset of (row r, 16-byte chunk c) in a [D/64][rows][64] 128B-swizzled tile.
  template <int ROWS>
  static __device__ __forceinline__ int off(int r, int c) {
    return (c >> 3) * ROWS * 64 + r * 64 + (((c & 7) ^ (r & 7)) << 3);
  }
};

// Shared-memory matrix descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(const void* ptr, uint32_t lbo, uint32_t sbo) {
  const uint32_t a = smem_addr(ptr);
  return static_cast<uint64_t>((a & 0x3FFFF) >> 4) |
         (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (uint64_t{1} << 62);
}
// A descriptor from its two halves. The start address sits in the low 14 bits in 16-byte
// units and never carries (shared addresses < 256 KiB), so a tile's descriptors are a base
// low word plus constants: no per-wgmma address arithmetic or register moves.
__device__ __forceinline__ uint64_t desc_at(uint32_t lo, uint32_t hi) {
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

template <typename T, int N>
__device__ __forceinline__ void wg_ss(float* d, uint64_t da, uint64_t db, int scale_d) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (N == 128)
      wgmma::ss_bf16_n128(d, da, db, scale_d);
    else
      wgmma::ss_bf16_n64(d, da, db, scale_d);
  } else {
    if constexpr (N == 128)
      wgmma::ss_f16_n128(d, da, db, scale_d);
    else
      wgmma::ss_f16_n64(d, da, db, scale_d);
  }
}
template <typename T, int N>
__device__ __forceinline__ void wg_ss0(float* d, uint64_t da, uint64_t db) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (N == 128)
      wgmma::ss0_bf16_n128(d, da, db);
    else
      wgmma::ss0_bf16_n64(d, da, db);
  } else {
    if constexpr (N == 128)
      wgmma::ss0_f16_n128(d, da, db);
    else
      wgmma::ss0_f16_n64(d, da, db);
  }
}
template <typename T, int N>
__device__ __forceinline__ void wg_rs_tb(float* d, const uint32_t* a, uint64_t db) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    if constexpr (N == 128)
      wgmma::rs_bf16_n128_tb(d, a, db);
    else
      wgmma::rs_bf16_n64_tb(d, a, db);
  } else {
    if constexpr (N == 128)
      wgmma::rs_f16_n128_tb(d, a, db);
    else
      wgmma::rs_f16_n64_tb(d, a, db);
  }
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
}
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
// Arrives once this thread's earlier cp.async copies have landed (count set at init).
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t* bar) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(smem_addr(bar))
               : "memory");
}
// Arrives once and expects `bytes` more from async (TMA) copies before the phase completes.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
               "r"(bytes)
               : "memory");
}
// One TMA box of a 4-D tensor map into shared memory; completes bytes on `bar`.
__device__ __forceinline__ void tma_load_4d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            int c2, int c3, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(smem_addr(bar))
      : "memory");
}
// One TMA box of a 5-D tensor map (raster-order image tokens, see raster_box).
__device__ __forceinline__ void tma_load_5d(void* dst, const CUtensorMap* map, int c0, int c1,
                                            int c2, int c3, int c4, uint64_t* bar) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3, %4, %5, %6}], [%7];\n" ::"r"(smem_addr(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(c4),
      "r"(smem_addr(bar))
      : "memory");
}
// Raster coordinates (x0, y0, t0) of the key tile at group-major image position i (a
// multiple of BN inside one group: ranges start on group boundaries and the launcher
// checked that BN divides the group size and no group is clipped).
__host__ __device__ __forceinline__ void raster_box(const Geometry& g, int32_t i, int32_t& x0,
                                                    int32_t& y0, int32_t& t0) {
  const int32_t gw = static_cast<int32_t>(g.group[2]), gh = static_cast<int32_t>(g.group[1]);
  const int32_t gt = static_cast<int32_t>(g.group[0]);
  const int32_t plane = gw * gh, gs = plane * gt;
  const int32_t ngw = static_cast<int32_t>(g.ngroups[2]), ngh = static_cast<int32_t>(g.ngroups[1]);
  const int32_t grp = i / gs, o = i - grp * gs;
  const int32_t ot = o / plane, oy = (o - ot * plane) / gw;
  const int32_t gx = grp % ngw, gy = (grp / ngw) % ngh, gz = grp / (ngw * ngh);
  x0 = gx * gw;
  y0 = gy * gh + oy;
  t0 = gz * gt + ot;
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred done;\nWAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT_%=;\n}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void named_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// A stage's metadata word: the keys of the tile inside its range (masking past a ragged end;
// clamped to BN) and whether another tile follows (bit 16).
template <int BN>
__device__ __forceinline__ int32_t tile_meta(int32_t keys, int more) {
  return (keys < BN ? keys : BN) | (more ? 1 << 16 : 0);
}
// Read by every consumer thread, broadcast from lane 0: the loop's exit test is then
// warp-uniform for the compiler, which keeps the stage index and descriptors in uniform
// registers.
__device__ __forceinline__ int32_t read_meta(const int32_t* meta, int s) {
  int32_t v;
  asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(smem_addr(meta + s)) : "memory");
  return __shfl_sync(0xffffffffu, v, 0);
}
__device__ __forceinline__ int32_t meta_keys(int32_t m) { return m & 0xFFFF; }
__device__ __forceinline__ bool meta_more(int32_t m) { return (m >> 16) != 0; }
// The start of the tile after the one at k0 in range [rs, re) (moving to the next range when
// this one ends); more = 0 when the schedule is exhausted.
template <int BN>
__device__ __forceinline__ int32_t next_tile(KeyRangeGen& gen, const Geometry& g, int32_t k0,
                                             int32_t& rs, int32_t& re, int& more) {
  k0 += BN;
  if (k0 < re) return k0;
  more = gen.next(g, rs, re);
  return rs;
}

// Warp-specialised: warps 0-7 are two consumer warpgroups (64 query rows each, wgmma,
// registers raised to 232), warps 8-11 the producer warpgroup (registers lowered to 40;
// TMA or cp.async of K/V tiles into a STAGES-deep ring; full/empty mbarriers per stage).
// Without ping-pong the consumer warpgroups never wait for each other; with it they take
// turns issuing their products, so one's softmax runs under the other's.
template <typename T, int D, bool kTma>
__global__ void __launch_bounds__(384, 1)
    attention_fwd_sm90(const __grid_constant__ AttentionParams p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using TL = Sm90Tile<D>;
  constexpr int BM = TL::BM, BN = TL::BN, CH = TL::CH, STAGES = TL::kStages;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t{1023});
  T* sK = sQ + BM * D;           // STAGES stages
  T* sV = sK + STAGES * BN * D;  // STAGES stages
  uint64_t* full = reinterpret_cast<uint64_t*>(sV + STAGES * BN * D);
  uint64_t* empty = full + STAGES;
  int32_t* meta = reinterpret_cast<int32_t*>(empty + STAGES);  // per stage, see tile_meta

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  CtaTile ct;
  if (!decode_cta<BM>(p, ct)) return;
  if (p.debug_only != 0 && (p.debug_only == 1) != ct.text_query) return;
  const int head = ct.head, b = ct.b;
  const int32_t q0 = ct.q0, q1 = ct.q1;

  if (tid == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbar_init(&full[s], kTma ? 1 : 129);
      mbar_init(&empty[s], 256);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp >= 8) {
    // Producer warpgroup: the only one that walks the block schedule. Each stage carries a
    // metadata word (tile_meta) to the consumers with the tile, so their critical path holds
    // no schedule arithmetic.
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    // Valid text tokens of this batch item: only the schedule needs them.
    const int32_t valid = p.valid_per_batch ? p.valid_per_batch[b] : p.valid_uniform;
    KeyRangeGen gen;
    gen.init(p, ct, valid);
    int32_t rs, re;
    gen.next(p.geom, rs, re);  // every query reads at least its own group / the image
    if constexpr (kTma) {
      // Group-major K/V: each tile is BN consecutive rows, fetched by one thread as D/64
      // swizzled boxes per tensor (rows past the tensor end arrive as zeros; rows past the
      // range end are masked by the consumers). The other producer threads leave.
      // Raster input (raster_tma 2 / 3): image tiles are boxes of the token grid through
      // the 5-D maps, text rows (never permuted) go through the 4-D ones.
      if (warp != 8 || lane != 0) return;
      int32_t k0 = rs;
      for (int n = 0, more = 1; more; ++n) {
        const int s = n % STAGES;
        const int32_t lim = re - k0;
        const int32_t knext = next_tile<BN>(gen, p.geom, k0, rs, re, more);
        mbar_wait(&empty[s], ((n / STAGES) & 1) ^ 1);
        meta[s] = tile_meta<BN>(lim, more);
        mbar_expect_tx(&full[s], 2 * BN * D * sizeof(T));  // release: meta[s] is visible
        const int32_t i = k0 - p.image_begin;
        if (p.raster_tma && i >= 0 && i < p.image_tokens) {
          int32_t x0, y0, t0;
          raster_box(p.geom, i, x0, y0, t0);
          // 2: (D, W, H, heads, batch); 3: (D, W, H, T, heads), batch 1.
          const int c3 = p.raster_tma == 2 ? head : t0, c4 = p.raster_tma == 2 ? b : head;
#pragma unroll
          for (int h = 0; h < D / 64; ++h) {
            tma_load_5d(sK + s * BN * D + h * BN * 64, &p.tma_k_img, h * 64, x0, y0, c3, c4,
                        &full[s]);
            tma_load_5d(sV + s * BN * D + h * BN * 64, &p.tma_v_img, h * 64, x0, y0, c3, c4,
                        &full[s]);
          }
        } else {
#pragma unroll
          for (int h = 0; h < D / 64; ++h) {
            tma_load_4d(sK + s * BN * D + h * BN * 64, &p.tma_k, h * 64, k0, head, b, &full[s]);
            tma_load_4d(sV + s * BN * D + h * BN * 64, &p.tma_v, h * 64, k0, head, b, &full[s]);
          }
        }
        k0 = knext;
      }
      return;
    }
    const T* gk = static_cast<const T*>(p.k) + b * p.k_sb + head * p.k_sh;
    const T* gv = static_cast<const T*>(p.v) + b * p.v_sb + head * p.v_sh;
    // Warp pw fills rows [32 pw, 32 pw + 32) of each tile: one row-map load per lane, then
    // 32 / CH rows per instruction, each 16-byte chunk by one lane (coalesced rows).
    const int pw = warp - 8;
    constexpr int RPI = 32 / CH;  // rows per warp instruction
    int32_t k0 = rs;
    for (int n = 0, more = 1; more; ++n) {
      const int s = n % STAGES;
      const int32_t mypos = k0 + pw * 32 + lane;
      const int32_t myrow = mypos < re ? mem_row(p.rowmap, mypos) : -1;
      const int32_t lim = re - k0;
      const int32_t knext = next_tile<BN>(gen, p.geom, k0, rs, re, more);
      mbar_wait(&empty[s], ((n / STAGES) & 1) ^ 1);
      if (tid == 256) {
        meta[s] = tile_meta<BN>(lim, more);
        mbar_arrive(&full[s]);  // release: meta[s] is visible with the tile
      }
      T* dk = sK + s * BN * D;
      T* dv = sV + s * BN * D;
      const int c = lane % CH;
#pragma unroll
      for (int m = 0; m < 32; m += RPI) {
        const int r = m + lane / CH;
        const int32_t row = __shfl_sync(0xffffffffu, myrow, r);
        const bool ok = row >= 0;
        const int64_t rr = ok ? row : 0;
        cp_async16(dk + TL::template off<BN>(pw * 32 + r, c), gk + rr * p.k_sn + c * 8, ok);
        cp_async16(dv + TL::template off<BN>(pw * 32 + r, c), gv + rr * p.v_sn + c * 8, ok);
      }
      mbar_arrive_cp_async(&full[s]);
      k0 = knext;
    }
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    return;
  }

  // Consumers: warpgroup wg owns query rows [wg * 64, wg * 64 + 64) of the tile.
  asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
  // Broadcast so the compiler knows wg is warp-uniform: the descriptors below then live in
  // uniform registers.
  const int wg = __shfl_sync(0xffffffffu, warp >> 2, 0), wrow = (warp & 3) * 16;
  {
    const T* gq = static_cast<const T*>(p.q) + b * p.q_sb + head * p.q_sh;
    const int t = tid & 127;
#pragma unroll
    for (int i = t; i < 64 * CH; i += 128) {
      const int r = wg * 64 + i / CH, c = i % CH;
      const int64_t pos = q0 + r;
      const bool ok = pos < q1;
      const T* src = ok ? gq + static_cast<int64_t>(mem_row(p.rowmap, pos)) * p.q_sn + c * 8 : gq;
      cp_async16(sQ + TL::template off<BM>(r, c), src, ok);
    }
    cp_async_commit();
    cp_async_wait<0>();
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    named_sync(1 + wg, 128);
  }

  float o[D / 2];
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.f, 0.f};
  const float sl2 = p.scale_log2;
  const int col0 = (lane & 3) * 2;

  // Descriptor low words of this warpgroup's Q rows, K and V stage 0 (units of 16 bytes);
  // every descriptor shares the high word (stride 1024 bytes, 128-byte swizzle).
  const uint64_t dq = smem_desc(sQ + wg * 64 * 64, 16, 1024);
  const uint32_t q_lo = static_cast<uint32_t>(dq), d_hi = static_cast<uint32_t>(dq >> 32);
  const uint32_t k_lo = static_cast<uint32_t>(smem_desc(sK, 16, 1024));
  const uint32_t v_lo = static_cast<uint32_t>(smem_desc(sV, BN * 64 * 2, 1024));
  constexpr uint32_t kStageU = BN * D * 2 / 16;  // one K or V stage in descriptor units
  auto issue_s = [&](float* sc, int stage) {
    const uint32_t kb = k_lo + stage * kStageU;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      // 16-key slice kk: 64-column half kk / 4, 32-byte step kk % 4 inside the swizzle atom.
      const uint64_t da = desc_at(q_lo + ((kk >> 2) * BM * 64 * 2 + (kk & 3) * 32) / 16, d_hi);
      const uint64_t db = desc_at(kb + ((kk >> 2) * BN * 64 * 2 + (kk & 3) * 32) / 16, d_hi);
      if (kk == 0) {
        wg_ss0<T, BN>(sc, da, db);
      } else {
        wg_ss<T, BN>(sc, da, db, 1);
      }
    }
  };
  auto issue_pv = [&](const uint32_t(*pa)[4], int stage) {
    const uint32_t vb = v_lo + stage * kStageU;
#pragma unroll
    for (int j = 0; j < BN / 16; ++j) {
      // V rows j*16.., MN-major: 64-wide d blocks BN*64 elements apart, 8-key blocks 1 KiB apart.
      wg_rs_tb<T, D>(o, pa[j], desc_at(vb + j * 16 * 64 * 2 / 16, d_hi));
    }
  };
  // Online softmax of one S tile: masks keys >= lim, updates m/l, returns the O rescale
  // factors and P (as the register-A fragments of the P V product).
  auto softmax = [&](float* sc, int32_t lim, uint32_t(*pa)[4], float* corr) {
    if (lim < BN) {  // ragged range end: mask the keys past it (uniform branch)
#pragma unroll
      for (int nb = 0; nb < BN / 8; ++nb) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          if (nb * 8 + col0 + (j & 1) >= lim) sc[nb * 4 + j] = -INFINITY;
        }
      }
    }
    // Reductions in 4 independent chains per row (short dependency chains: few warps per
    // scheduler hide little latency).
    // The chains start from their first elements, not from -inf / 0 (the compiler keeps
    // max(-inf, x) and 0 + x: 16 instructions per tile).
    float mx4[2][4], rs4[2][4];
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
      const float a = fmaxf(sc[nb * 4 + 0], sc[nb * 4 + 1]);
      const float c = fmaxf(sc[nb * 4 + 2], sc[nb * 4 + 3]);
      mx4[0][nb & 3] = nb < 4 ? a : fmaxf(mx4[0][nb & 3], a);
      mx4[1][nb & 3] = nb < 4 ? c : fmaxf(mx4[1][nb & 3], c);
    }
    float mx[2], rsum[2];
#pragma unroll
    for (int r = 0; r < 2; ++r)
      mx[r] = fmaxf(fmaxf(mx4[r][0], mx4[r][1]), fmaxf(mx4[r][2], mx4[r][3]));
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      mx[r] = fmaxf(m_r[r], mx[r] * sl2);  // scale > 0: max commutes with it
      corr[r] = ex2(m_r[r] - mx[r]);
      m_r[r] = mx[r];
    }
#pragma unroll
    for (int nb = 0; nb < BN / 8; ++nb) {
      const float p0 = ex2(fmaf(sc[nb * 4 + 0], sl2, -mx[0]));
      const float p1 = ex2(fmaf(sc[nb * 4 + 1], sl2, -mx[0]));
      const float p2 = ex2(fmaf(sc[nb * 4 + 2], sl2, -mx[1]));
      const float p3 = ex2(fmaf(sc[nb * 4 + 3], sl2, -mx[1]));
      rs4[0][nb & 3] = nb < 4 ? p0 + p1 : rs4[0][nb & 3] + (p0 + p1);
      rs4[1][nb & 3] = nb < 4 ? p2 + p3 : rs4[1][nb & 3] + (p2 + p3);
      pa[nb >> 1][(nb & 1) * 2 + 0] = MmaType<T>::pack(p0, p1);
      pa[nb >> 1][(nb & 1) * 2 + 1] = MmaType<T>::pack(p2, p3);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      rsum[r] = (rs4[r][0] + rs4[r][1]) + (rs4[r][2] + rs4[r][3]);
      l_r[r] = l_r[r] * corr[r] + rsum[r];
    }
  };

  // Software pipeline (FlashAttention-3's intra-warpgroup overlap): while the tensor cores
  // run S_n = Q K_n^T and O += P_{n-1} V_{n-1}, this warpgroup computes softmax(S_n).
  float sc[BN / 2];
  uint32_t pprev[BN / 16][4];
  float corr[2];
  mbar_wait(&full[0], 0);
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  int32_t m = read_meta(meta, 0);
  wgmma::fence();
  issue_s(sc, 0);
  wgmma::commit();
  wgmma::wait<0>();
  softmax(sc, meta_keys(m), pprev, corr);
  int prev_stage = 0;
  auto advance = [&]() { return meta_more(m); };
  // One pipeline step on tile n: P_{n-1} comes in `pin`, P_n leaves in `pout` (two register
  // sets used alternately, so no copy sits between the wgmma issues).
  auto step = [&](int n, const uint32_t(*pin)[4], uint32_t(*pout)[4]) {
    const int s = n % STAGES;
    mbar_wait(&full[s], (n / STAGES) & 1);
    if constexpr (!kTma) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    m = read_meta(meta, s);
    if (p.pingpong) named_sync(3 + wg, 256);  // my turn to issue
    wgmma::fence();
    issue_s(sc, s);
    wgmma::commit();
    issue_pv(pin, prev_stage);
    wgmma::commit();
    if (p.pingpong) named_arrive(3 + (wg ^ 1), 256);  // the other warpgroup's turn
    wgmma::wait<1>();                                 // S_n ready; P_{n-1} V_{n-1} may still run
    softmax(sc, meta_keys(m), pout, corr);
    wgmma::wait<0>();
    mbar_arrive(&empty[prev_stage]);
    // Rescale O only where some row's max moved (after the first tiles it rarely does).
    if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
#pragma unroll
      for (int db = 0; db < D / 8; ++db) {
        o[db * 4 + 0] *= corr[0];
        o[db * 4 + 1] *= corr[0];
        o[db * 4 + 2] *= corr[1];
        o[db * 4 + 3] *= corr[1];
      }
    }
    prev_stage = s;
  };
  // The last P V product (each call site names its register set statically).
  auto finish = [&](const uint32_t(*plast)[4]) {
    wgmma::fence();
    issue_pv(plast, prev_stage);
    wgmma::commit();
    wgmma::wait<0>();
    mbar_arrive(&empty[prev_stage]);
  };
  uint32_t pnext[BN / 16][4];
  // Ping-pong: warpgroup 0 goes first; every step's arrive is matched by one sync of the
  // other warpgroup, and warpgroup 0 consumes warpgroup 1's last arrive after the loop.
  if (p.pingpong && wg == 1) named_arrive(3, 256);
  for (int n = 1;; n += 2) {
    if (!advance()) {
      finish(pprev);
      break;
    }
    step(n, pprev, pnext);
    if (!advance()) {
      finish(pnext);
      break;
    }
    step(n + 1, pnext, pprev);
  }
  if (p.pingpong && wg == 0) named_sync(3, 256);

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 1);
    l_r[r] += __shfl_xor_sync(0xffffffffu, l_r[r], 2);
    l_r[r] = 1.f / l_r[r];
  }
  // Stage this warpgroup's rows in its part of sQ (only it read them), then store.
  const int row0 = wg * 64 + wrow + (lane >> 2);
#pragma unroll
  for (int db = 0; db < D / 8; ++db) {
    const int c = db * 8 + (lane & 3) * 2;
    *reinterpret_cast<uint32_t*>(sQ + TL::template off<BM>(row0, c >> 3) + (c & 7)) =
        MmaType<T>::pack(o[db * 4 + 0] * l_r[0], o[db * 4 + 1] * l_r[0]);
    *reinterpret_cast<uint32_t*>(sQ + TL::template off<BM>(row0 + 8, c >> 3) + (c & 7)) =
        MmaType<T>::pack(o[db * 4 + 2] * l_r[1], o[db * 4 + 3] * l_r[1]);
  }
  named_sync(1 + wg, 128);
  T* go = static_cast<T*>(p.o) + b * p.o_sb + head * p.o_sh;
  const int t = tid & 127;
#pragma unroll
  for (int i = t; i < 64 * CH; i += 128) {
    const int r = wg * 64 + i / CH, c = i % CH;
    const int64_t pos = q0 + r;
    if (pos < q1) {
      *reinterpret_cast<uint4*>(go + static_cast<int64_t>(mem_row(p.rowmap, pos)) * p.o_sn +
                                c * 8) =
          *reinterpret_cast<const uint4*>(sQ + TL::template off<BM>(r, c));
    }
  }
#endif
}

// cuTensorMapEncodeTiled through the runtime (no libcuda link); nullptr if unavailable.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault,
                                         &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      fn = nullptr;
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// One tiled map of T elements in the consumers' smem layout (128-byte swizzle, dense element
// strides, 256-byte L2 promotion); false when the driver lacks the entry point or refuses the
// dims / strides. strides[i]: bytes between consecutive indices of dim i + 1.
template <typename T>
bool encode_tiled_map(CUtensorMap* map, const void* base, cuuint32_t rank, const cuuint64_t* dims,
                      const cuuint64_t* strides, const cuuint32_t* box) {
  const auto encode = tensor_map_encoder();
  if (encode == nullptr) return false;
  const cuuint32_t estr[5] = {1, 1, 1, 1, 1};
  const auto dtype = std::is_same_v<T, __nv_bfloat16> ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                                      : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
  return encode(map, dtype, rank, const_cast<void*>(base), dims, strides, box, estr,
                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// Encodes the 4-D TMA maps of K and V (dims D, N, H, B; box 64 x rows) into p; false when
// they cannot be encoded (the caller then loads by cp.async).
template <typename T>
bool encode_kv_maps(AttentionParams& p, int d, int rows) {
  const cuuint64_t n = static_cast<cuuint64_t>(p.text_tokens) + p.image_tokens;
  auto one = [&](CUtensorMap* map, const void* base, int64_t sn, int64_t sh, int64_t sb) {
    const cuuint64_t dims[4] = {static_cast<cuuint64_t>(d), n, static_cast<cuuint64_t>(p.heads),
                                static_cast<cuuint64_t>(p.batch)};
    const cuuint64_t strides[3] = {static_cast<cuuint64_t>(sn) * sizeof(T),
                                   static_cast<cuuint64_t>(sh) * sizeof(T),
                                   static_cast<cuuint64_t>(sb) * sizeof(T)};
    const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(rows), 1, 1};
    return encode_tiled_map<T>(map, base, 4, dims, strides, box);
  };
  return one(&p.tma_k, p.k, p.k_sn, p.k_sh, p.k_sb) && one(&p.tma_v, p.v, p.v_sn, p.v_sh, p.v_sb);
}

// Raster (model-order) image tokens can go by TMA when every key tile is one box of the
// token grid: no clipped edge groups, BN-row tiles that are whole rows of a group's plane
// (or whole planes), and at most 5 tensor dims. Returns 2 (2-D grid: dims D, W, H, heads,
// batch), 3 (3-D grid, batch 1: D, W, H, T, heads) or 0 (cp.async gather).
inline int raster_tma_mode(const AttentionParams& p, int bn) {
  const Geometry& g = p.geom;
  if (g.pattern == Pattern::kFull) return 0;  // full runs on SDPA; its own-kernel path stays
  for (int a = 0; a < 3; ++a) {
    if (g.grid[a] % g.group[a] != 0) return 0;
  }
  const int64_t plane = g.group[1] * g.group[2], gs = plane * g.group[0];
  if (gs % bn != 0) return 0;
  const bool rows_box = plane >= bn ? plane % bn == 0 && bn % g.group[2] == 0
                                    : bn % plane == 0 && g.group[0] % (bn / plane) == 0;
  if (!rows_box || p.text_tokens + p.image_tokens >= (int64_t{1} << 31)) return 0;
  // Leading text that does not fill whole tiles merges with the first image range into
  // tiles that straddle both (not a box).
  if (p.text_begin == 0 && p.text_tokens % bn != 0) return 0;
  if (g.dims == 2) return 2;
  return p.batch == 1 ? 3 : 0;
}

// The 5-D maps of the image part of K and V for raster_tma (see raster_tma_mode).
template <typename T>
bool encode_image_maps(AttentionParams& p, int d, int bn) {
  const Geometry& g = p.geom;
  const int64_t plane = g.group[1] * g.group[2];
  const cuuint32_t bw = static_cast<cuuint32_t>(g.group[2]);
  const cuuint32_t bh = static_cast<cuuint32_t>(plane >= bn ? bn / g.group[2] : g.group[1]);
  const cuuint32_t bt = static_cast<cuuint32_t>(plane >= bn ? 1 : bn / plane);
  auto one = [&](CUtensorMap* map, const void* base, int64_t sn, int64_t sh, int64_t sb) {
    const T* img = static_cast<const T*>(base) + static_cast<int64_t>(p.image_begin) * sn;
    const cuuint64_t e = sizeof(T);
    const cuuint64_t w = g.grid[2], h = g.grid[1], t = g.grid[0];
    cuuint64_t dims[5] = {static_cast<cuuint64_t>(d), w, h, static_cast<cuuint64_t>(p.heads),
                          static_cast<cuuint64_t>(p.batch)};
    cuuint64_t strides[4] = {sn * e, w * sn * e, sh * e, sb * e};
    cuuint32_t box[5] = {64, bw, bh, 1, 1};
    if (p.raster_tma == 3) {
      dims[3] = t;
      dims[4] = static_cast<cuuint64_t>(p.heads);
      strides[2] = h * w * sn * e;
      strides[3] = sh * e;
      box[3] = bt;
    }
    return encode_tiled_map<T>(map, img, 5, dims, strides, box);
  };
  return one(&p.tma_k_img, p.k, p.k_sn, p.k_sh, p.k_sb) &&
         one(&p.tma_v_img, p.v, p.v_sn, p.v_sh, p.v_sb);
}

// Returns false (launching nothing) when this binary holds no sm_90a code for the device.
// Group-major K/V go by TMA (unless p.tma == 0 or the maps cannot be encoded); ping-pong is
// on by default with TMA (measured faster in every case) and off with cp.async (mixed).
template <typename T, int D>
bool launch_attention_sm90(const AttentionParams& p, cudaStream_t stream) {
  using TL = Sm90Tile<D>;
  AttentionParams pl = p;
  pl.raster_tma = p.rowmap == nullptr ? 0 : raster_tma_mode(p, TL::BN);
  pl.use_tma = p.tma && (p.rowmap == nullptr || pl.raster_tma) &&
               encode_kv_maps<T>(pl, D, TL::BN) &&
               (pl.raster_tma == 0 || encode_image_maps<T>(pl, D, TL::BN));
  if (pl.pingpong < 0) pl.pingpong = pl.use_tma;
  auto kernel = pl.use_tma ? attention_fwd_sm90<T, D, true> : attention_fwd_sm90<T, D, false>;
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess || attr.binaryVersion < 90) {
    cudaGetLastError();
    return false;
  }
  cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, TL::kSmemBytes);
  const int64_t blocks = (static_cast<int64_t>(p.text_tiles) + p.image_tiles) * p.batch * p.heads;
  if (blocks > 0) {
    kernel<<<static_cast<unsigned>(blocks), TL::kThreads, TL::kSmemBytes, stream>>>(pl);
  }
  return true;
}

}  // namespace grat::cuda
