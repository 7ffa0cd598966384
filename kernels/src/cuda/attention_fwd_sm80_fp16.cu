// Instantiations of the portable forward kernel for fp16 (head_dim 64 and 128).
#include "attention_fwd_sm80.cuh"

namespace grat::cuda {

void launch_attention_fp16(AttentionParams& p, int head_dim, cudaStream_t stream) {
  if (head_dim == 128) {
    launch_attention_sm80<__half, 128>(p, stream);
  } else {
    launch_attention_sm80<__half, 64>(p, stream);
  }
}

}  // namespace grat::cuda
