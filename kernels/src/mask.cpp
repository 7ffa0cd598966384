// Dense boolean mask of a layout, for tests and for driving FlexAttention with the
// identical mask in benchmarks. Built from per-token group coordinates, vectorised.
#include <ATen/ATen.h>

#include "grat/ops.h"
#include "internal.h"

namespace grat::detail {

at::Tensor attention_mask_impl(const Layout& l, int64_t valid) {
  const int64_t n = l.total_tokens();
  TORCH_CHECK(n * n <= (int64_t{1} << 30), "grat: attention_mask is for small layouts: ", num(n),
              " tokens need ", num(n * n), " mask entries; the limit is 2^30");
  const Geometry& g = l.geom;
  const int64_t img = g.image_tokens(), base = l.image_begin();
  // Group coordinates of every token in model (raster) order; text rows get -1.
  at::Tensor coords = at::full({3, n}, -1, at::kLong);
  auto c = coords.accessor<int64_t, 2>();
  for (int64_t r = 0; r < img; ++r) {
    const int64_t w = r % g.grid[2], h = (r / g.grid[2]) % g.grid[1];
    const int64_t t = r / (g.grid[2] * g.grid[1]);
    c[0][base + r] = t / g.group[0];
    c[1][base + r] = h / g.group[1];
    c[2][base + r] = w / g.group[2];
  }
  if (l.grouped) coords = coords.index_select(1, grouped_permutation(l));
  const at::Tensor is_img = coords[0] >= 0;
  const at::Tensor is_text = is_img.logical_not();
  const at::Tensor pos = at::arange(n, at::kLong) - l.text_begin();
  const at::Tensor valid_key = is_text & (pos >= 0) & (pos < valid);

  at::Tensor region;
  auto diff = [&](int a) { return (coords[a].unsqueeze(1) - coords[a].unsqueeze(0)).abs(); };
  auto same = [&](int a) { return coords[a].unsqueeze(1) == coords[a].unsqueeze(0); };
  switch (g.pattern) {
    case Pattern::kFull:
      region = at::ones({n, n}, at::kBool);
      break;
    case Pattern::kB:
      region = (diff(0) <= g.radius) & (diff(1) <= g.radius) & (diff(2) <= g.radius);
      break;
    case Pattern::kX:
      region = g.dims == 2 ? (same(1) | same(2)) : (same(0) | same(1) | same(2));
      break;
  }
  const at::Tensor img_key = is_img.unsqueeze(0);
  return valid_key.unsqueeze(0) | (is_text.unsqueeze(1) & img_key) |
         (is_img.unsqueeze(1) & img_key & region);
}

}  // namespace grat::detail
