// C++ entry points of the grat:: operators. Each goes through the dispatcher, so the
// CPU reference, the CUDA kernels and the Meta shape functions sit behind one call.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

namespace grat {

// q, k, v: [batch, tokens, heads, head_dim] in the model's token order; returns the same.
at::Tensor attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                     const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                     const std::string& pattern = "B", int64_t radius = 1, int64_t text_tokens = 0,
                     bool text_first = true, const std::vector<int64_t>& valid_text = {},
                     bool grouped = false, std::optional<double> scale = std::nullopt);

// Model order <-> group-major order along `dim`; text tokens stay where they are.
at::Tensor regroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim = 1, int64_t text_tokens = 0,
                   bool text_first = true);
at::Tensor ungroup(const at::Tensor& x, const std::vector<int64_t>& grid,
                   const std::vector<int64_t>& group, int64_t dim = 1, int64_t text_tokens = 0,
                   bool text_first = true);

// Boolean [tokens, tokens] mask (true = query row may read key column) for small layouts.
at::Tensor attention_mask(const std::vector<int64_t>& grid, const std::vector<int64_t>& group,
                          const std::string& pattern = "B", int64_t radius = 1,
                          int64_t text_tokens = 0, bool text_first = true, int64_t valid_text = -1,
                          bool grouped = false);

}  // namespace grat
