// Pieces of error messages, formatted without streaming numbers into c10::str: on the GPU
// host (torch 2.11 venv, GCC 13) a TORCH_CHECK message that streamed an integer from this
// library segfaulted inside libstdc++ (std::ostream::_M_insert<long>) instead of throwing;
// strings pass through safely there.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

namespace grat::detail {

template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string num(T v) {
  return std::to_string(v);
}

inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

inline std::string dims(c10::IntArrayRef a) {
  std::string s = "[";
  for (size_t i = 0; i < a.size(); ++i) s += (i ? ", " : "") + std::to_string(a[i]);
  return s + "]";
}

inline std::string dtype_name(c10::ScalarType t) { return c10::toString(t); }

}  // namespace grat::detail
