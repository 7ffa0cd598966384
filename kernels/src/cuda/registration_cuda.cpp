// CUDA implementation of grat::attention: input checks, the work decomposition, and the
// launch of the forward kernels (Hopper wgmma on sm_90, portable mma.sync on sm_80+; pattern
// full through SDPA, dense_full.cpp). Unsupported inputs fail with a TORCH_CHECK naming what
// is supported; nothing falls back silently. Integers in messages go through std::to_string:
// on the GPU host (torch 2.11 venv), streaming an integer into c10::str's ostringstream from
// this library segfaulted in std::ostream::_M_insert<long> (cause not established; see
// notes/kernels.md).
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <string>

#include "../index_cache.h"
#include "../internal.h"
#include "../rope.h"
#include "attention_params.h"
#include "dense_full.h"
#include "rope_cuda.h"

namespace grat {
namespace {

constexpr int64_t kBM = 128;  // query rows per CTA (Tile<D>::BM and Sm90Tile<D>::BM)

// GRAT_SCHEDULE=tile selects the tile-major block order (default: head-major).
bool head_major_schedule() {
  const char* e = std::getenv("GRAT_SCHEDULE");
  return e == nullptr || std::string(e) != "tile";
}

// Pattern `full`: PyTorch's SDPA (cuDNN) when every text token is valid, our kernel when
// some are padding. SDPA would need the padding keys cut out (a copy of K and V, and a key
// count off the 128 alignment cuDNN is fast at); ours masks them in place. H200, 32x48x80
// video + 256 text, 24 x 128: SDPA 306 ms all valid / 334 ms with 77 valid; ours 301 / 300
// (bench/model/full_paths.py). GRAT_FULL_KERNEL=own or =sdpa forces one path.
bool full_via_sdpa(const Layout& l, int64_t batch) {
  const char* e = std::getenv("GRAT_FULL_KERNEL");
  if (e != nullptr && std::string(e) == "own") return false;
  if (e != nullptr && std::string(e) == "sdpa") return true;
  for (int64_t b = 0; b < batch; ++b) {
    if (l.valid_for(b) < l.text_tokens) return false;
  }
  return true;
}

bool force_portable() {
  const char* e = std::getenv("GRAT_FORCE_PORTABLE");
  return e != nullptr && e[0] == '1';
}

// The kernel reads 16-byte chunks of each row: last dim contiguous, 8-element aligned.
at::Tensor kernel_ready(const at::Tensor& x) {
  const bool ok = x.stride(3) == 1 && x.stride(0) % 8 == 0 && x.stride(1) % 8 == 0 &&
                  x.stride(2) % 8 == 0 && reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  return ok ? x : x.contiguous();
}

at::Tensor attention_cuda(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                          c10::IntArrayRef grid, c10::IntArrayRef group, c10::string_view pattern,
                          int64_t radius, int64_t text_tokens, bool text_first,
                          c10::IntArrayRef valid_text, bool grouped, std::optional<double> scale) {
  const Layout l = make_layout(grid.vec(), group.vec(), std::string(pattern.data(), pattern.size()),
                               radius, text_tokens, text_first, valid_text.vec(), grouped);
  detail::check_attention_inputs(q_in, k_in, v_in, l);
  const double sc = detail::resolve_scale(q_in, scale);
  const auto dt = q_in.scalar_type();
  TORCH_CHECK(dt == at::kBFloat16 || dt == at::kHalf,
              "grat: the CUDA attention supports bfloat16 and float16; got ", dt,
              " (use the CPU reference for float32/float64)");
  const int64_t D = q_in.size(3);
  TORCH_CHECK(D == 64 || D == 128, "grat: the CUDA attention supports head_dim 64 and 128; got ",
              std::to_string(D));
  const int64_t B = q_in.size(0), N = q_in.size(1), H = q_in.size(2);
  TORCH_CHECK(N < std::numeric_limits<int32_t>::max(),
              "grat: the CUDA attention supports fewer than 2^31 tokens; got ", std::to_string(N));
  const auto props = at::cuda::getDeviceProperties(q_in.device().index());
  TORCH_CHECK(props->major >= 8,
              "grat: the CUDA attention needs compute capability 8.0 or "
              "newer; device has ",
              std::to_string(props->major), ".", std::to_string(props->minor));

  c10::cuda::CUDAGuard guard(q_in.device());
  at::Tensor out = at::empty({B, N, H, D}, q_in.options());
  if (B == 0) return out;
  if (l.geom.pattern == Pattern::kFull && full_via_sdpa(l, B) && !force_portable()) {
    return cuda::full_attention_sdpa(q_in, k_in, v_in, l, sc);
  }
  const at::Tensor q = kernel_ready(q_in), k = kernel_ready(k_in), v = kernel_ready(v_in);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();

  cuda::AttentionParams p{};
  p.q = q.data_ptr();
  p.k = k.data_ptr();
  p.v = v.data_ptr();
  p.o = out.data_ptr();
  p.q_sb = q.stride(0), p.q_sn = q.stride(1), p.q_sh = q.stride(2);
  p.k_sb = k.stride(0), p.k_sn = k.stride(1), p.k_sh = k.stride(2);
  p.v_sb = v.stride(0), p.v_sn = v.stride(1), p.v_sh = v.stride(2);
  p.o_sb = out.stride(0), p.o_sn = out.stride(1), p.o_sh = out.stride(2);
  p.geom = l.geom;
  p.batch = static_cast<int32_t>(B);
  p.heads = static_cast<int32_t>(H);
  p.text_tokens = static_cast<int32_t>(l.text_tokens);
  p.text_begin = static_cast<int32_t>(l.text_begin());
  p.image_begin = static_cast<int32_t>(l.image_begin());
  p.image_tokens = static_cast<int32_t>(l.geom.image_tokens());
  p.scale_log2 = static_cast<float>(sc * 1.4426950408889634);

  // Valid text per batch item: a scalar unless the items differ; then a device array, cached
  // per list of counts (no host copy after the first call, so the call can be captured).
  bool uniform = true;
  for (int64_t b = 1; b < B; ++b) uniform = uniform && l.valid_for(b) == l.valid_for(0);
  at::Tensor valid_dev;
  if (uniform) {
    p.valid_uniform = static_cast<int32_t>(l.valid_for(0));
  } else {
    std::vector<int64_t> vals(static_cast<size_t>(B));
    for (int64_t b = 0; b < B; ++b) vals[static_cast<size_t>(b)] = l.valid_for(b);
    valid_dev = detail::small_ints("valid_text", vals, at::kInt, q.device());
    p.valid_per_batch = valid_dev.data_ptr<int32_t>();
  }

  // Image tokens in raster order: a device map from group-major position to memory row,
  // computed arithmetically from the geometry (folds regroup/ungroup into loads/stores).
  // Pattern full reads every key for every query: token order does not matter, no map.
  at::Tensor rowmap;
  if (!l.grouped && l.geom.num_groups() > 1 && l.geom.pattern != Pattern::kFull) {
    rowmap = at::empty({N}, q.options().dtype(at::kInt));
    cuda::launch_rowmap(rowmap.data_ptr<int32_t>(), l.geom, p.text_tokens, p.image_begin,
                        static_cast<int32_t>(N), stream);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    p.rowmap = rowmap.data_ptr<int32_t>();
  }

  // Work decomposition: text tiles first (they read every key), then image tiles.
  p.text_tiles = static_cast<int32_t>((l.text_tokens + kBM - 1) / kBM);
  if (l.geom.pattern == Pattern::kFull) {
    p.tiles_per_group = 0;
    p.image_tiles = static_cast<int32_t>((l.geom.image_tokens() + kBM - 1) / kBM);
  } else {
    const int64_t gmax = l.geom.group[0] * l.geom.group[1] * l.geom.group[2];
    p.tiles_per_group = static_cast<int32_t>((gmax + kBM - 1) / kBM);
    p.image_tiles = static_cast<int32_t>(p.tiles_per_group * l.geom.num_groups());
  }
  p.head_major = head_major_schedule() ? 1 : 0;
  // X reads whole group rows and columns: panels of 8 rows share both in L2 (H100, same
  // call: flux 4096^2 / 8192^2 X 2.5% faster). B reads a compact neighbourhood: row-major
  // measured as fast or faster. GRAT_PANEL=n overrides (0: row-major).
  p.panel_rows = l.geom.pattern == Pattern::kX ? 8 : 0;
  if (const char* e = std::getenv("GRAT_PANEL")) p.panel_rows = std::atoi(e);
  p.panel_rows = std::clamp<int32_t>(p.panel_rows, 0, static_cast<int32_t>(l.geom.ngroups[1]));
  {
    const auto u = [](int64_t v) { return cuda::FastDiv::make(static_cast<uint32_t>(v)); };
    const int64_t nw = l.geom.ngroups[2], nh = l.geom.ngroups[1];
    p.div_bh = u(B * H);
    p.div_heads = u(H);
    p.div_image_tiles = u(p.image_tiles);
    p.div_tpg = u(p.tiles_per_group);
    p.div_nw = u(nw);
    p.div_nh = u(nh);
    p.div_plane = u(nw * nh);
    p.div_pr = u(p.panel_rows);
    p.div_panel = u(p.panel_rows * nw);
  }
  {
    // A/B switches: GRAT_PINGPONG 0/1 (unset: the sm90 launcher's default), GRAT_TMA=0
    // (cp.async loads instead of TMA).
    const char* e = std::getenv("GRAT_PINGPONG");
    p.pingpong = e == nullptr ? -1 : e[0] == '1';
    const char* t = std::getenv("GRAT_TMA");
    p.tma = t == nullptr || t[0] != '0';
    const char* d = std::getenv("GRAT_DEBUG_ONLY");  // time one class of query tiles alone
    p.debug_only = d == nullptr                ? 0
                   : std::string(d) == "text"  ? 1
                   : std::string(d) == "image" ? 2
                                               : 0;
  }
  const int64_t blocks = (static_cast<int64_t>(p.text_tiles) + p.image_tiles) * B * H;
  TORCH_CHECK(blocks < std::numeric_limits<int32_t>::max(),
              "grat: too many query tiles x batch x heads for one launch (", std::to_string(blocks),
              ")");

  // Hopper (sm_90) takes the wgmma kernel unless GRAT_FORCE_PORTABLE=1 asks for the
  // portable one (tests and benchmarks compare both).
  bool done = false;
  if (props->major == 9 && !force_portable()) {
    done = dt == at::kBFloat16 ? cuda::launch_attention_sm90_bf16(p, static_cast<int>(D), stream)
                               : cuda::launch_attention_sm90_fp16(p, static_cast<int>(D), stream);
  }
  if (!done) {
    if (dt == at::kBFloat16) {
      cuda::launch_attention_bf16(p, static_cast<int>(D), stream);
    } else {
      cuda::launch_attention_fp16(p, static_cast<int>(D), stream);
    }
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// regroup / ungroup of a CUDA tensor: the row map from the geometry on the device (no host
// index tensor, no copy) and one bandwidth-bound row copy (index_select on dim 1 of a
// [B, N, H, D] tensor ran at ~0.3 TB/s).
at::Tensor permute_cuda(const at::Tensor& x_in, c10::IntArrayRef grid, c10::IntArrayRef group,
                        int64_t dim, int64_t text_tokens, bool text_first, bool gather) {
  int64_t d = dim;
  const Layout l = detail::permute_layout(x_in, grid, group, d, text_tokens, text_first);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t n = x.size(d);
  TORCH_CHECK(n < std::numeric_limits<int32_t>::max(), "grat: regroup supports fewer than 2^31 ",
              "tokens; got ", std::to_string(n));
  if (x.numel() == 0) return out;
  const int64_t outer = x.numel() / (n * x.stride(d));  // contiguous: [outer, n, stride(d)]
  const int64_t row_bytes = x.stride(d) * static_cast<int64_t>(x.element_size());
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor map = at::empty({n}, x.options().dtype(at::kInt));
  cuda::launch_rowmap(map.data_ptr<int32_t>(), l.geom, static_cast<int32_t>(l.text_tokens),
                      static_cast<int32_t>(l.image_begin()), static_cast<int32_t>(n), stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  cuda::launch_permute_rows(out.data_ptr(), x.data_ptr(), map.data_ptr<int32_t>(), outer, n,
                            row_bytes, gather, stream);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// rope: the one-pass kernel for bf16/fp16 with 16-byte aligned rows, else the ATen reference.
at::Tensor rope_cuda(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_rope_inputs(x, cos, sin);
  const auto dt = x.scalar_type();
  const bool aligned = x.stride(3) == 1 && x.size(3) % 8 == 0 && x.stride(0) % 8 == 0 &&
                       x.stride(1) % 8 == 0 && x.stride(2) % 8 == 0 &&
                       reinterpret_cast<uintptr_t>(x.data_ptr()) % 16 == 0;
  if ((dt != at::kBFloat16 && dt != at::kHalf) || !aligned) return rope_reference(x, cos, sin);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor c = cos.contiguous(), s = sin.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  cuda::RopeParams p{x.size(0) * x.size(1) * x.size(2),
                     x.size(1),
                     x.size(2),
                     x.size(3),
                     x.stride(0),
                     x.stride(1),
                     x.stride(2)};
  cuda::launch_rope(out.data_ptr(), x.data_ptr(), c.data_ptr<float>(), s.data_ptr<float>(),
                    dt == at::kBFloat16, p, at::cuda::getCurrentCUDAStream());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor regroup_cuda(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                        int64_t dim, int64_t text_tokens, bool text_first) {
  return permute_cuda(x, grid, group, dim, text_tokens, text_first, /*gather=*/true);
}

at::Tensor ungroup_cuda(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                        int64_t dim, int64_t text_tokens, bool text_first) {
  return permute_cuda(x, grid, group, dim, text_tokens, text_first, /*gather=*/false);
}

}  // namespace
}  // namespace grat

TORCH_LIBRARY_IMPL(grat, CUDA, m) {
  m.impl("attention", &grat::attention_cuda);
  m.impl("regroup", &grat::regroup_cuda);
  m.impl("rope", &grat::rope_cuda);
  m.impl("ungroup", &grat::ungroup_cuda);
}
