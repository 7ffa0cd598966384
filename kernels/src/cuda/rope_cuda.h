// Launcher of the CUDA rope kernel (rope.cu); the op glue is in registration_cuda.cpp.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace grat::cuda {

// x is [batch, tokens, heads, dim] with these element strides (dim contiguous); out and
// cos/sin [tokens, dim] are contiguous. rows = batch * tokens * heads; dim % 8 == 0.
struct RopeParams {
  int64_t rows, tokens, heads, dim;
  int64_t x_sb, x_sn, x_sh;
};

void launch_rope(void* out, const void* x, const float* cos, const float* sin, bool bf16,
                 const RopeParams& p, cudaStream_t stream);

}  // namespace grat::cuda
