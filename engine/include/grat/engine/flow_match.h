// Flow-matching Euler sampling schedules (the ones diffusers' FlowMatchEulerDiscreteScheduler
// produces for the Flux and HunyuanVideo pipelines). Pure functions; no tensors.
#pragma once

#include <cstdint>
#include <vector>

namespace grat::engine {

// Flux's resolution-dependent shift: mu grows linearly with the image token count from
// base_shift at base_seq tokens to max_shift at max_seq tokens (extrapolated beyond).
double flux_mu(int64_t image_tokens, double base_shift = 0.5, double max_shift = 1.15,
               int64_t base_seq = 256, int64_t max_seq = 4096);

// Flux: sigmas linspace(1, 1/steps, steps) through exp(mu)/(exp(mu) + (1/s - 1)), then 0.
// Returns steps + 1 values (the last is the terminal 0).
std::vector<double> flux_sigmas(int64_t steps, double mu);

// HunyuanVideo: sigmas linspace(1, 0, steps + 1)[:-1] through shift*s / (1 + (shift-1)*s),
// then 0.
std::vector<double> shifted_sigmas(int64_t steps, double shift);

}  // namespace grat::engine
