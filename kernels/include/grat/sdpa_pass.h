// "Attention replaced": swap aten::scaled_dot_product_attention in a loaded TorchScript
// module for grat::sdpa, which runs GRAT attention with the layout the caller sets for the
// current thread (ScopedLayout). Without a layout, or for a call the layout does not fit
// (other token count, cross-attention, explicit mask, causal, dropout, GQA), grat::sdpa is
// exactly SDPA. Apply the pass right after loading, before the first forward.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>

#include "grat/layout.h"

namespace torch::jit {
struct Graph;
struct Module;
}  // namespace torch::jit

namespace grat {

// Sets the layout for grat::sdpa calls on this thread until destroyed (nests; restores the
// previous one). Not shared between threads: each engine thread sets its own.
class ScopedLayout {
 public:
  explicit ScopedLayout(Layout layout);
  ~ScopedLayout();
  ScopedLayout(const ScopedLayout&) = delete;
  ScopedLayout& operator=(const ScopedLayout&) = delete;

 private:
  std::optional<Layout> previous_;
};

// The layout set on this thread, or nullptr.
const Layout* current_layout();

// Rewrites every SDPA node of the graph (nested blocks too); returns how many.
int64_t replace_sdpa(const std::shared_ptr<torch::jit::Graph>& graph);
// Same over every method of the module and its submodules.
int64_t replace_sdpa(torch::jit::Module& module);

// Kernel of grat::sdpa (SDPA's schema; q/k/v are [batch, heads, tokens, dim]).
at::Tensor sdpa_with_context(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::optional<at::Tensor>& attn_mask, double dropout_p,
                             bool is_causal, std::optional<double> scale, bool enable_gqa);

// grat::attention with a prepared layout.
at::Tensor attention_with(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const Layout& layout, std::optional<double> scale = std::nullopt);

}  // namespace grat
