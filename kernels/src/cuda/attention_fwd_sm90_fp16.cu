// Instantiations of the Hopper (sm_90a) forward kernel for fp16 (head_dim 64 and 128).
#include "attention_fwd_sm90.cuh"

namespace grat::cuda {

bool launch_attention_sm90_fp16(AttentionParams& p, int head_dim, cudaStream_t stream) {
  return head_dim == 128 ? launch_attention_sm90<__half, 128>(p, stream)
                         : launch_attention_sm90<__half, 64>(p, stream);
}

}  // namespace grat::cuda
