// Sequence position -> memory row map of a layout whose image tokens arrive in raster order,
// and the row copy that regroups / ungroups a whole tensor through it (bandwidth bound).
#include <algorithm>
#include <cstdint>

#include "attention_params.h"

namespace grat::cuda {
namespace {

__global__ void rowmap_kernel(int32_t* map, Geometry geom, int32_t text_tokens, int32_t image_begin,
                              int32_t total) {
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

// One CTA per (token, outer slice): copies one contiguous row of `row_vecs` vectors.
template <typename V>
__global__ void permute_rows_kernel(V* __restrict__ dst, const V* __restrict__ src,
                                    const int32_t* __restrict__ map, int64_t outer, int64_t n,
                                    int64_t row_vecs, bool gather) {
  const int64_t p = blockIdx.x;
  const int64_t m = map[p];
  const int64_t from = gather ? m : p, to = gather ? p : m;
  for (int64_t o = blockIdx.y; o < outer; o += gridDim.y) {
    const V* s = src + (o * n + from) * row_vecs;
    V* d = dst + (o * n + to) * row_vecs;
    for (int64_t i = threadIdx.x; i < row_vecs; i += blockDim.x) d[i] = s[i];
  }
}

template <typename V>
void launch_permute(void* dst, const void* src, const int32_t* map, int64_t outer, int64_t n,
                    int64_t row_bytes, bool gather, cudaStream_t stream) {
  const int64_t vecs = row_bytes / static_cast<int64_t>(sizeof(V));
  const int threads = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(32, vecs)));
  const dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(std::min<int64_t>(outer, 65535)));
  permute_rows_kernel<V><<<grid, threads, 0, stream>>>(
      static_cast<V*>(dst), static_cast<const V*>(src), map, outer, n, vecs, gather);
}

}  // namespace

void launch_permute_rows(void* dst, const void* src, const int32_t* rowmap, int64_t outer,
                         int64_t n, int64_t row_bytes, bool gather, cudaStream_t stream) {
  if (outer == 0 || n == 0 || row_bytes == 0) return;
  // The widest vector that divides the row and both base addresses.
  const auto bits = static_cast<uint64_t>(row_bytes) | reinterpret_cast<uintptr_t>(dst) |
                    reinterpret_cast<uintptr_t>(src);
  if (bits % 16 == 0) {
    launch_permute<uint4>(dst, src, rowmap, outer, n, row_bytes, gather, stream);
  } else if (bits % 8 == 0) {
    launch_permute<uint2>(dst, src, rowmap, outer, n, row_bytes, gather, stream);
  } else if (bits % 4 == 0) {
    launch_permute<uint32_t>(dst, src, rowmap, outer, n, row_bytes, gather, stream);
  } else if (bits % 2 == 0) {
    launch_permute<uint16_t>(dst, src, rowmap, outer, n, row_bytes, gather, stream);
  } else {
    launch_permute<uint8_t>(dst, src, rowmap, outer, n, row_bytes, gather, stream);
  }
}

void launch_rowmap(int32_t* rowmap, const Geometry& geom, int32_t text_tokens, int32_t image_begin,
                   int32_t total, cudaStream_t stream) {
  if (total == 0) return;
  const int threads = 256;
  const unsigned blocks = static_cast<unsigned>((total + threads - 1) / threads);
  rowmap_kernel<<<blocks, threads, 0, stream>>>(rowmap, geom, text_tokens, image_begin, total);
}

}  // namespace grat::cuda
