// Pattern `full` on CUDA at cuDNN speed (see dense_full.cpp).
#pragma once

#include <ATen/core/Tensor.h>

#include "grat/layout.h"

namespace grat::cuda {

// q, k, v: [B, N, H, D] CUDA, checked against the layout; returns [B, N, H, D] contiguous.
at::Tensor full_attention_sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const Layout& layout, double scale);

}  // namespace grat::cuda
