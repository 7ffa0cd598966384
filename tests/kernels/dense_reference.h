// Test-only oracle: GRAT semantics written out token by token (independently of the
// library's geometry code) and a dense masked attention in float64.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace grat::test {

struct Spec {
  std::vector<int64_t> grid, group;
  std::string pattern = "B";
  int64_t radius = 1, text = 0;
  bool text_first = true;
  std::vector<int64_t> valid;  // as passed to the op
  int64_t batch = 1, heads = 1, dim = 8;

  int64_t image() const {
    int64_t n = 1;
    for (int64_t g : grid) n *= g;
    return n;
  }
  int64_t tokens() const { return text + image(); }
  int64_t valid_for(int64_t b) const {
    if (valid.empty()) return text;
    return valid.size() == 1 ? valid[0] : valid[b];
  }
};

// May query token i read key token j (model order) for batch item b?
inline bool allowed(const Spec& s, int64_t b, int64_t i, int64_t j) {
  const int64_t img = s.image();
  auto text_index = [&](int64_t tok) { return s.text_first ? tok : tok - img; };
  auto is_text = [&](int64_t tok) { return s.text_first ? tok < s.text : tok >= img; };
  if (is_text(j)) return text_index(j) < s.valid_for(b);
  if (is_text(i)) return true;
  // Image-image: group index per axis from the token's grid coordinates.
  const int64_t ri = s.text_first ? i - s.text : i, rj = s.text_first ? j - s.text : j;
  const size_t d = s.grid.size();
  std::vector<int64_t> gi(d), gj(d);
  int64_t a = ri, c = rj;
  for (size_t ax = d; ax-- > 0;) {
    gi[ax] = (a % s.grid[ax]) / s.group[ax];
    gj[ax] = (c % s.grid[ax]) / s.group[ax];
    a /= s.grid[ax];
    c /= s.grid[ax];
  }
  if (s.pattern == "full") return true;
  if (s.pattern == "B") {
    for (size_t ax = 0; ax < d; ++ax) {
      if (std::llabs(gi[ax] - gj[ax]) > s.radius) return false;
    }
    return true;
  }
  for (size_t ax = 0; ax < d; ++ax) {  // X: share a row/column (2-D) or a plane (3-D)
    if (gi[ax] == gj[ax]) return true;
  }
  return false;
}

inline at::Tensor dense_mask(const Spec& s, int64_t b) {
  const int64_t n = s.tokens();
  at::Tensor m = at::zeros({n, n}, at::kBool);
  auto acc = m.accessor<bool, 2>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) acc[i][j] = allowed(s, b, i, j);
  }
  return m;
}

// q, k, v [B, N, H, D] (any float dtype); returns float64 [B, N, H, D].
inline at::Tensor dense_attention(const Spec& s, const at::Tensor& q, const at::Tensor& k,
                                  const at::Tensor& v, double scale) {
  std::vector<at::Tensor> outs;
  for (int64_t b = 0; b < q.size(0); ++b) {
    const at::Tensor qb = q[b].to(at::kDouble).transpose(0, 1);  // [H, N, D]
    const at::Tensor kb = k[b].to(at::kDouble).transpose(0, 1);
    const at::Tensor vb = v[b].to(at::kDouble).transpose(0, 1);
    at::Tensor scores = at::matmul(qb, kb.transpose(1, 2)) * scale;
    scores = scores.masked_fill(dense_mask(s, b).logical_not(), -INFINITY);
    outs.push_back(at::matmul(at::softmax(scores, -1), vb).transpose(0, 1));
  }
  return at::stack(outs);
}

// Fresh seed per run, printed by the tests so a failure can be replayed.
inline uint64_t fresh_seed() {
  if (const char* env = std::getenv("GRAT_TEST_SEED")) return std::strtoull(env, nullptr, 10);
  return std::random_device{}();
}

}  // namespace grat::test
