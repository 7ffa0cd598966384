// Helpers of the fused-op tests (test_fused_*.cpp): fresh random shapes, error messages.
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <functional>
#include <random>
#include <string>

#include "dense_reference.h"

namespace grat::test {

struct DtypeTol {
  at::ScalarType dtype;
  double tol;  // max |out - ref| / max |ref| against a float64 formula
};

// float32: accumulation order only; bf16/fp16: one rounding of the output, twice for margin.
inline const DtypeTol kFusedDtypes[] = {
    {at::kFloat, 1e-5}, {at::kBFloat16, 8e-3}, {at::kHalf, 1e-3}};

inline double max_rel(const at::Tensor& out, const at::Tensor& ref) {
  const at::Tensor r = ref.to(at::kDouble);
  return ((out.to(at::kDouble) - r).abs().max() / r.abs().max().clamp_min(1e-30)).item<double>();
}

inline int64_t uniform(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

inline std::string shape_str(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t d = 0; d < t.dim(); ++d) s += (d ? ", " : "") + std::to_string(t.size(d));
  return s + "]";
}

// Expects fn to throw a c10::Error whose message contains `part`.
inline void expect_error(const std::function<void()>& fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find(part), std::string::npos)
        << "message: " << e.what_without_backtrace() << "\nexpected to contain: " << part;
  }
}

}  // namespace grat::test
