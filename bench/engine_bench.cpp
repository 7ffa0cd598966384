// Engine benchmark on one GPU with a full-size bundle: one denoising step per resolution x
// attention (with the time outside the transformer forwards), and whole images with the stage
// breakdown and peak memory. Prints tables; writes JSON (GPU, command, commit).
// usage: engine_bench <bundle> <out.json> <commit> <steps|image> [res,...] [patterns]
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "grat/engine/engine.h"
#include "model/bench_util.h"

using namespace grat::engine;
using grat::bench::split;

namespace {

double peak_gib_and_reset() {
  const double peak = grat::bench::peak_gib();
  grat::bench::reset_peak();
  return peak;
}

Request make(int64_t res, const std::string& pattern, int64_t steps) {
  Request r;
  r.prompt = "a detailed photograph of a mountain village at dawn, mist in the valley";
  r.width = r.height = res;
  r.steps = steps;
  r.seed = 1234;
  r.attention.mode = *parse_attention_mode(pattern);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s <bundle> <out.json> <commit> <steps|image> [res] [patterns]\n",
                 argv[0]);
    return 2;
  }
  const std::string part = argv[4];
  EngineOptions o;
  o.bundle = argv[1];
  o.device = "cuda";
  o.profile_forwards = part == "steps";
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine = Engine::load(o);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::printf("%s: bundle %s loaded in %.1f s (%.1f GiB)\n", gpu.c_str(),
              engine->manifest().name.c_str(), load_s, peak_gib_and_reset());
  std::string command = "engine_bench <bundle>";
  for (int i = 2; i < argc; ++i) command += std::string(" ") + argv[i];
  std::ostringstream rows;
  auto row = [&](const std::string& json) { rows << (rows.tellp() > 0 ? ",\n  " : "  ") << json; };

  if (part == "steps") {
    const auto res_list = split(argc > 5 ? argv[5] : "1024,2048,4096,8192");
    const auto patterns = split(argc > 6 ? argv[6] : "full,B,X");
    // Warm the process (CUDA context, cuDNN/cuBLAS handles) on the smallest shape.
    engine->generate({Job{make(512, "full", 1), nullptr}});
    std::printf("%6s %5s %10s %10s %10s %8s %9s\n", "res", "attn", "step s", "forward s",
                "outside %", "speedup", "peak GiB");
    for (const auto& rs : res_list) {
      const int64_t res = std::stoll(rs);
      double full = 0;
      for (const auto& p : patterns) {
        peak_gib_and_reset();
        const Result r = engine->generate({Job{make(res, p, 1), nullptr}})[0];
        if (!r.error.ok()) {
          std::printf("%6lld %5s error: %s\n", static_cast<long long>(res), p.c_str(),
                      r.error.message.c_str());
          continue;
        }
        const double step = r.timings.denoise_s, fwd = r.timings.forward_s;
        if (p == "full") full = step;
        const double peak = peak_gib_and_reset();
        std::printf("%6lld %5s %10.3f %10.3f %9.2f%% %7.2fx %9.1f\n", static_cast<long long>(res),
                    p.c_str(), step, fwd, 100.0 * (step - fwd) / step, full > 0 ? full / step : 0,
                    peak);
        std::fflush(stdout);
        std::ostringstream j;
        j << "{\"res\": " << res << ", \"attention\": \"" << r.attention
          << "\", \"step_s\": " << step << ", \"forward_s\": " << fwd << ", \"peak_gib\": " << peak
          << "}";
        row(j.str());
      }
    }
  } else {
    const auto res_list = split(argc > 5 ? argv[5] : "1024,4096");
    const auto patterns = split(argc > 6 ? argv[6] : "auto,B");
    std::printf("%6s %-26s %7s %8s %8s %8s %8s %9s\n", "res", "attention", "text s", "denoise",
                "decode", "encode", "total", "peak GiB");
    for (size_t i = 0; i < res_list.size(); ++i) {
      const int64_t res = std::stoll(res_list[i]);
      const std::string p = patterns[std::min(i, patterns.size() - 1)];
      peak_gib_and_reset();
      const Result r = engine->generate({Job{make(res, p, 28), nullptr}})[0];
      if (!r.error.ok()) {
        std::printf("%6lld error: %s\n", static_cast<long long>(res), r.error.message.c_str());
        continue;
      }
      const StageTimings& t = r.timings;
      const double total = t.text_encode_s + t.denoise_s + t.decode_s + t.encode_s;
      const double peak = peak_gib_and_reset();
      std::printf("%6lld %-26s %7.2f %8.2f %8.2f %8.2f %8.2f %9.1f\n", static_cast<long long>(res),
                  r.attention.c_str(), t.text_encode_s, t.denoise_s, t.decode_s, t.encode_s, total,
                  peak);
      std::fflush(stdout);
      std::ostringstream j;
      j << "{\"res\": " << res << ", \"steps\": 28, \"attention\": \"" << r.attention
        << "\", \"text_encode_s\": " << t.text_encode_s << ", \"denoise_s\": " << t.denoise_s
        << ", \"decode_s\": " << t.decode_s << ", \"encode_s\": " << t.encode_s
        << ", \"total_s\": " << total << ", \"png_bytes\": " << r.bytes.size()
        << ", \"peak_gib\": " << peak << "}";
      row(j.str());
    }
  }
  std::ofstream f(argv[2]);
  f << "{\"bench\": \"engine_bench " << part << "\", \"gpu\": \"" << gpu << "\", \"command\": \""
    << command << "\", \"commit\": \"" << argv[3] << "\", \"load_s\": " << load_s
    << ", \"rows\": [\n"
    << rows.str() << "\n]}\n";
  return 0;
}
