// Device-side block schedule of GRAT attention: which key ranges a query tile reads.
//
// Everything is derived from group coordinates; nothing is read from memory. Key ranges are
// half-open intervals of sequence positions (text where the model put it, image tokens in
// group-major order). Within one (t, h) strip of the group grid, groups that are adjacent in
// w are adjacent in group-major order, so a query group's region is a handful of "cells"
// (one per (t, h) strip it touches), each a contiguous range [first group, last group].
// Adjacent ranges are merged, so a GRAT-B region whose w-window covers whole strips, or the
// text range followed by the first image range, stream as one range.
#pragma once

#include "attention_params.h"

namespace grat::cuda {

// What a CTA works on: its query rows, its (batch, head), and for image tiles of B/X the
// coordinates of its query group. All 32-bit with the launch's FastDivs (positions and block
// counts are < 2^31, checked by the launcher).
struct CtaTile {
  int32_t q0, q1;  // query rows [q0, q1) (sequence positions)
  int32_t b, head;
  int32_t c[3];  // query group (t, h, w) of an image tile of B/X
  bool text_query;
};

struct KeyRangeGen {
  // Stage: 0 leading text, 1 image cells, 2 trailing text, 3 done.
  int stage;
  bool whole_image;  // text queries and pattern `full`: the image is one range
  // 32-bit state (positions < 2^31, checked by the launcher) keeps the generator's
  // registers out of the way of the accumulators.
  int32_t a[3];  // query group coordinates
  int32_t t, h, t_lo, t_hi, h_lo, h_hi;
  int32_t text_begin, valid, image_begin;
  bool text_first;
  bool has_pend;
  int32_t pend_s, pend_e;

  // Group-major offset and size of group (t, h, w) (geometry.h's, in 32 bits).
  static __device__ __forceinline__ int32_t extent(const Geometry& g, int ax, int32_t gi) {
    const int32_t n = static_cast<int32_t>(g.grid[ax]), k = static_cast<int32_t>(g.group[ax]);
    const int32_t rest = n - gi * k;
    return rest < k ? rest : k;
  }
  static __device__ __forceinline__ int32_t offset(const Geometry& g, int32_t t, int32_t h,
                                                   int32_t w) {
    const int32_t lt = extent(g, 0, t), lh = extent(g, 1, h);
    return t * static_cast<int32_t>(g.group[0] * g.grid[1] * g.grid[2]) +
           lt * h * static_cast<int32_t>(g.group[1] * g.grid[2]) +
           lt * lh * w * static_cast<int32_t>(g.group[2]);
  }

  __device__ __forceinline__ void init(const AttentionParams& p, const CtaTile& ct,
                                       int32_t valid_text) {
    const bool text_query = ct.text_query;
    const Geometry& g = p.geom;
    whole_image = text_query || g.pattern == Pattern::kFull;
    text_begin = p.text_begin;
    valid = valid_text;
    image_begin = p.image_begin;
    text_first = p.text_begin == 0;
    has_pend = false;
    stage = 0;
    if (!whole_image) {
      a[0] = ct.c[0];
      a[1] = ct.c[1];
      a[2] = ct.c[2];
      if (g.pattern == Pattern::kB) {
        const int32_t r = g.radius;
        const int32_t n0 = static_cast<int32_t>(g.ngroups[0]),
                      n1 = static_cast<int32_t>(g.ngroups[1]);
        t_lo = a[0] - r > 0 ? a[0] - r : 0;
        t_hi = a[0] + r < n0 - 1 ? a[0] + r : n0 - 1;
        h_lo = a[1] - r > 0 ? a[1] - r : 0;
        h_hi = a[1] + r < n1 - 1 ? a[1] + r : n1 - 1;
      } else {  // X: every strip, each contributing its whole row or the query's column
        t_lo = 0;
        t_hi = static_cast<int32_t>(g.ngroups[0]) - 1;
        h_lo = 0;
        h_hi = static_cast<int32_t>(g.ngroups[1]) - 1;
      }
      t = t_lo;
      h = h_lo;
    }
  }

  // One raw (unmerged) range; false when exhausted.
  __device__ __forceinline__ bool raw(const Geometry& g, int32_t& s, int32_t& e) {
    while (true) {
      if (stage == 0) {
        stage = 1;
        if (text_first && valid > 0) {
          s = text_begin;
          e = text_begin + valid;
          return true;
        }
      } else if (stage == 1) {
        if (whole_image) {
          stage = 2;
          s = image_begin;
          e = image_begin + static_cast<int32_t>(g.image_tokens());
          return true;
        }
        if (t > t_hi) {
          stage = 2;
          continue;
        }
        const int32_t n2 = static_cast<int32_t>(g.ngroups[2]);
        int32_t w_lo, w_hi;
        if (g.pattern == Pattern::kB) {
          const int32_t r = g.radius;
          w_lo = a[2] - r > 0 ? a[2] - r : 0;
          w_hi = a[2] + r < n2 - 1 ? a[2] + r : n2 - 1;
        } else {
          const bool whole_row = (g.dims == 3 && t == a[0]) || h == a[1];
          w_lo = whole_row ? 0 : a[2];
          w_hi = whole_row ? n2 - 1 : a[2];
        }
        s = image_begin + offset(g, t, h, w_lo);
        e = image_begin + offset(g, t, h, w_hi) +
            extent(g, 0, t) * extent(g, 1, h) * extent(g, 2, w_hi);
        if (++h > h_hi) {
          h = h_lo;
          ++t;
        }
        return true;
      } else if (stage == 2) {
        stage = 3;
        if (!text_first && valid > 0) {
          s = text_begin;
          e = text_begin + valid;
          return true;
        }
      } else {
        return false;
      }
    }
  }

  // Next merged range; false when exhausted.
  __device__ __forceinline__ bool next(const Geometry& g, int32_t& s, int32_t& e) {
    if (!has_pend && !raw(g, pend_s, pend_e)) return false;
    s = pend_s;
    e = pend_e;
    has_pend = false;
    int32_t s2, e2;
    while (raw(g, s2, e2)) {
      if (s2 == e) {
        e = e2;
      } else {
        pend_s = s2;
        pend_e = e2;
        has_pend = true;
        break;
      }
    }
    return true;
  }
};

// Query tile index and (batch * heads + head) of block L (see AttentionParams::head_major).
__device__ __forceinline__ void decode_block(const AttentionParams& p, uint32_t L, uint32_t& tile,
                                             uint32_t& bh) {
  const uint32_t bh_count = p.div_bh.d, text_blocks = p.text_tiles * bh_count;
  if (L < text_blocks || !p.head_major) {
    tile = p.div_bh.div(L);
    bh = L - tile * bh_count;
  } else {
    const uint32_t li = L - text_blocks;
    bh = p.div_image_tiles.div(li);
    tile = p.text_tiles + (li - bh * p.image_tiles);
  }
}

// Coordinates of the i-th query group in launch order. panel_rows > 0: within each t, groups
// go in panels of panel_rows group rows, column by column inside a panel (Triton's grouped
// order), so the CTAs in flight share their rows' and columns' key groups in L2.
__device__ __forceinline__ void group_of(const AttentionParams& p, uint32_t i, int32_t c[3]) {
  const uint32_t nw = p.div_nw.d;
  if (p.panel_rows <= 0) {
    const uint32_t q = p.div_nw.div(i), t = p.div_nh.div(q);
    c[0] = t;
    c[1] = q - t * p.div_nh.d;
    c[2] = i - q * nw;
    return;
  }
  const uint32_t t = p.div_plane.div(i), l = i - t * p.div_plane.d, pr = p.div_pr.d;
  const uint32_t panel = p.div_panel.div(l), within = l - panel * p.div_panel.d;
  const uint32_t left = p.div_nh.d - panel * pr, rows = left < pr ? left : pr;
  const uint32_t w = rows == pr ? p.div_pr.div(within) : within / rows;  // last panel: short
  c[0] = t;
  c[1] = panel * pr + (within - w * rows);
  c[2] = w;
}

// Decodes this CTA's tile; false for the empty tail tiles of edge groups.
template <int BM>
__device__ __forceinline__ bool decode_cta(const AttentionParams& p, CtaTile& ct) {
  uint32_t tile, bh;
  decode_block(p, blockIdx.x, tile, bh);
  ct.b = p.div_heads.div(bh);
  ct.head = bh - ct.b * p.div_heads.d;
  ct.text_query = tile < static_cast<uint32_t>(p.text_tiles);
  if (ct.text_query) {
    ct.q0 = p.text_begin + tile * BM;
    const int32_t end = p.text_begin + p.text_tokens;
    ct.q1 = ct.q0 + BM < end ? ct.q0 + BM : end;
  } else if (p.geom.pattern == Pattern::kFull) {
    ct.q0 = p.image_begin + (tile - p.text_tiles) * BM;
    const int32_t end = p.image_begin + p.image_tokens;
    ct.q1 = ct.q0 + BM < end ? ct.q0 + BM : end;
  } else {
    const uint32_t it = tile - p.text_tiles, gi = p.div_tpg.div(it);
    const int32_t sub = it - gi * p.div_tpg.d;
    group_of(p, gi, ct.c);
    const Geometry& g = p.geom;
    const int32_t gsize = KeyRangeGen::extent(g, 0, ct.c[0]) * KeyRangeGen::extent(g, 1, ct.c[1]) *
                          KeyRangeGen::extent(g, 2, ct.c[2]);
    if (sub * BM >= gsize) return false;  // edge group: fewer tiles than an interior one
    const int32_t g0 = p.image_begin + KeyRangeGen::offset(g, ct.c[0], ct.c[1], ct.c[2]);
    ct.q0 = g0 + sub * BM;
    ct.q1 = ct.q0 + BM < g0 + gsize ? ct.q0 + BM : g0 + gsize;
  }
  return true;
}

}  // namespace grat::cuda
