// TORCH_LIBRARY(grat): op schemas, CPU and Meta kernels, and the C++ wrappers of ops.h.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "grat/ops.h"
#include "grat/sdpa_pass.h"
#include "index_cache.h"
#include "internal.h"

namespace grat {
namespace {

std::vector<int64_t> vec(c10::IntArrayRef a) { return a.vec(); }
std::string str(c10::string_view s) { return std::string(s.data(), s.size()); }

Layout layout_of(c10::IntArrayRef grid, c10::IntArrayRef group, c10::string_view pattern,
                 int64_t radius, int64_t text_tokens, bool text_first, c10::IntArrayRef valid_text,
                 bool grouped) {
  return make_layout(vec(grid), vec(group), str(pattern), radius, text_tokens, text_first,
                     vec(valid_text), grouped);
}

using AttentionFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                               c10::IntArrayRef, c10::IntArrayRef, c10::string_view, int64_t,
                               int64_t, bool, c10::IntArrayRef, bool, std::optional<double>);

at::Tensor attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         c10::IntArrayRef grid, c10::IntArrayRef group, c10::string_view pattern,
                         int64_t radius, int64_t text_tokens, bool text_first,
                         c10::IntArrayRef valid_text, bool grouped, std::optional<double> scale) {
  const Layout l =
      layout_of(grid, group, pattern, radius, text_tokens, text_first, valid_text, grouped);
  detail::check_attention_inputs(q, k, v, l);
  return detail::attention_cpu_impl(q, k, v, l, detail::resolve_scale(q, scale));
}

at::Tensor attention_meta(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          c10::IntArrayRef grid, c10::IntArrayRef group, c10::string_view pattern,
                          int64_t radius, int64_t text_tokens, bool text_first,
                          c10::IntArrayRef valid_text, bool grouped, std::optional<double> scale) {
  const Layout l =
      layout_of(grid, group, pattern, radius, text_tokens, text_first, valid_text, grouped);
  detail::check_attention_inputs(q, k, v, l);
  detail::resolve_scale(q, scale);
  return at::empty_like(q, at::MemoryFormat::Contiguous);
}

}  // namespace

Layout detail::permute_layout(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                              int64_t& dim, int64_t text_tokens, bool text_first) {
  const Layout l =
      make_layout(vec(grid), vec(group), "full", 1, text_tokens, text_first, {}, false);
  TORCH_CHECK(x.dim() >= 1, "grat: regroup needs a tensor with at least one dim");
  const int64_t d = c10::maybe_wrap_dim(dim, x.dim());
  TORCH_CHECK(x.size(d) == l.total_tokens(), "grat: dim ", detail::num(dim), " of x has ",
              detail::num(x.size(d)),
              " tokens but text_tokens + prod(grid) = ", detail::num(l.total_tokens()));
  dim = d;
  return l;
}

namespace {

// CPU (and any device without its own kernel; CUDA has one, registration_cuda.cpp): the
// permutation is built on the host once per layout and device and then cached (index_cache.h).
at::Tensor permute_tokens(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                          int64_t dim, int64_t text_tokens, bool text_first, bool forward) {
  int64_t d = dim;
  const Layout l = detail::permute_layout(x, grid, group, d, text_tokens, text_first);
  if (x.is_meta()) return at::empty_like(x);  // index_select has no Meta kernel
  // Grid and group have one entry per axis (make_layout checked): their concatenation after
  // the axis count names the layout.
  std::vector<int64_t> key{static_cast<int64_t>(grid.size())};
  key.insert(key.end(), grid.begin(), grid.end());
  key.insert(key.end(), group.begin(), group.end());
  key.push_back(text_tokens);
  key.push_back(text_first ? 1 : 0);
  const at::Tensor perm =
      detail::IndexCache::global().get(forward ? "regroup" : "ungroup", key, x.device(), [&] {
        at::Tensor p = detail::grouped_permutation(l);
        if (!forward) p = detail::inverse_permutation(p);
        return p.to(x.device());
      });
  return x.index_select(d, perm);
}

at::Tensor regroup_op(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                      int64_t dim, int64_t text_tokens, bool text_first) {
  return permute_tokens(x, grid, group, dim, text_tokens, text_first, true);
}

at::Tensor ungroup_op(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                      int64_t dim, int64_t text_tokens, bool text_first) {
  return permute_tokens(x, grid, group, dim, text_tokens, text_first, false);
}

at::Tensor mask_op(c10::IntArrayRef grid, c10::IntArrayRef group, c10::string_view pattern,
                   int64_t radius, int64_t text_tokens, bool text_first, int64_t valid_text,
                   bool grouped) {
  TORCH_CHECK(valid_text >= -1, "grat: valid_text must be -1 (all) or in [0, text_tokens]; got ",
              detail::num(valid_text));
  const Layout l = make_layout(vec(grid), vec(group), str(pattern), radius, text_tokens, text_first,
                               {}, grouped);
  const int64_t valid = valid_text < 0 ? text_tokens : valid_text;
  TORCH_CHECK(valid <= text_tokens,
              "grat: valid_text must be in [0, text_tokens = ", detail::num(text_tokens), "]; got ",
              detail::num(valid_text));
  return detail::attention_mask_impl(l, valid);
}

using PermuteFn = at::Tensor(const at::Tensor&, c10::IntArrayRef, c10::IntArrayRef, int64_t,
                             int64_t, bool);

// Through the dispatcher, so CUDA tensors take the CUDA kernel.
at::Tensor permute_call(const char* name, const at::Tensor& x, const std::vector<int64_t>& grid,
                        const std::vector<int64_t>& group, int64_t dim, int64_t text_tokens,
                        bool text_first) {
  const auto op = c10::Dispatcher::singleton()
                      .findSchemaOrThrow((std::string("grat::") + name).c_str(), "")
                      .typed<PermuteFn>();
  return op.call(x, grid, group, dim, text_tokens, text_first);
}

}  // namespace

at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                     const std::string& pattern, int64_t radius, int64_t text_tokens,
                     bool text_first, const std::vector<int64_t>& valid_text, bool grouped,
                     std::optional<double> scale) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("grat::attention", "").typed<AttentionFn>();
  return op.call(q, k, v, grid, group, pattern, radius, text_tokens, text_first, valid_text,
                 grouped, scale);
}

at::Tensor regroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim, int64_t text_tokens,
                   bool text_first) {
  return permute_call("regroup", x, grid, group, dim, text_tokens, text_first);
}

at::Tensor ungroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim, int64_t text_tokens,
                   bool text_first) {
  return permute_call("ungroup", x, grid, group, dim, text_tokens, text_first);
}

at::Tensor attention_mask(const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                          const std::string& pattern, int64_t radius, int64_t text_tokens,
                          bool text_first, int64_t valid_text, bool grouped) {
  return mask_op(grid, group, pattern, radius, text_tokens, text_first, valid_text, grouped);
}

at::Tensor attention_with(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const Layout& l, std::optional<double> scale) {
  std::vector<int64_t> grid, group;
  for (int a = 3 - l.geom.dims; a < 3; ++a) {
    grid.push_back(l.geom.grid[a]);
    group.push_back(l.geom.group[a]);
  }
  return attention(q, k, v, grid, group, pattern_name(l.geom.pattern), l.geom.radius, l.text_tokens,
                   l.text_first, l.valid_text, l.grouped, scale);
}

}  // namespace grat

TORCH_LIBRARY(grat, m) {
  m.def(
      "attention(Tensor q, Tensor k, Tensor v, int[] grid, int[] group, str pattern=\"B\", "
      "int radius=1, int text_tokens=0, bool text_first=True, int[] valid_text=[], "
      "bool grouped=False, float? scale=None) -> Tensor");
  m.def(
      "regroup(Tensor x, int[] grid, int[] group, int dim=1, int text_tokens=0, "
      "bool text_first=True) -> Tensor",
      &grat::regroup_op);
  m.def(
      "ungroup(Tensor x, int[] grid, int[] group, int dim=1, int text_tokens=0, "
      "bool text_first=True) -> Tensor",
      &grat::ungroup_op);
  m.def(
      "attention_mask(int[] grid, int[] group, str pattern=\"B\", int radius=1, "
      "int text_tokens=0, bool text_first=True, int valid_text=-1, bool grouped=False) "
      "-> Tensor",
      &grat::mask_op);
  m.def(
      "sdpa(Tensor query, Tensor key, Tensor value, Tensor? attn_mask=None, "
      "float dropout_p=0.0, bool is_causal=False, *, float? scale=None, "
      "bool enable_gqa=False) -> Tensor",
      &grat::sdpa_with_context);
}

TORCH_LIBRARY_IMPL(grat, CPU, m) { m.impl("attention", &grat::attention_cpu); }
TORCH_LIBRARY_IMPL(grat, Meta, m) { m.impl("attention", &grat::attention_meta); }
