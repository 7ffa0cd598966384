// Second half of the TorchScript round trip: modules scripted and saved by
// tests/python/torchscript_export.py are loaded here and must reproduce Python's outputs.
#include <gtest/gtest.h>
#include <torch/script.h>

#include <cstdlib>

namespace {

TEST(TorchScriptRoundTrip, CppReproducesPythonOutputs) {
  const char* dir = std::getenv("GRAT_TS_DIR");
  ASSERT_NE(dir, nullptr) << "GRAT_TS_DIR is not set (run through ctest)";
  torch::jit::Module data = torch::jit::load(std::string(dir) + "/data.pt");
  int cases = 0;
  for (const char* name : {"b2d", "x3d", "full2d"}) {
    SCOPED_TRACE(name);
    torch::jit::Module m = torch::jit::load(std::string(dir) + "/attn_" + name + ".pt");
    const std::string p = std::string(name) + "_";
    const at::Tensor q = data.attr(p + "q").toTensor(), k = data.attr(p + "k").toTensor(),
                     v = data.attr(p + "v").toTensor(), want = data.attr(p + "out").toTensor();
    const at::Tensor got = m.forward({q, k, v}).toTensor();
    ASSERT_EQ(got.sizes(), want.sizes());
    EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-6));
    ++cases;
  }
  EXPECT_EQ(cases, 3);
}

}  // namespace
