// One Flux transformer forward from a TorchScript file, in C++, on one GPU: seconds per
// forward and peak memory for each resolution x attention pattern. Prints a table and
// writes JSON (GPU name, command, commit).
// usage: flux_forward <transformer.pt> <out.json> <commit> [res,...] [pattern,...] [reps]
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include "bench_util.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s <transformer.pt> <out.json> <commit> [res] [patterns] [reps]\n",
                 argv[0]);
    return 2;
  }
  const std::string path = argv[1], out_path = argv[2], commit = argv[3];
  const auto resolutions = grat::bench::split(argc > 4 ? argv[4] : "1024,4096");
  const auto patterns = grat::bench::split(argc > 5 ? argv[5] : "full,B,X");
  const int reps = argc > 6 ? std::stoi(argv[6]) : 3;
  std::string command;
  for (int i = 0; i < argc; ++i)
    command += (i ? " " : "") + std::string(i == 1 ? "transformer.pt" : argv[i]);

  c10::InferenceMode guard;
  const auto t0 = std::chrono::steady_clock::now();
  torch::jit::Module model = torch::jit::load(path, torch::kCUDA);
  model.eval();
  torch::cuda::synchronize();
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t params = 0;
  for (const auto& p : model.parameters()) params += p.numel();
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::printf("%s: %.2fB parameters loaded in %.1f s, weights %.1f GiB\n", gpu.c_str(),
              params / 1e9, load_s, grat::bench::peak_gib());

  const auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  std::ostringstream rows;
  std::printf("%6s %8s %6s %10s %9s %9s\n", "res", "tokens", "attn", "s/forward", "speedup",
              "peak GiB");
  for (const auto& r : resolutions) {
    const int64_t res = std::stoll(r), side = res / 16, text = 512;
    const at::Tensor x = torch::randn({1, side * side, 64}, opt);
    const at::Tensor ctx = torch::randn({1, text, 4096}, opt);
    const at::Tensor pooled = torch::randn({1, 768}, opt);
    const at::Tensor t = torch::full({1}, 0.5, opt), g = torch::full({1}, 3.5, opt);
    double full_s = 0;
    for (const auto& pattern : patterns) {
      std::vector<c10::IValue> args = {x,    ctx,     pooled,      t,           g,         side,
                                       side, pattern, int64_t{16}, int64_t{16}, int64_t{1}};
      grat::bench::reset_peak();
      // Two warm-ups: TorchScript's profiling executor records shapes on the first call and
      // builds its optimized plan on the second (seconds at full size).
      for (int w = 0; w < 2; ++w) model.forward(args);
      torch::cuda::synchronize();
      std::vector<double> times;
      for (int i = 0; i < reps; ++i) {
        const auto s = std::chrono::steady_clock::now();
        const at::Tensor y = model.forward(args).toTensor();
        torch::cuda::synchronize();
        times.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count());
        TORCH_CHECK(y.isfinite().all().item<bool>(), "non-finite output");
      }
      std::sort(times.begin(), times.end());
      const double med = times[times.size() / 2];
      if (pattern == "full") full_s = med;
      const double peak = grat::bench::peak_gib();
      std::printf("%6lld %8lld %6s %10.3f %8.2fx %9.1f\n", static_cast<long long>(res),
                  static_cast<long long>(text + side * side), pattern.c_str(), med,
                  full_s > 0 ? full_s / med : 0.0, peak);
      std::fflush(stdout);
      rows << (rows.tellp() > 0 ? ",\n" : "") << "  {\"res\": " << res
           << ", \"tokens\": " << text + side * side << ", \"pattern\": \"" << pattern
           << "\", \"seconds\": " << med << ", \"peak_gib\": " << peak << ", \"reps\": " << reps
           << "}";
    }
  }
  std::ofstream f(out_path);
  f << "{\"bench\": \"flux_forward (C++, TorchScript, full-size random bf16)\", \"gpu\": \"" << gpu
    << "\", \"command\": \"" << command << "\", \"commit\": \"" << commit
    << "\", \"parameters\": " << params << ", \"load_seconds\": " << load_s << ", \"rows\": [\n"
    << rows.str() << "\n]}\n";
  return 0;
}
