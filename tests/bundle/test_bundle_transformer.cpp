// The tiny bundle's transformer.pt, loaded in C++, serves every case (resolutions, batch
// sizes, patterns) from one file and matches the eager Python module.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <string>

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

TEST(BundleTransformer, OneFileServesEveryResolutionAndPattern) {
  const std::string bundle = env("GRAT_TINY_BUNDLE"), cases = env("GRAT_FLUX_CASES");
  ASSERT_FALSE(bundle.empty() || cases.empty()) << "run through ctest";
  torch::jit::Module model = torch::jit::load(bundle + "/transformer.pt");
  model.eval();
  torch::jit::Module data = torch::jit::load(cases);
  const char* patterns[] = {"full", "B", "X"};
  int n = 0;
  for (;; ++n) {
    const std::string p = "c" + std::to_string(n) + "_";
    if (!data.hasattr(p + "x")) break;
    const at::Tensor meta = data.attr(p + "meta").toTensor();
    const int64_t h = meta[0].item<int64_t>(), w = meta[1].item<int64_t>();
    const std::string pattern = patterns[meta[4].item<int64_t>()];
    SCOPED_TRACE("case " + std::to_string(n) + ": " + std::to_string(h) + "x" + std::to_string(w) +
                 " " + pattern);
    torch::NoGradGuard no_grad;
    std::vector<c10::IValue> args = {data.attr(p + "x"),
                                     data.attr(p + "ctx"),
                                     data.attr(p + "pooled"),
                                     data.attr(p + "t"),
                                     data.attr(p + "g"),
                                     h,
                                     w,
                                     pattern,
                                     meta[2].item<int64_t>(),
                                     meta[3].item<int64_t>(),
                                     int64_t{1}};
    const at::Tensor got = model.forward(args).toTensor();
    const at::Tensor want = data.attr(p + "y").toTensor();
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5))
        << "max abs diff " << (got - want).abs().max().item<double>();
  }
  EXPECT_EQ(n, 5);
}

}  // namespace
