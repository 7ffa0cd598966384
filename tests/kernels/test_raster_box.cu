// The sm90 kernel's raster key tiles (raster_box, raster_tma_mode): every BN-row key tile of
// group-major positions must be exactly the TMA box it loads from the model-order grid.
#include <gtest/gtest.h>

#include "cuda/attention_fwd_sm90.cuh"

namespace grat::cuda {
namespace {

constexpr int kBN = 128;

Geometry MakeGeometry(int dims, int64_t t, int64_t h, int64_t w, int64_t gt, int64_t gh,
                      int64_t gw) {
  Geometry g{};
  g.dims = dims;
  g.pattern = Pattern::kB;
  g.radius = 1;
  const int64_t grid[3] = {t, h, w}, group[3] = {gt, gh, gw};
  for (int a = 0; a < 3; ++a) {
    g.grid[a] = grid[a];
    g.group[a] = group[a];
    g.ngroups[a] = (grid[a] + group[a] - 1) / group[a];
  }
  return g;
}

int Mode(const Geometry& g, int batch, int32_t text = 0, bool text_first = true) {
  AttentionParams p{};
  p.geom = g;
  p.batch = batch;
  p.heads = 1;
  p.text_tokens = text;
  p.image_tokens = static_cast<int32_t>(g.image_tokens());
  p.text_begin = text_first ? 0 : p.image_tokens;
  p.image_begin = text_first ? text : 0;
  return raster_tma_mode(p, kBN);
}

// Each tile's 128 positions, read as the box (w fastest, then h, then t) starting at the
// tile's coordinates, are the positions Geometry::grouped_index gives those tokens.
void ExpectTilesAreBoxes(const Geometry& g) {
  const int64_t plane = g.group[1] * g.group[2];
  const int64_t bw = g.group[2], bh = plane >= kBN ? kBN / g.group[2] : g.group[1];
  const int64_t bt = plane >= kBN ? 1 : kBN / plane;
  ASSERT_EQ(bw * bh * bt, kBN);
  for (int64_t i = 0; i < g.image_tokens(); i += kBN) {
    int32_t x0, y0, t0;
    raster_box(g, static_cast<int32_t>(i), x0, y0, t0);
    for (int64_t tt = 0; tt < bt; ++tt) {
      for (int64_t yy = 0; yy < bh; ++yy) {
        for (int64_t xx = 0; xx < bw; ++xx) {
          const int64_t r = ((t0 + tt) * g.grid[1] + (y0 + yy)) * g.grid[2] + (x0 + xx);
          ASSERT_EQ(g.grouped_index(r), i + (tt * bh + yy) * bw + xx) << "tile at " << i;
        }
      }
    }
  }
}

TEST(RasterBox, FluxGroupsAreHalfGroupBoxes) {
  const Geometry g = MakeGeometry(2, 1, 32, 48, 1, 16, 16);
  EXPECT_EQ(Mode(g, 2), 2);
  ExpectTilesAreBoxes(g);
}

TEST(RasterBox, GroupsOfOneTileAndTallGroups) {
  ExpectTilesAreBoxes(MakeGeometry(2, 1, 16, 64, 1, 8, 16));
  ExpectTilesAreBoxes(MakeGeometry(2, 1, 64, 32, 1, 32, 8));
}

TEST(RasterBox, VideoGroupsSpanTwoFrames) {
  const Geometry g = MakeGeometry(3, 8, 16, 24, 4, 8, 8);
  EXPECT_EQ(Mode(g, 1), 3);
  ExpectTilesAreBoxes(g);
  ExpectTilesAreBoxes(MakeGeometry(3, 4, 32, 32, 2, 8, 8));
}

TEST(RasterBox, LayoutsThatAreNotBoxesKeepTheGather) {
  EXPECT_EQ(Mode(MakeGeometry(2, 1, 45, 37, 1, 16, 16), 1), 0);  // clipped edge groups
  EXPECT_EQ(Mode(MakeGeometry(2, 1, 30, 50, 1, 10, 10), 1), 0);  // 100 tokens per group
  EXPECT_EQ(Mode(MakeGeometry(2, 1, 48, 48, 1, 16, 24), 1), 0);  // rows of 24: no 128 box
  EXPECT_EQ(Mode(MakeGeometry(3, 8, 16, 24, 4, 8, 8), 2), 0);    // 3-D with batch: 6 dims
  const Geometry g = MakeGeometry(2, 1, 32, 32, 1, 16, 16);
  // Leading text that does not fill whole tiles merges with the first image group into
  // tiles that straddle both (found on the GPU: 64 leading text tokens).
  EXPECT_EQ(Mode(g, 1, 64, /*text_first=*/true), 0);
  EXPECT_EQ(Mode(g, 1, 512, /*text_first=*/true), 2);
  EXPECT_EQ(Mode(g, 1, 64, /*text_first=*/false), 2);
  Geometry full = g;
  full.pattern = Pattern::kFull;
  EXPECT_EQ(Mode(full, 1), 0);
}

}  // namespace
}  // namespace grat::cuda
