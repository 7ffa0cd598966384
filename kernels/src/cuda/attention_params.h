// Parameters and launchers of the CUDA GRAT attention forward (portable sm_80+ path).
//
// One plain struct describes a call (FlashAttention style): pointers, strides in elements,
// the geometry, and the token layout. The kernels work on *sequence positions* in
// group-major order (text tokens where the model put them, image tokens in group-major
// order); `rowmap[p]` gives the memory row of sequence position p (nullptr: identity, the
// caller's tokens are already group-major). Regrouping is thereby folded into the loads
// and the output stores: no separate permutation pass over q/k/v/o.
#pragma once

#include <cuda.h>  // CUtensorMap (the type only: no driver-library link)
#include <cuda_runtime.h>

#include <cstdint>

#include "grat/geometry.h"

namespace grat::cuda {

// Division by a divisor fixed for a launch, as a multiply-high and a shift (round-up
// method, Granlund-Montgomery): exact for 0 <= n < 2^31. The CTA prologue decodes its tile
// with these; the 64-bit divisions it used were out-of-line calls in every thread, ~7% of
// B's executed instructions.
struct FastDiv {
  uint32_t d, mul, shift;
  static FastDiv make(uint32_t divisor) {
    FastDiv f{divisor < 1 ? 1u : divisor, 0, 0};
    while ((uint64_t{1} << f.shift) < f.d) ++f.shift;
    const uint64_t span = (uint64_t{1} << f.shift) - f.d;
    f.mul = static_cast<uint32_t>(((uint64_t{1} << 32) * span) / f.d + 1);
    return f;
  }
  GRAT_HD uint32_t div(uint32_t n) const {
#if defined(__CUDA_ARCH__)
    return (__umulhi(n, mul) + n) >> shift;
#else
    return static_cast<uint32_t>(((static_cast<uint64_t>(n) * mul) >> 32) + n) >> shift;
#endif
  }
};

struct AttentionParams {
  const void* q;
  const void* k;
  const void* v;
  void* o;
  // Strides in elements (the head_dim stride is 1).
  int64_t q_sb, q_sn, q_sh;
  int64_t k_sb, k_sn, k_sh;
  int64_t v_sb, v_sn, v_sh;
  int64_t o_sb, o_sn, o_sh;
  const int32_t* rowmap;  // sequence position -> memory row; nullptr = identity

  Geometry geom;
  int32_t batch, heads;
  int32_t text_tokens, text_begin, image_begin, image_tokens;
  int32_t valid_uniform;           // valid text tokens when valid_per_batch == nullptr
  const int32_t* valid_per_batch;  // [batch] or nullptr
  float scale_log2;                // softmax scale * log2(e)

  // Work decomposition (filled by the launcher): query tiles are text tiles first (they
  // read every key: longest first), then image tiles. For B/X, each group owns
  // tiles_per_group tiles (edge groups leave the tail ones empty); for `full`, image
  // tiles are plain BM-row slices of the image.
  int32_t text_tiles;
  int32_t tiles_per_group;
  int32_t image_tiles;
  // Block order: text tiles of every (batch, head) first; then image tiles either
  // head-major (all tiles of one (batch, head) back to back: its K/V, ~34 MB at Flux 4096^2,
  // stays in L2 while neighbouring groups read it) or tile-major (all heads of one tile).
  int32_t head_major;
  // Group order inside a head: 0 row-major, > 0 panels of this many group rows walked column
  // by column (key_ranges.cuh's group_of; the launcher's default: 8 for X, 0 for B).
  int32_t panel_rows;
  // The prologue's divisors (launcher): batch * heads, heads, image_tiles, tiles_per_group,
  // groups along w and h, groups per t-slab, panel_rows and panel_rows * groups along w.
  FastDiv div_bh, div_heads, div_image_tiles, div_tpg, div_nw, div_nh, div_plane, div_pr, div_panel;
  // sm90: the two consumer warpgroups take turns issuing their matrix products (named
  // barriers, FlashAttention-3's "ping-pong"), so one's softmax runs under the other's GEMMs.
  // -1: the launcher's default (on with TMA loads), 0 / 1: forced (GRAT_PINGPONG).
  int32_t pingpong;
  // sm90, group-major K/V (rowmap == nullptr): tiles arrive by TMA through these 4-D maps
  // (dims D, N, H, B; box 64 x BN rows, 128-byte swizzle) instead of cp.async row copies.
  // `tma` asks for it (GRAT_TMA=0 turns it off); the sm90 launcher sets `use_tma` when the
  // maps were encoded.
  int32_t tma;
  int32_t use_tma;
  CUtensorMap tma_k, tma_v;
  // Raster K/V with TMA (the launcher's raster_tma_mode): 0 off, 2 or 3 = which 5-D maps of
  // the image tokens (the text rows use tma_k / tma_v).
  int32_t raster_tma;
  CUtensorMap tma_k_img, tma_v_img;
  // Diagnostic (sm90, GRAT_DEBUG_ONLY=text|image): 1 runs only the text query tiles, 2 only
  // the image ones, so a benchmark can time each class of CTA alone. 0: everything.
  int32_t debug_only;
};

// Fills rowmap[0, total) (int32, device) from the layout's geometry on `stream`.
void launch_rowmap(int32_t* rowmap, const Geometry& geom, int32_t text_tokens, int32_t image_begin,
                   int32_t total, cudaStream_t stream);

// Regroup (gather: dst row p = src row rowmap[p]) or ungroup (scatter: dst row rowmap[p] =
// src row p) of a contiguous [outer, n, row_bytes] tensor.
void launch_permute_rows(void* dst, const void* src, const int32_t* rowmap, int64_t outer,
                         int64_t n, int64_t row_bytes, bool gather, cudaStream_t stream);

// Forward kernels; head_dim 64 or 128; both paths use 128-row query tiles (the tile
// fields of p). Portable path (sm_80+):
void launch_attention_bf16(AttentionParams& p, int head_dim, cudaStream_t stream);
void launch_attention_fp16(AttentionParams& p, int head_dim, cudaStream_t stream);
// Hopper path (wgmma, sm_90a); returns false, launching nothing, when the binary holds no
// sm_90a code for the current device.
bool launch_attention_sm90_bf16(AttentionParams& p, int head_dim, cudaStream_t stream);
bool launch_attention_sm90_fp16(AttentionParams& p, int head_dim, cudaStream_t stream);

}  // namespace grat::cuda
