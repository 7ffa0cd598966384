// The tiny video bundle's transformer.pt and vae_decoder.pt, loaded in C++, serve every case
// (frame counts, resolutions, batch sizes, patterns, padded text) from one file each and match
// the eager Python modules.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>
#include <string>

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

class BundleVideo : public ::testing::Test {
 protected:
  void SetUp() override {
    bundle_ = env("GRAT_TINY_VIDEO_BUNDLE");
    const std::string cases = env("GRAT_VIDEO_CASES");
    ASSERT_FALSE(bundle_.empty() || cases.empty()) << "run through ctest";
    data_ = torch::jit::load(cases);
  }
  std::string bundle_;
  torch::jit::Module data_;
};

TEST_F(BundleVideo, OneTransformerFileServesEveryFrameCountResolutionAndPattern) {
  torch::jit::Module model = torch::jit::load(bundle_ + "/transformer.pt");
  model.eval();
  const char* patterns[] = {"full", "B", "X"};
  int n = 0;
  for (;; ++n) {
    const std::string p = "c" + std::to_string(n) + "_";
    if (!data_.hasattr(p + "x")) break;
    const at::Tensor meta = data_.attr(p + "meta").toTensor();
    const at::Tensor x = data_.attr(p + "x").toTensor();
    const std::string pattern = patterns[meta[3].item<int64_t>()];
    const int64_t valid = meta[4].item<int64_t>();
    SCOPED_TRACE("case " + std::to_string(n) + ": latent " + std::to_string(x.size(2)) + "x" +
                 std::to_string(x.size(3)) + "x" + std::to_string(x.size(4)) + " " + pattern);
    torch::NoGradGuard no_grad;
    c10::IValue valid_text;  // None: all text valid
    if (valid >= 0) valid_text = std::vector<int64_t>{valid};
    std::vector<c10::IValue> args = {x,
                                     data_.attr(p + "ctx"),
                                     data_.attr(p + "pooled"),
                                     data_.attr(p + "t"),
                                     data_.attr(p + "g"),
                                     pattern,
                                     meta[0].item<int64_t>(),
                                     meta[1].item<int64_t>(),
                                     meta[2].item<int64_t>(),
                                     int64_t{1},
                                     valid_text};
    const at::Tensor got = model.forward(args).toTensor();
    const at::Tensor want = data_.attr(p + "y").toTensor();
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5))
        << "max abs diff " << (got - want).abs().max().item<double>();
  }
  EXPECT_EQ(n, 5);
}

TEST_F(BundleVideo, OneVaeFileDecodesEveryFrameCount) {
  torch::jit::Module vae = torch::jit::load(bundle_ + "/vae_decoder.pt");
  vae.eval();
  int n = 0;
  for (;; ++n) {
    const std::string p = "v" + std::to_string(n) + "_";
    if (!data_.hasattr(p + "z")) break;
    const at::Tensor z = data_.attr(p + "z").toTensor();
    torch::NoGradGuard no_grad;
    const at::Tensor got = vae.run_method("decode_video", z, true).toTensor();
    const at::Tensor want = data_.attr(p + "y").toTensor();
    ASSERT_EQ(got.sizes(), want.sizes());
    ASSERT_EQ(got.scalar_type(), at::kByte);
    EXPECT_EQ(got.size(1), 4 * (z.size(2) - 1) + 1);
    // uint8 frames: rounding may differ by one level on a few pixels.
    EXPECT_LE((got.to(at::kInt) - want.to(at::kInt)).abs().max().item<int>(), 1);
  }
  EXPECT_EQ(n, 3);
}

}  // namespace
