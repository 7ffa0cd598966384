// Engine benchmark on one GPU with a full-size bundle: one denoising step per resolution x
// attention (with the time outside the transformer forwards), and whole images with the stage
// breakdown and peak memory. Prints tables; writes JSON (GPU, command, commit).
// usage: engine_bench <bundle> <out.json> <commit> [step res,...] [patterns] [res:pattern,...]
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <cstdio>
#include <fstream>
#include <functional>
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

// Per-step rows: two steps below 8192^2 and the second (warm) one reported, so first-use
// costs (kernel module loads, cuBLAS heuristics for a new shape) stay out; one step at 8192^2,
// where a full-attention step takes ~1.5 min and first-use costs are negligible.
void step_rows(Engine& engine, const std::vector<std::string>& res_list,
               const std::vector<std::string>& patterns,
               const std::function<void(std::string)>& row) {
  std::printf("%6s %5s %10s %10s %10s %8s %9s\n", "res", "attn", "step s", "forward s", "outside %",
              "speedup", "peak GiB");
  for (const auto& rs : res_list) {
    const int64_t res = std::stoll(rs);
    const int64_t steps = res >= 8192 ? 1 : 2;
    double full = 0;
    for (const auto& p : patterns) {
      peak_gib_and_reset();
      const Result r = engine.generate({Job{make(res, p, steps), nullptr}})[0];
      if (!r.error.ok()) {
        std::printf("%6lld %5s error: %s\n", static_cast<long long>(res), p.c_str(),
                    r.error.message.c_str());
        continue;
      }
      const StageTimings& t = r.timings;
      const double step = steps > 1 ? t.denoise_s - t.first_step_s : t.denoise_s;
      const double fwd = steps > 1 ? t.forward_s - t.first_forward_s : t.forward_s;
      if (p == "full") full = step;
      const double peak = peak_gib_and_reset();
      std::printf("%6lld %5s %10.3f %10.3f %9.2f%% %7.2fx %9.1f\n", static_cast<long long>(res),
                  p.c_str(), step, fwd, 100.0 * (step - fwd) / step, full > 0 ? full / step : 0,
                  peak);
      std::fflush(stdout);
      std::ostringstream j;
      j << "{\"res\": " << res << ", \"requested\": \"" << p << "\", \"attention\": \""
        << r.attention << "\", \"steps_run\": " << steps << ", \"step_s\": " << step
        << ", \"forward_s\": " << fwd << ", \"first_step_s\": " << t.first_step_s
        << ", \"peak_gib\": " << peak << "}";
      row(j.str());
    }
  }
}

// Whole 28-step images, "res:pattern" each.
void image_rows(Engine& engine, const std::vector<std::string>& specs,
                const std::function<void(std::string)>& row) {
  std::printf("%6s %-26s %7s %8s %8s %8s %8s %9s\n", "res", "attention", "text s", "denoise",
              "decode", "encode", "total", "peak GiB");
  for (const auto& spec : specs) {
    const size_t colon = spec.find(':');
    const int64_t res = std::stoll(spec.substr(0, colon));
    const std::string p = colon == std::string::npos ? "auto" : spec.substr(colon + 1);
    peak_gib_and_reset();
    const Result r = engine.generate({Job{make(res, p, 28), nullptr}})[0];
    if (!r.error.ok()) {
      std::printf("%6lld error: %s\n", static_cast<long long>(res), r.error.message.c_str());
      continue;
    }
    const StageTimings& t = r.timings;
    const double total = t.text_encode_s + t.noise_s + t.denoise_s + t.decode_s + t.encode_s;
    const double peak = peak_gib_and_reset();
    std::printf("%6lld %-26s %7.2f %8.2f %8.2f %8.2f %8.2f %9.1f\n", static_cast<long long>(res),
                r.attention.c_str(), t.text_encode_s, t.denoise_s, t.decode_s, t.encode_s, total,
                peak);
    std::fflush(stdout);
    std::ostringstream j;
    j << "{\"res\": " << res << ", \"steps\": 28, \"attention\": \"" << r.attention
      << "\", \"text_encode_s\": " << t.text_encode_s << ", \"noise_s\": " << t.noise_s
      << ", \"denoise_s\": " << t.denoise_s << ", \"decode_s\": " << t.decode_s
      << ", \"encode_s\": " << t.encode_s << ", \"total_s\": " << total
      << ", \"png_bytes\": " << r.bytes.size() << ", \"peak_gib\": " << peak << "}";
    row(j.str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s <bundle> <out.json> <commit> [step resolutions] [patterns] "
                 "[images res:pattern,...]\n  e.g. %s B out.json abc 1024,4096 full,B,X,auto "
                 "1024:auto,4096:B   (\"-\" skips a part)\n",
                 argv[0], argv[0]);
    return 2;
  }
  EngineOptions o;
  o.bundle = argv[1];
  o.device = "cuda";
  o.profile_forwards = true;  // per-step rows; a sync per forward costs nothing at these sizes
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine = Engine::load(o);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::printf("%s: bundle %s loaded in %.1f s (%.1f GiB)\n", gpu.c_str(),
              engine->manifest().name.c_str(), load_s, peak_gib_and_reset());
  std::string command = "engine_bench <bundle>";
  for (int i = 2; i < argc; ++i) command += std::string(" ") + argv[i];
  const std::string steps_arg = argc > 4 ? argv[4] : "1024,2048,4096,8192";
  const std::string patterns_arg = argc > 5 ? argv[5] : "full,B,X,auto";
  const std::string images_arg = argc > 6 ? argv[6] : "1024:auto,4096:B";
  // Warm the process (CUDA context, cuDNN/cuBLAS handles) on the smallest shape.
  engine->generate({Job{make(512, "full", 1), nullptr}});

  std::ostringstream steps, images;
  auto append = [](std::ostringstream& o) {
    return [&o](const std::string& json) { o << (o.tellp() > 0 ? ",\n  " : "  ") << json; };
  };
  if (steps_arg != "-") step_rows(*engine, split(steps_arg), split(patterns_arg), append(steps));
  if (images_arg != "-") image_rows(*engine, split(images_arg), append(images));
  std::ofstream f(argv[2]);
  f << "{\"bench\": \"engine_bench\", \"gpu\": \"" << gpu << "\", \"command\": \"" << command
    << "\", \"commit\": \"" << argv[3] << "\", \"load_s\": " << load_s << ", \"steps\": [\n"
    << steps.str() << "\n], \"images\": [\n"
    << images.str() << "\n]}\n";
  return 0;
}
