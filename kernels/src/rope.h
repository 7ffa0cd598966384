// grat::rope helpers shared by the CPU/Meta registration and the CUDA path.
#pragma once

#include <ATen/ATen.h>

namespace grat {

// Throws naming the argument unless x is [B, N, H, D] (D even) and cos/sin are float32
// [N, D] on x's device.
void check_rope_inputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// The rotation with ATen ops (any device, any float dtype): float32 math, one rounding.
at::Tensor rope_reference(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

}  // namespace grat
