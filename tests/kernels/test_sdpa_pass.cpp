// The graph pass that swaps aten::scaled_dot_product_attention for grat::sdpa.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <sstream>

#include "grat/ops.h"
#include "grat/sdpa_pass.h"

namespace grat {
namespace {

// A module that calls SDPA in a submodule and inside an if-block (with a mask).
torch::jit::Module make_model() {
  torch::jit::Module inner("Inner");
  inner.define(R"JIT(
def forward(self, q, k, v):
    return torch.scaled_dot_product_attention(q, k, v) * 2.0
)JIT");
  torch::jit::Module outer("Outer");
  outer.register_module("inner", inner);
  outer.define(R"JIT(
def forward(self, q, k, v, mask):
    a = self.inner.forward(q, k, v)
    if q.size(0) > 0:
        b = torch.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    else:
        b = a
    return a + b
)JIT");
  return outer;
}

torch::jit::Module save_and_load(const torch::jit::Module& m) {
  std::stringstream buf;
  m.save(buf);
  return torch::jit::load(buf);
}

bool mentions_sdpa(torch::jit::Module& m) {
  for (const torch::jit::Module& sub : m.modules()) {
    for (const torch::jit::Method& method : sub.get_methods()) {
      if (method.graph()->toString().find("aten::scaled_dot_product_attention") !=
          std::string::npos)
        return true;
    }
  }
  return false;
}

struct Inputs {
  at::Tensor q, k, v, mask;
};

// SDPA layout [B, H, N, D]; 2-D grid 6x8 with 5 text tokens first (2 padded).
Inputs make_inputs() {
  const int64_t n = 5 + 48;
  Inputs in;
  in.q = at::randn({2, 3, n, 16});
  in.k = at::randn_like(in.q);
  in.v = at::randn_like(in.q);
  in.mask = at::rand({n, n}) > 0.3;
  in.mask.fill_diagonal_(true);
  return in;
}

Layout layout(const std::string& pattern) {
  return make_layout({6, 8}, {4, 3}, pattern, 1, 5, true, {3}, false);
}

at::Tensor run(torch::jit::Module& m, const Inputs& in) {
  return m.forward({in.q, in.k, in.v, in.mask}).toTensor();
}

TEST(SdpaPass, ReplacesEveryCallIncludingSubmodulesAndBlocks) {
  torch::jit::Module m = save_and_load(make_model());
  ASSERT_TRUE(mentions_sdpa(m));
  EXPECT_EQ(replace_sdpa(m), 2);
  EXPECT_FALSE(mentions_sdpa(m));
  EXPECT_EQ(replace_sdpa(m), 0);  // idempotent
}

TEST(SdpaPass, WithoutLayoutOrWithFullPatternOutputIsUnchanged) {
  torch::jit::Module original = save_and_load(make_model());
  torch::jit::Module rewritten = save_and_load(make_model());
  replace_sdpa(rewritten);
  const Inputs in = make_inputs();
  const at::Tensor want = run(original, in);
  EXPECT_TRUE(at::allclose(run(rewritten, in), want, 1e-6, 1e-6));
  // Full pattern with every text token valid is plain attention.
  ScopedLayout guard(make_layout({6, 8}, {4, 3}, "full", 1, 5, true, {}, false));
  EXPECT_TRUE(at::allclose(run(rewritten, in), want, 1e-5, 1e-5));
}

TEST(SdpaPass, WithLayoutRunsGratWhereItFits) {
  torch::jit::Module m = save_and_load(make_model());
  replace_sdpa(m);
  const Inputs in = make_inputs();
  for (const char* pattern : {"B", "X"}) {
    SCOPED_TRACE(pattern);
    const Layout l = layout(pattern);
    at::Tensor got;
    {
      ScopedLayout guard(l);
      got = run(m, in);
    }
    // The masked call keeps SDPA semantics; the unmasked one becomes GRAT.
    const at::Tensor grat_out =
        attention_with(in.q.transpose(1, 2), in.k.transpose(1, 2), in.v.transpose(1, 2), l)
            .transpose(1, 2);
    const at::Tensor masked = at::scaled_dot_product_attention(in.q, in.k, in.v, in.mask);
    EXPECT_TRUE(at::allclose(got, grat_out * 2.0 + masked, 1e-5, 1e-5));
  }
  EXPECT_EQ(current_layout(), nullptr);
}

TEST(SdpaPass, LayoutOfOtherTokenCountFallsBackToSdpa) {
  torch::jit::Module original = save_and_load(make_model());
  torch::jit::Module m = save_and_load(make_model());
  replace_sdpa(m);
  const Inputs in = make_inputs();
  ScopedLayout guard(make_layout({7, 8}, {4, 3}, "B", 1, 5, true, {}, false));
  EXPECT_TRUE(at::allclose(run(m, in), run(original, in), 1e-6, 1e-6));
}

TEST(SdpaPass, ScopedLayoutsNestAndRestore) {
  EXPECT_EQ(current_layout(), nullptr);
  {
    ScopedLayout a(layout("B"));
    EXPECT_EQ(current_layout()->geom.pattern, Pattern::kB);
    {
      ScopedLayout b(layout("X"));
      EXPECT_EQ(current_layout()->geom.pattern, Pattern::kX);
    }
    EXPECT_EQ(current_layout()->geom.pattern, Pattern::kB);
  }
  EXPECT_EQ(current_layout(), nullptr);
}

}  // namespace
}  // namespace grat
