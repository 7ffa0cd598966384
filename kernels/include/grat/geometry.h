// Group geometry of a GRAT layout: shared by the CPU reference and the CUDA kernels.
//
// A token grid (t, h, w) (2-D grids use t = 1) is cut into groups of group[] tokens per
// axis. Where the group does not divide the grid, the last group on that axis is smaller
// ("edge group"); its region is defined on group indices exactly like any other group's
// (GRAT-B: groups within `radius` on every axis, clipped at the border; GRAT-X: groups
// sharing a row/column in 2-D, a t/h/w plane in 3-D). Border groups therefore read fewer
// key groups; nothing is shifted or padded.
//
// Group-major order: groups in raster order over the group grid, tokens in raster order
// inside their (possibly clipped) group box.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define GRAT_HD __host__ __device__ __forceinline__
#else
#define GRAT_HD inline
#endif

namespace grat {

enum class Pattern : int32_t { kFull = 0, kB = 1, kX = 2 };

// Plain old data so kernels can take it by value.
struct Geometry {
  int32_t dims;  // 2 or 3 (number of spatial axes of the caller's grid)
  Pattern pattern;
  int32_t radius;  // GRAT-B neighbourhood radius in groups
  int32_t pad_;
  int64_t grid[3];     // tokens per axis (t, h, w)
  int64_t group[3];    // group shape per axis
  int64_t ngroups[3];  // ceil(grid / group)

  GRAT_HD int64_t image_tokens() const { return grid[0] * grid[1] * grid[2]; }
  GRAT_HD int64_t num_groups() const { return ngroups[0] * ngroups[1] * ngroups[2]; }

  // Length along `axis` of the group with index gi on that axis (edge groups are shorter).
  GRAT_HD int64_t extent(int axis, int64_t gi) const {
    int64_t rest = grid[axis] - gi * group[axis];
    return rest < group[axis] ? rest : group[axis];
  }

  GRAT_HD void group_coords(int64_t g, int64_t c[3]) const {
    c[2] = g % ngroups[2];
    c[1] = (g / ngroups[2]) % ngroups[1];
    c[0] = g / (ngroups[2] * ngroups[1]);
  }

  GRAT_HD int64_t group_size(int64_t g) const {
    int64_t c[3];
    group_coords(g, c);
    return extent(0, c[0]) * extent(1, c[1]) * extent(2, c[2]);
  }

  // First group-major position of group g: all full t-slabs before it, then the row
  // strips of its slab, then the groups to its left in its strip.
  GRAT_HD int64_t group_offset(int64_t g) const {
    int64_t c[3];
    group_coords(g, c);
    const int64_t lt = extent(0, c[0]), lh = extent(1, c[1]);
    return c[0] * group[0] * grid[1] * grid[2] + lt * c[1] * group[1] * grid[2] +
           lt * lh * c[2] * group[2];
  }

  // Group-major position of the image token at raster index r.
  GRAT_HD int64_t grouped_index(int64_t r) const {
    const int64_t w = r % grid[2], h = (r / grid[2]) % grid[1], t = r / (grid[2] * grid[1]);
    const int64_t c0 = t / group[0], c1 = h / group[1], c2 = w / group[2];
    const int64_t g = (c0 * ngroups[1] + c1) * ngroups[2] + c2;
    const int64_t lh = extent(1, c1), lw = extent(2, c2);
    return group_offset(g) + ((t - c0 * group[0]) * lh + (h - c1 * group[1])) * lw +
           (w - c2 * group[2]);
  }

  // Does query group qg read key group kg?
  GRAT_HD bool attends(int64_t qg, int64_t kg) const {
    if (pattern == Pattern::kFull) return true;
    int64_t a[3], b[3];
    group_coords(qg, a);
    group_coords(kg, b);
    if (pattern == Pattern::kB) {
      for (int i = 0; i < 3; ++i) {
        const int64_t d = a[i] > b[i] ? a[i] - b[i] : b[i] - a[i];
        if (d > radius) return false;
      }
      return true;
    }
    // Criss-cross: 2-D same row or column; 3-D same t, h or w plane.
    if (dims == 2) return a[1] == b[1] || a[2] == b[2];
    return a[0] == b[0] || a[1] == b[1] || a[2] == b[2];
  }
};

}  // namespace grat
