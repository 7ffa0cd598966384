// Instantiations of the Hopper (sm_90a) forward kernel for bf16 (head_dim 64 and 128).
#include "attention_fwd_sm90.cuh"

namespace grat::cuda {

bool launch_attention_sm90_bf16(AttentionParams& p, int head_dim, cudaStream_t stream) {
  return head_dim == 128 ? launch_attention_sm90<__nv_bfloat16, 128>(p, stream)
                         : launch_attention_sm90<__nv_bfloat16, 64>(p, stream);
}

}  // namespace grat::cuda
