// One HunyuanVideo transformer forward from a TorchScript file, in C++, on one GPU: seconds
// per forward and peak memory for each token grid x attention pattern. Prints a table and
// writes JSON (GPU name, command, commit). The executor runs unoptimized, as the engine runs it.
// usage: video_forward <transformer.pt> <out.json> <commit> [grids] [patterns] [reps] [text]
//   grids: t x h x w token grids, e.g. 32x48x80,33x45x80 (latent = t x 2h x 2w)
//   patterns: full, B, X, each optionally @valid (valid text tokens; default all), e.g. full@77
#include <ATen/cuda/CUDAContext.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
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

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int64_t> parse_grid(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, 'x');) out.push_back(std::stoll(item));
  TORCH_CHECK(out.size() == 3, "grid must be t x h x w; got ", s);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s <transformer.pt> <out.json> <commit> [grids] [patterns] [reps] "
                 "[text]\n",
                 argv[0]);
    return 2;
  }
  const std::string path = argv[1], out_path = argv[2], commit = argv[3];
  const auto grids = grat::bench::split(argc > 4 ? argv[4] : "32x48x80,33x45x80");
  const auto patterns = grat::bench::split(argc > 5 ? argv[5] : "full,full@77,B,X");
  const int reps = argc > 6 ? std::stoi(argv[6]) : 2;
  const int64_t text = argc > 7 ? std::stoll(argv[7]) : 256;
  std::string command;
  for (int i = 0; i < argc; ++i)
    command += (i ? " " : "") + std::string(i == 1 ? "transformer.pt" : argv[i]);

  torch::jit::setGraphExecutorOptimize(false);
  c10::InferenceMode guard;
  const auto t0 = std::chrono::steady_clock::now();
  torch::jit::Module model = torch::jit::load(path, torch::kCUDA);
  model.eval();
  torch::cuda::synchronize();
  const double load_s = seconds_since(t0);
  int64_t params = 0;
  for (const auto& p : model.parameters()) params += p.numel();
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::printf("%s: %.2fB parameters loaded in %.1f s, weights %.1f GiB\n", gpu.c_str(),
              params / 1e9, load_s, grat::bench::peak_gib());

  const auto opt = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kBFloat16);
  std::ostringstream rows;
  std::printf("%10s %8s %9s %10s %9s %9s\n", "grid", "tokens", "attn", "s/forward", "vs full",
              "peak GiB");
  for (const auto& g : grids) {
    const auto grid = parse_grid(g);
    const int64_t tokens = grid[0] * grid[1] * grid[2] + text;
    const at::Tensor x = torch::randn({1, 16, grid[0], 2 * grid[1], 2 * grid[2]}, opt) * 0.5;
    const at::Tensor ctx = torch::randn({1, text, 4096}, opt) * 0.5;
    const at::Tensor pooled = torch::randn({1, 768}, opt);
    const at::Tensor t = torch::full({1}, 0.5, opt), guidance = torch::full({1}, 6.0, opt);
    double full_s = 0;
    for (const auto& spec : patterns) {
      const auto at = spec.find('@');
      const std::string pattern = spec.substr(0, at);
      const int64_t valid = at == std::string::npos ? text : std::stoll(spec.substr(at + 1));
      const std::vector<int64_t> valid_list = {valid};
      std::vector<c10::IValue> args = {x,
                                       ctx,
                                       pooled,
                                       t,
                                       guidance,
                                       pattern,
                                       int64_t{4},
                                       int64_t{8},
                                       int64_t{8},
                                       int64_t{1},
                                       c10::IValue(valid_list)};
      grat::bench::reset_peak();
      model.forward(args);  // warm-up: cuBLAS/cuDNN handles and plans for this shape
      torch::cuda::synchronize();
      std::vector<double> times;
      for (int i = 0; i < reps; ++i) {
        const auto s = std::chrono::steady_clock::now();
        const at::Tensor y = model.forward(args).toTensor();
        torch::cuda::synchronize();
        times.push_back(seconds_since(s));
        TORCH_CHECK(y.isfinite().all().item<bool>(), "non-finite output");
      }
      std::sort(times.begin(), times.end());
      const double med = times[times.size() / 2];
      if (spec == "full") full_s = med;
      const double peak = grat::bench::peak_gib();
      std::printf("%10s %8lld %9s %10.3f %8.2fx %9.1f\n", g.c_str(), static_cast<long long>(tokens),
                  spec.c_str(), med, full_s > 0 ? full_s / med : 0.0, peak);
      std::fflush(stdout);
      rows << (rows.tellp() > 0 ? ",\n" : "") << "  {\"grid\": \"" << g
           << "\", \"tokens\": " << tokens << ", \"pattern\": \"" << pattern
           << "\", \"valid_text\": " << valid << ", \"text\": " << text << ", \"seconds\": " << med
           << ", \"min_seconds\": " << times.front() << ", \"peak_gib\": " << peak
           << ", \"reps\": " << reps << "}";
      std::ofstream f(out_path);  // rewritten after every row: a timeout keeps what ran
      f << "{\"bench\": \"video_forward (C++, TorchScript, full-size HunyuanVideo, random "
           "bf16)\", \"gpu\": \""
        << gpu << "\", \"command\": \"" << command << "\", \"commit\": \"" << commit
        << "\", \"parameters\": " << params << ", \"load_seconds\": " << load_s << ", \"rows\": [\n"
        << rows.str() << "\n]}\n";
    }
  }
  return 0;
}
