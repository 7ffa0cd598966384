// Sequence position -> memory row map of a layout whose image tokens arrive in raster order.
#include "attention_params.h"

namespace grat::cuda {
namespace {

__global__ void rowmap_kernel(int32_t* map, Geometry geom, int32_t text_tokens,
                              int32_t image_begin, int32_t total) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= total) return;
  const int64_t img = i - image_begin;
  if (img < 0 || img >= geom.image_tokens()) {
    map[i] = static_cast<int32_t>(i);  // text stays where the model put it
  } else {
    // Raster image token `img` sits at group-major position grouped_index(img).
    map[image_begin + geom.grouped_index(img)] = static_cast<int32_t>(i);
  }
}

}  // namespace

void launch_rowmap(int32_t* rowmap, const Geometry& geom, int32_t text_tokens,
                   int32_t image_begin, int32_t total, cudaStream_t stream) {
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  rowmap_kernel<<<blocks, threads, 0, stream>>>(rowmap, geom, text_tokens, image_begin, total);
}

}  // namespace grat::cuda
