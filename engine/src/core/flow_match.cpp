#include "grat/engine/flow_match.h"

#include <cmath>
#include <stdexcept>

namespace grat::engine {

double flux_mu(int64_t image_tokens, double base_shift, double max_shift, int64_t base_seq,
               int64_t max_seq) {
  const double m = (max_shift - base_shift) / static_cast<double>(max_seq - base_seq);
  const double b = base_shift - m * static_cast<double>(base_seq);
  return static_cast<double>(image_tokens) * m + b;
}

namespace {
void check_steps(int64_t steps) {
  if (steps < 1) throw std::invalid_argument("steps must be >= 1");
}
}  // namespace

std::vector<double> flux_sigmas(int64_t steps, double mu) {
  check_steps(steps);
  std::vector<double> s;
  const double last = 1.0 / static_cast<double>(steps), e = std::exp(mu);
  for (int64_t i = 0; i < steps; ++i) {
    // float32 like numpy's linspace as diffusers computes it, then the shift in double.
    const double lin = steps == 1 ? 1.0 : 1.0 + (last - 1.0) * static_cast<double>(i) / (steps - 1);
    const double t = static_cast<float>(lin);
    s.push_back(e / (e + (1.0 / t - 1.0)));
  }
  s.push_back(0.0);
  return s;
}

std::vector<double> shifted_sigmas(int64_t steps, double shift) {
  check_steps(steps);
  std::vector<double> s;
  for (int64_t i = 0; i < steps; ++i) {
    const double t = 1.0 - static_cast<double>(i) / static_cast<double>(steps);
    s.push_back(shift * t / (1.0 + (shift - 1.0) * t));
  }
  s.push_back(0.0);
  return s;
}

}  // namespace grat::engine
