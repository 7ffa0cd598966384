// Engine benchmark on one GPU with a full-size bundle: one denoising step per resolution x
// attention (with the time outside the transformer forwards), and whole images with the stage
// breakdown and peak memory. Prints tables; writes JSON (GPU, command, commit).
// usage: engine_bench [--graphs | --no-graphs] [--max-graphs=N] [--max-graph-tokens=N]
//                     [--warm-images] [--optimized-execution]
//                     <bundle> <out.json> <commit> [step res,...] [patterns]
//                     [res:pattern[:batch[:steps]],...]
// CUDA graphs of the denoising steps follow the engine's default (EngineOptions::cuda_graphs: on,
// up to 4096 tokens); --no-graphs turns them off, --graphs on; rows carry what capture cost
// (graph_capture_s, graph_mib). --warm-images: each image runs once before it is measured
// (first_wall_s), so a graph's capture, or any first-use cost of the shape, stays out of the
// measured run.
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

// What a row's requests added to the graph cache: capture seconds and the memory now held.
std::string graph_fields(const Engine& engine, const GraphCacheStats& before) {
  const GraphCacheStats s = engine.graph_stats();
  std::ostringstream j;
  j << ", \"graph_captures\": " << s.captures - before.captures
    << ", \"graph_capture_s\": " << s.capture_s - before.capture_s
    << ", \"graph_failures\": " << s.capture_failures - before.capture_failures
    << ", \"graph_replays\": " << s.hits - before.hits
    << ", \"graph_mib\": " << s.bytes / double(1 << 20);
  return j.str();
}

// Per-step rows: two steps below 8192^2 and the second (warm) one reported, so first-use
// costs (kernel module loads, cuBLAS heuristics for a new shape) stay out; one step at 8192^2,
// where a full-attention step takes ~1.5 min and first-use costs are negligible.
// With --graphs the first step captures and the reported one replays.
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
      const GraphCacheStats g0 = engine.graph_stats();
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
        << ", \"peak_gib\": " << peak << graph_fields(engine, g0) << "}";
      row(j.str());
    }
  }
}

// Whole images, "res:pattern[:batch[:steps]]" each (batch 1, 28 steps unless given): the stage
// split of one batch (text encode, noise, denoise, decode, encode; encode is the slowest output's,
// as a batch encodes in parallel), its wall time and what lies outside the steps.
void image_rows(Engine& engine, const std::vector<std::string>& specs, bool warm,
                const std::function<void(std::string)>& row) {
  std::printf("%6s %5s %5s %-26s %7s %8s %8s %8s %8s %8s %9s\n", "res", "batch", "steps",
              "attention", "text s", "denoise", "decode", "encode", "wall", "outside", "peak GiB");
  for (const auto& spec : specs) {
    const std::vector<std::string> f = split(spec, ':');
    const int64_t res = std::stoll(f[0]);
    const std::string p = f.size() > 1 ? f[1] : "auto";
    const int64_t batch = f.size() > 2 ? std::stoll(f[2]) : 1;
    const int64_t steps = f.size() > 3 ? std::stoll(f[3]) : 28;
    std::vector<Job> jobs;
    for (int64_t i = 0; i < batch; ++i) {
      jobs.push_back(Job{make(res, p, steps), nullptr});
      jobs.back().request.seed += static_cast<uint64_t>(i);
    }
    const GraphCacheStats g0 = engine.graph_stats();
    double first_wall = 0;
    if (warm) {
      const auto f0 = std::chrono::steady_clock::now();
      engine.generate(jobs);
      first_wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - f0).count();
    }
    peak_gib_and_reset();
    const auto w0 = std::chrono::steady_clock::now();
    const std::vector<Result> rs = engine.generate(jobs);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
    const Result& r = rs[0];
    if (!r.error.ok()) {
      std::printf("%6lld error: %s\n", static_cast<long long>(res), r.error.message.c_str());
      continue;
    }
    StageTimings t = r.timings;
    for (const Result& x : rs) t.encode_s = std::max(t.encode_s, x.timings.encode_s);
    const double peak = peak_gib_and_reset();
    std::printf("%6lld %5lld %5lld %-26s %7.3f %8.3f %8.3f %8.3f %8.3f %8.3f %9.1f\n",
                static_cast<long long>(res), static_cast<long long>(batch),
                static_cast<long long>(steps), r.attention.c_str(), t.text_encode_s, t.denoise_s,
                t.decode_s, t.encode_s, wall, wall - t.denoise_s, peak);
    std::fflush(stdout);
    std::ostringstream j;
    j << "{\"res\": " << res << ", \"batch\": " << batch << ", \"steps\": " << steps
      << ", \"attention\": \"" << r.attention << "\", \"text_encode_s\": " << t.text_encode_s
      << ", \"noise_s\": " << t.noise_s << ", \"denoise_s\": " << t.denoise_s
      << ", \"decode_s\": " << t.decode_s << ", \"encode_s\": " << t.encode_s
      << ", \"wall_s\": " << wall << ", \"outside_steps_s\": " << wall - t.denoise_s
      << ", \"images_per_s\": " << batch / wall << ", \"png_bytes\": " << r.bytes.size()
      << ", \"peak_gib\": " << peak;
    if (warm) j << ", \"first_wall_s\": " << first_wall;
    j << graph_fields(engine, g0) << "}";
    row(j.str());
  }
}

}  // namespace

int main(int argc_in, char** argv_in) {
  // Flags (--x) may come anywhere; the rest are the positional arguments.
  EngineOptions o;
  bool warm_images = false;
  std::vector<char*> args = {argv_in[0]};
  for (int i = 1; i < argc_in; ++i) {
    const std::string a = argv_in[i];
    if (a == "--graphs" || a == "--no-graphs") {
      o.cuda_graphs.enabled = a == "--graphs";
    } else if (a.rfind("--max-graphs=", 0) == 0) {
      o.cuda_graphs.max_graphs = std::stoll(a.substr(13));
    } else if (a.rfind("--max-graph-tokens=", 0) == 0) {
      o.cuda_graphs.max_tokens = std::stoll(a.substr(19));
    } else if (a == "--warm-images") {
      warm_images = true;
    } else if (a == "--optimized-execution") {  // TorchScript's profiling executor + fuser
      o.optimized_execution = true;
    } else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    } else {
      args.push_back(argv_in[i]);
    }
  }
  const int argc = static_cast<int>(args.size());
  char** argv = args.data();
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s [--graphs | --no-graphs] [--max-graphs=N] [--max-graph-tokens=N] "
                 "[--warm-images] "
                 "[--optimized-execution] "
                 "<bundle> <out.json> <commit> [step resolutions] [patterns] "
                 "[images res:pattern[:batch[:steps]],...]\n  e.g. %s B out.json abc 1024,4096 "
                 "full,B,X,auto 1024:auto,4096:B,512:auto:4:8   (\"-\" skips a part)\n",
                 argv[0], argv[0]);
    return 2;
  }
  o.bundle = argv[1];
  o.device = "cuda";
  o.profile_forwards = true;  // per-step rows; a sync per forward costs nothing at these sizes
  o.log = [](const std::string& msg, const std::string& key) {
    std::printf("  [engine] %s (%s)\n", msg.c_str(), key.c_str());
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<Engine> engine = Engine::load(o);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::printf("%s: bundle %s loaded in %.1f s (%.1f GiB)\n", gpu.c_str(),
              engine->manifest().name.c_str(), load_s, peak_gib_and_reset());
  std::string command = "engine_bench";
  for (int i = 1; i < argc_in; ++i) {
    command += std::string(" ") + (argv_in[i] == o.bundle ? "<bundle>" : argv_in[i]);
  }
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
  if (images_arg != "-") image_rows(*engine, split(images_arg), warm_images, append(images));
  const GraphCacheStats gs = engine->graph_stats();
  std::ostringstream graphs;
  graphs << "{\"enabled\": " << (o.cuda_graphs.enabled ? "true" : "false")
         << ", \"max_graphs\": " << o.cuda_graphs.max_graphs
         << ", \"max_tokens\": " << o.cuda_graphs.max_tokens << ", \"captures\": " << gs.captures
         << ", \"capture_failures\": " << gs.capture_failures << ", \"replays\": " << gs.hits
         << ", \"evictions\": " << gs.evictions << ", \"eager_steps\": " << gs.eager_steps
         << ", \"capture_s\": " << gs.capture_s << ", \"held_mib\": " << gs.bytes / double(1 << 20)
         << ", \"graphs\": [";
  const std::vector<GraphInfo> held = engine->graphs();
  for (size_t i = 0; i < held.size(); ++i) {
    graphs << (i ? ", " : "") << "{\"key\": \"" << held[i].key
           << "\", \"mib\": " << held[i].bytes / double(1 << 20)
           << ", \"capture_s\": " << held[i].capture_s << ", \"replays\": " << held[i].replays
           << "}";
  }
  graphs << "]}";
  if (o.cuda_graphs.enabled) {
    std::printf(
        "cuda graphs: %lld captured (%.2f s), %lld failed, %lld replays, %lld held (%.0f MiB)\n",
        static_cast<long long>(gs.captures), gs.capture_s,
        static_cast<long long>(gs.capture_failures), static_cast<long long>(gs.hits),
        static_cast<long long>(held.size()), gs.bytes / double(1 << 20));
  }
  std::ofstream f(argv[2]);
  f << "{\"bench\": \"engine_bench\", \"gpu\": \"" << gpu << "\", \"command\": \"" << command
    << "\", \"commit\": \"" << argv[3] << "\", \"load_s\": " << load_s
    << ", \"cuda_graphs\": " << graphs.str() << ", \"steps\": [\n"
    << steps.str() << "\n], \"images\": [\n"
    << images.str() << "\n]}\n";
  return 0;
}
