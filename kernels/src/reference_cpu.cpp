// CPU reference of GRAT attention. Works in group-major order so that each query group's
// keys are a few contiguous token ranges; computes only unmasked groups (dense attention per
// query group over its gathered keys), so large layouts stay tractable on a few cores.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>

#include "internal.h"

namespace grat::detail {
namespace {

struct Range {
  int64_t begin, end;
};

void push_range(std::vector<Range>& rs, int64_t b, int64_t e) {
  if (!rs.empty() && rs.back().end == b) {
    rs.back().end = e;
  } else {
    rs.push_back({b, e});
  }
}

// Key ranges (group-major positions) read by the image query group qg.
std::vector<Range> group_keys(const Layout& l, int64_t qg, int64_t valid) {
  std::vector<Range> rs;
  const Geometry& g = l.geom;
  const int64_t base = l.image_begin();
  if (valid > 0 && l.text_first) push_range(rs, 0, valid);
  for (int64_t kg = 0; kg < g.num_groups(); ++kg) {
    if (!g.attends(qg, kg)) continue;
    const int64_t off = base + g.group_offset(kg);
    push_range(rs, off, off + g.group_size(kg));
  }
  if (valid > 0 && !l.text_first) push_range(rs, l.text_begin(), l.text_begin() + valid);
  return rs;
}

// Keys of text queries: every image token and the valid text.
std::vector<Range> text_keys(const Layout& l, int64_t valid) {
  std::vector<Range> rs;
  const int64_t img = l.geom.image_tokens();
  if (l.text_first) {
    if (valid > 0) push_range(rs, 0, valid);
    push_range(rs, l.text_tokens, l.text_tokens + img);
  } else {
    push_range(rs, 0, img);
    if (valid > 0) push_range(rs, img, img + valid);
  }
  return rs;
}

struct Task {
  int64_t batch, row_begin, row_end;
  const std::vector<Range>* keys;
  int64_t cost;
};

at::Tensor gather(const at::Tensor& x, const std::vector<Range>& rs) {
  if (rs.size() == 1) return x.narrow(1, rs[0].begin, rs[0].end - rs[0].begin);
  std::vector<at::Tensor> parts;
  parts.reserve(rs.size());
  for (const Range& r : rs) parts.push_back(x.narrow(1, r.begin, r.end - r.begin));
  return at::cat(parts, 1);
}

// Rows [r0, r1) of one batch item (tensors [heads, tokens, dim]) against the given keys.
void attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& o,
            int64_t r0, int64_t r1, const std::vector<Range>& keys, double scale) {
  const at::Tensor kk = gather(k, keys), vv = gather(v, keys);
  const at::Tensor kt = kk.transpose(1, 2);
  const int64_t heads = q.size(0), lk = kk.size(1);
  // Bound the score matrix to ~32 MB per thread.
  const int64_t budget = int64_t{8} << 20;
  const int64_t chunk = std::max<int64_t>(1, budget / std::max<int64_t>(1, heads * lk));
  for (int64_t s = r0; s < r1; s += chunk) {
    const int64_t n = std::min(chunk, r1 - s);
    at::Tensor scores = at::matmul(q.narrow(1, s, n), kt);
    scores.mul_(scale);
    at::Tensor p = at::_softmax(scores, -1, false);
    o.narrow(1, s, n).copy_(at::matmul(p, vv));
  }
}

}  // namespace

at::Tensor attention_cpu_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                              const Layout& l, double scale) {
  const int64_t batch = q.size(0);
  if (batch == 0) return at::empty_like(q, at::MemoryFormat::Contiguous);
  const auto cdt = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor perm, inv;
  if (!l.grouped) {
    perm = grouped_permutation(l);
    inv = inverse_permutation(perm);
  }
  auto prep = [&](const at::Tensor& x) {
    at::Tensor y = perm.defined() ? x.index_select(1, perm) : x;
    return y.to(cdt).permute({0, 2, 1, 3}).contiguous();  // [B, H, N, D]
  };
  const at::Tensor qg = prep(q), kg = prep(k), vg = prep(v);
  at::Tensor og = at::empty_like(qg);

  // Key lists per (batch validity, query group); shared across equal validity.
  const Geometry& g = l.geom;
  const int64_t ngroups = g.num_groups();
  std::vector<int64_t> valids;
  for (int64_t b = 0; b < batch; ++b) valids.push_back(l.valid_for(b));
  std::vector<int64_t> distinct(valids);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<std::vector<std::vector<Range>>> keys(distinct.size());
  for (size_t i = 0; i < distinct.size(); ++i) {
    for (int64_t qgi = 0; qgi < ngroups; ++qgi) keys[i].push_back(group_keys(l, qgi, distinct[i]));
    keys[i].push_back(text_keys(l, distinct[i]));
  }

  auto span = [](const std::vector<Range>& rs) {
    int64_t n = 0;
    for (const Range& r : rs) n += r.end - r.begin;
    return n;
  };
  std::vector<Task> tasks;
  const int64_t base = l.image_begin(), text_chunk = 256;
  for (int64_t b = 0; b < batch; ++b) {
    const size_t vi =
        std::lower_bound(distinct.begin(), distinct.end(), valids[b]) - distinct.begin();
    for (int64_t qgi = 0; qgi < ngroups; ++qgi) {
      const auto& ks = keys[vi][qgi];
      const int64_t r0 = base + g.group_offset(qgi), r1 = r0 + g.group_size(qgi);
      tasks.push_back({b, r0, r1, &ks, (r1 - r0) * span(ks)});
    }
    const auto& tk = keys[vi][ngroups];
    for (int64_t s = 0; s < l.text_tokens; s += text_chunk) {
      const int64_t r0 = l.text_begin() + s,
                    r1 = std::min(r0 + text_chunk, l.text_begin() + l.text_tokens);
      tasks.push_back({b, r0, r1, &tk, (r1 - r0) * span(tk)});
    }
  }
  // Longest first, then hand tasks out dynamically: text rows and interior groups cost more.
  std::stable_sort(tasks.begin(), tasks.end(),
                   [](const Task& a, const Task& b) { return a.cost > b.cost; });
  std::atomic<size_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), tasks.size());
  at::parallel_for(0, workers, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      for (size_t i = next++; i < tasks.size(); i = next++) {
        const Task& t = tasks[i];
        at::Tensor ob = og[t.batch];
        attend(qg[t.batch], kg[t.batch], vg[t.batch], ob, t.row_begin, t.row_end, *t.keys, scale);
      }
    }
  });

  at::Tensor out = og.permute({0, 2, 1, 3});
  if (inv.defined()) out = out.index_select(1, inv);
  return out.to(q.scalar_type()).contiguous();
}

}  // namespace grat::detail
