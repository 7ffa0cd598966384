// Engine benchmark for video bundles on one GPU: one denoising step per shape x attention (time
// outside the transformer forward, peak memory), and whole clips (text, denoise, VAE decode,
// MP4 encode, peak). Prints tables; writes JSON (GPU, command, commit).
// usage: video_bench <bundle> <out.json> <commit> [step shapes] [patterns] [clips] [clip steps]
//   shapes: WxHxF (e.g. 960x544x129,1280x720x129); patterns: full,B,X,auto
//   clips: WxHxF:pattern[:full_steps] (e.g. 1280x720x129:B,1280x720x129:B:10); "-" skips
#include <ATen/cuda/CUDAContext.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "grat/engine/engine.h"
#include "model/bench_util.h"

using namespace grat::engine;
using grat::bench::split;

namespace {

Request make(const std::string& shape, const std::string& pattern, int64_t steps) {
  std::vector<int64_t> whf;
  std::stringstream ss(shape);
  for (std::string item; std::getline(ss, item, 'x');) whf.push_back(std::stoll(item));
  Request r;
  r.prompt = "a drone shot over a coastline at sunset, waves breaking on the rocks";
  r.width = whf.at(0);
  r.height = whf.at(1);
  r.frames = whf.at(2);
  r.steps = steps;
  r.seed = 1234;
  r.format = OutputFormat::kMp4;
  r.attention.mode = *parse_attention_mode(pattern);
  return r;
}

double peak_and_reset() {
  const double p = grat::bench::peak_gib();
  grat::bench::reset_peak();
  return p;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: %s <bundle> <out.json> <commit> [shapes] [patterns] [clips] "
                 "[clip steps]\n",
                 argv[0]);
    return 2;
  }
  EngineOptions o;
  o.bundle = argv[1];
  o.device = "cuda";
  o.profile_forwards = true;  // one host sync per forward: nothing next to a seconds-long step
  std::unique_ptr<Engine> engine = Engine::load(o);
  const std::string gpu = at::cuda::getCurrentDeviceProperties()->name;
  std::string command = "video_bench <bundle>";
  for (int i = 2; i < argc; ++i) command += std::string(" ") + argv[i];
  const auto shapes = split(argc > 4 ? argv[4] : "960x544x129,1280x720x129");
  const auto patterns = split(argc > 5 ? argv[5] : "full,B,X,auto");
  const std::string clips_arg = argc > 6 ? argv[6] : "1280x720x129:B";
  const int64_t clip_steps = argc > 7 ? std::stoll(argv[7]) : 50;
  std::ostringstream steps_json, clips_json;
  auto add = [](std::ostringstream& o, const std::string& j) {
    o << (o.tellp() > 0 ? ",\n  " : "  ") << j;
  };
  std::printf("%16s %5s %10s %10s %10s %9s\n", "shape", "attn", "step s", "forward s", "outside %",
              "peak GiB");
  for (const auto& shape : shapes) {
    if (shape == "-") break;
    for (const auto& p : patterns) {
      peak_and_reset();
      const Result r = engine->generate({Job{make(shape, p, 2), nullptr}})[0];
      if (!r.error.ok()) {
        std::printf("%16s %5s error: %s\n", shape.c_str(), p.c_str(), r.error.message.c_str());
        continue;
      }
      const StageTimings& t = r.timings;  // the second (warm) step
      const double step = t.denoise_s - t.first_step_s, fwd = t.forward_s - t.first_forward_s;
      const double peak = peak_and_reset();
      std::printf("%16s %5s %10.3f %10.3f %9.2f%% %9.1f\n", shape.c_str(), p.c_str(), step, fwd,
                  100.0 * (step - fwd) / step, peak);
      std::fflush(stdout);
      std::ostringstream j;
      j << "{\"shape\": \"" << shape << "\", \"requested\": \"" << p << "\", \"attention\": \""
        << r.attention << "\", \"step_s\": " << step << ", \"forward_s\": " << fwd
        << ", \"peak_gib\": " << peak << "}";
      add(steps_json, j.str());
    }
  }
  std::printf("%16s %-28s %7s %8s %8s %8s %8s %9s\n", "clip", "attention", "text s", "denoise",
              "decode", "encode", "total", "peak GiB");
  for (const auto& spec : split(clips_arg)) {
    if (spec == "-") break;
    const auto parts = [&] {
      std::vector<std::string> v;
      std::stringstream ss(spec);
      for (std::string item; std::getline(ss, item, ':');) v.push_back(item);
      return v;
    }();
    Request r = make(parts.at(0), parts.size() > 1 ? parts[1] : "auto", clip_steps);
    if (parts.size() > 2) r.attention.full_steps = std::stoll(parts[2]);
    peak_and_reset();
    const Result res = engine->generate({Job{r, nullptr}})[0];
    if (!res.error.ok()) {
      std::printf("%16s error: %s\n", spec.c_str(), res.error.message.c_str());
      continue;
    }
    const StageTimings& t = res.timings;
    const double total = t.text_encode_s + t.noise_s + t.denoise_s + t.decode_s + t.encode_s;
    const double peak = peak_and_reset();
    std::printf("%16s %-28s %7.2f %8.2f %8.2f %8.2f %8.2f %9.1f\n", parts[0].c_str(),
                res.attention.c_str(), t.text_encode_s, t.denoise_s, t.decode_s, t.encode_s, total,
                peak);
    std::fflush(stdout);
    std::ostringstream j;
    j << "{\"clip\": \"" << spec << "\", \"steps\": " << clip_steps << ", \"attention\": \""
      << res.attention << "\", \"text_encode_s\": " << t.text_encode_s
      << ", \"denoise_s\": " << t.denoise_s << ", \"decode_s\": " << t.decode_s
      << ", \"encode_s\": " << t.encode_s << ", \"total_s\": " << total
      << ", \"mp4_bytes\": " << res.bytes.size() << ", \"peak_gib\": " << peak << "}";
    add(clips_json, j.str());
  }
  std::ofstream f(argv[2]);
  f << "{\"bench\": \"video_bench\", \"gpu\": \"" << gpu << "\", \"command\": \"" << command
    << "\", \"commit\": \"" << argv[3] << "\", \"steps\": [\n"
    << steps_json.str() << "\n], \"clips\": [\n"
    << clips_json.str() << "\n]}\n";
  return 0;
}
