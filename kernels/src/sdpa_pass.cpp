#include "grat/sdpa_pass.h"

#include <ATen/ATen.h>
#include <torch/csrc/jit/api/function_impl.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/ir/ir.h>

namespace grat {
namespace {

thread_local std::optional<Layout> tls_layout;

int64_t rewrite_block(torch::jit::Block* block) {
  static const auto sdpa = c10::Symbol::fromQualString("aten::scaled_dot_product_attention");
  static const auto ours = c10::Symbol::fromQualString("grat::sdpa");
  int64_t count = 0;
  for (auto it = block->nodes().begin(); it != block->nodes().end();) {
    torch::jit::Node* node = *it;
    ++it;
    for (torch::jit::Block* sub : node->blocks()) count += rewrite_block(sub);
    if (node->kind() != sdpa) continue;
    // Older schemas lack trailing arguments; fill them with their defaults.
    std::vector<torch::jit::Value*> inputs(node->inputs().begin(), node->inputs().end());
    TORCH_CHECK(inputs.size() >= 3 && inputs.size() <= 8,
                "grat: unexpected scaled_dot_product_attention arity ",
                std::to_string(inputs.size()));
    torch::jit::Graph* g = node->owningGraph();
    torch::jit::WithInsertPoint guard(node);
    const std::vector<c10::IValue> defaults = {c10::IValue(), 0.0, false, c10::IValue(), false};
    for (size_t i = inputs.size(); i < 8; ++i) inputs.push_back(g->insertConstant(defaults[i - 3]));
    torch::jit::Node* repl = g->create(ours, inputs, 1);
    repl->insertBefore(node);
    repl->output()->setType(node->output()->type());
    node->output()->replaceAllUsesWith(repl->output());
    node->destroy();
    ++count;
  }
  return count;
}

bool layout_applies(const Layout& l, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const std::optional<at::Tensor>& mask, double dropout, bool causal, bool gqa) {
  if ((mask.has_value() && mask->defined()) || causal || dropout != 0.0 || gqa) return false;
  if (q.dim() != 4 || k.sizes() != q.sizes() || v.sizes() != q.sizes()) return false;
  return q.size(2) == l.total_tokens();
}

}  // namespace

ScopedLayout::ScopedLayout(Layout layout) : previous_(std::move(tls_layout)) {
  tls_layout = std::move(layout);
}

ScopedLayout::~ScopedLayout() { tls_layout = std::move(previous_); }

const Layout* current_layout() { return tls_layout ? &*tls_layout : nullptr; }

int64_t replace_sdpa(const std::shared_ptr<torch::jit::Graph>& graph) {
  return rewrite_block(graph->block());
}

int64_t replace_sdpa(torch::jit::Module& module) {
  int64_t count = 0;
  for (const torch::jit::Module& m : module.modules()) {
    for (const torch::jit::Method& method : m.get_methods()) {
      auto& fn = torch::jit::toGraphFunction(method.function());
      const int64_t n = replace_sdpa(fn.graph());
      if (n > 0) fn.clear_optimized_graphs();  // executors made before the pass keep the old graph
      count += n;
    }
  }
  return count;
}

at::Tensor sdpa_with_context(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                             const std::optional<at::Tensor>& attn_mask, double dropout_p,
                             bool is_causal, std::optional<double> scale, bool enable_gqa) {
  const Layout* l = current_layout();
  if (l == nullptr || !layout_applies(*l, q, k, v, attn_mask, dropout_p, is_causal, enable_gqa)) {
    return at::scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale,
                                            enable_gqa);
  }
  // SDPA's [B, H, N, D] to GRAT's [B, N, H, D]: views, no copies.
  return attention_with(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), *l, scale)
      .transpose(1, 2);
}

}  // namespace grat
