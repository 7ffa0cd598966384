// Which attention each denoising step runs: the request's mode with the bundle's defaults
// filled in, "full for the first k steps", and `auto`, which picks per resolution from a
// measured table so that GRAT is never slower than full attention.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grat/engine/request.h"

namespace grat::engine {

struct StepAttention {
  std::string pattern;         // "full", "B", "X"
  std::vector<int64_t> group;  // per grid axis
  int64_t radius = 1;
};

// Measured crossover: the smallest image-token count at which GRAT-B beat full attention
// for a whole transformer forward (bench/model, H100: 1024^2 = 4096 tokens: B 0.159 s vs
// full 0.20 s). Below it, auto picks full. Video (HunyuanVideo, H200 engine steps,
// video_bench_h200_c648e46.json) agrees: at 5,760 tokens and up B was the fastest of full / B /
// X (512x320x33: 0.192 s vs full 0.215; 720x1280x129: 3.92 vs 19.65), and at 1,280 tokens
// (256x256x17, 2 groups a side) all three are within 4% (full 0.052, B 0.050).
struct AutoTable {
  int64_t min_tokens_for_grat = 4096;
  int64_t min_groups_per_axis = 3;  // fewer: B covers (nearly) everything anyway
};

class AttentionPolicy {
 public:
  // grid: image tokens per axis; defaults from the bundle (pattern, group, radius).
  AttentionPolicy(const AttentionSettings& request, std::vector<int64_t> grid,
                  const std::string& default_pattern, std::vector<int64_t> default_group,
                  int64_t default_radius, AutoTable table = {});
  // Attention for 0-based step i.
  StepAttention at_step(int64_t i) const;
  // Human-readable summary for results and logs.
  std::string describe() const;
  // The attention after the first full_steps() steps, as resolved (auto picked, group clipped).
  const StepAttention& sparse() const { return sparse_; }
  int64_t full_steps() const { return full_steps_; }

 private:
  StepAttention sparse_;
  int64_t full_steps_ = 0;
  std::vector<int64_t> grid_;
};

}  // namespace grat::engine
