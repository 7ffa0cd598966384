// Shared by the op implementations (CPU, Meta, CUDA): input checks and token permutations.
#pragma once

#include <ATen/core/Tensor.h>

#include "grat/layout.h"
#include "message.h"

namespace grat::detail {

// Checks q/k/v against the layout: rank, shapes, dtypes, devices, token count.
void check_attention_inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const Layout& layout);

// perm[i] = model-order position of the token at group-major position i (int64, CPU),
// over the whole sequence; text positions map to themselves.
at::Tensor grouped_permutation(const Layout& layout);
at::Tensor inverse_permutation(const at::Tensor& perm);

// Checks a regroup/ungroup input against its layout (pattern full); wraps `dim` in place.
Layout permute_layout(const at::Tensor& x, c10::IntArrayRef grid, c10::IntArrayRef group,
                      int64_t& dim, int64_t text_tokens, bool text_first);

// CPU reference; q/k/v already checked.
at::Tensor attention_cpu_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const Layout& layout, double scale);

// Default softmax scale: 1/sqrt(head_dim).
double resolve_scale(const at::Tensor& q, std::optional<double> scale);

}  // namespace grat::detail

namespace grat::detail {
// Boolean [N, N] mask; `valid` text tokens are readable keys.
at::Tensor attention_mask_impl(const Layout& layout, int64_t valid);
}  // namespace grat::detail
