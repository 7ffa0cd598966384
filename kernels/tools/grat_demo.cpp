// Demo: GRAT attention on the CPU next to full attention. For each case and pattern it
// prints the fraction of key blocks computed, the time, the speedup over full attention,
// the error against SDPA run with the identical dense mask, and how far the sparse output
// is from full attention's.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <vector>

#include "grat/ops.h"

namespace {

struct Case {
  const char* name;
  std::vector<int64_t> grid, group;
  int64_t text;
  bool text_first;
};

double millis(const std::function<void()>& fn) {
  fn();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main() {
  at::manual_seed(0);
  const int64_t heads = 8, dim = 64;
  const std::vector<Case> cases = {
      {"image 1024x1024 (64x64 tokens, Flux order)", {64, 64}, {16, 16}, 128, true},
      {"image 1360x768 (85x48 tokens, ragged)", {48, 85}, {16, 16}, 128, true},
      {"video 5x24x32 (HunyuanVideo order)", {5, 24, 32}, {4, 8, 8}, 64, false},
  };
  std::printf("%-44s %-5s %8s %9s %8s %12s %12s\n", "case", "attn", "density", "ms", "speedup",
              "err_vs_mask", "diff_vs_full");
  for (const Case& c : cases) {
    int64_t img = 1;
    for (int64_t s : c.grid) img *= s;
    const int64_t n = c.text + img;
    const auto opt = at::TensorOptions().dtype(at::kFloat);
    const at::Tensor q = at::randn({1, n, heads, dim}, opt), k = at::randn_like(q),
                     v = at::randn_like(q);
    at::Tensor full;
    double full_ms = 0;
    for (const char* pattern : {"full", "B", "X"}) {
      at::Tensor out;
      const double ms = millis([&] {
        out = grat::attention(q, k, v, c.grid, c.group, pattern, 1, c.text, c.text_first);
      });
      const at::Tensor mask =
          grat::attention_mask(c.grid, c.group, pattern, 1, c.text, c.text_first);
      const at::Tensor ref = at::scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                              v.transpose(1, 2), mask)
                                 .transpose(1, 2);
      if (!full.defined()) {
        full = out;
        full_ms = ms;
      }
      const double err = ((out - ref).norm() / ref.norm()).item<double>();
      const double diff = ((out - full).norm() / full.norm()).item<double>();
      const double density = mask.to(at::kFloat).mean().item<double>();
      std::printf("%-44s %-5s %8.3f %9.1f %7.2fx %12.2e %12.3f\n", c.name, pattern, density, ms,
                  full_ms / ms, err, diff);
    }
  }
  return 0;
}
