// Engine benchmark for video bundles: one denoising step per shape x attention (time outside
// the transformer forward, what auto picked, peak memory), and whole clips (text, denoise, VAE
// decode, MP4 encode, peak). Prints tables; writes JSON (GPU, command, commit).
// usage: video_bench <bundle> <out.json> <commit> [shapes] [patterns] [clips] [clip steps]
//   shapes: WxHxF (e.g. 960x544x129,1280x720x129); patterns: full,B,X,auto
//   clips: WxHxF:pattern[:full_steps] (e.g. 1280x720x129:B,1280x720x129:B:10); "-" skips
//   DEVICE=cpu runs on the CPU (a smoke test with the tiny bundle; no peak memory).
#include <ATen/cuda/CUDAContext.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "grat/engine/engine.h"
#include "model/bench_util.h"

using namespace grat::engine;
using grat::bench::split;

namespace {

std::vector<std::string> split_on(const std::string& s, char sep) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) v.push_back(item);
  return v;
}

Request make(const std::string& shape, const std::string& pattern, int64_t steps) {
  const auto whf = split_on(shape, 'x');
  Request r;
  r.prompt = "a drone shot over a coastline at sunset, waves breaking on the rocks";
  r.width = std::stoll(whf.at(0));
  r.height = std::stoll(whf.at(1));
  r.frames = std::stoll(whf.at(2));
  r.steps = steps;
  r.seed = 1234;
  r.format = OutputFormat::kMp4;
  r.attention.mode = *parse_attention_mode(pattern);
  return r;
}

// Stops the job after `steps` steps: the step table needs no VAE decode (55 s at 720p).
class StopAfter : public JobObserver {
 public:
  explicit StopAfter(int64_t steps) : steps_(steps) {}
  void on_progress(int64_t step, int64_t, const std::string&) override { done_ = step; }
  bool cancelled() const override { return done_ >= steps_; }

 private:
  int64_t steps_, done_ = 0;
};

bool on_cuda = true;

double peak_and_reset() {
  if (!on_cuda) return 0;
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
  o.device = std::getenv("DEVICE") != nullptr ? std::getenv("DEVICE") : "cuda";
  on_cuda = o.device.rfind("cuda", 0) == 0;
  o.profile_forwards = true;  // one host sync per forward: nothing next to a seconds-long step
  std::unique_ptr<Engine> engine = Engine::load(o);
  const std::string gpu = on_cuda ? at::cuda::getCurrentDeviceProperties()->name : "cpu";
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
  std::printf("%16s %5s %-26s %9s %10s %10s %9s\n", "shape", "attn", "ran", "step s", "forward s",
              "outside %", "peak GiB");
  for (const auto& shape : shapes) {
    if (shape == "-") break;
    for (const auto& p : patterns) {
      peak_and_reset();
      StopAfter stop(2);  // of 3 scheduled: the second step is the warm one
      const Result r = engine->generate({Job{make(shape, p, 3), &stop}})[0];
      if (r.error.code != ErrorCode::kCancelled) {
        std::printf("%16s %5s error: %s\n", shape.c_str(), p.c_str(), r.error.message.c_str());
        continue;
      }
      const StageTimings& t = r.timings;
      const double step = t.denoise_s - t.first_step_s, fwd = t.forward_s - t.first_forward_s;
      const double peak = peak_and_reset();
      std::printf("%16s %5s %-26s %9.3f %10.3f %9.2f%% %9.1f\n", shape.c_str(), p.c_str(),
                  r.attention.c_str(), step, fwd, 100.0 * (step - fwd) / step, peak);
      std::fflush(stdout);
      std::ostringstream j;
      j << "{\"shape\": \"" << shape << "\", \"requested\": \"" << p << "\", \"attention\": \""
        << r.attention << "\", \"step_s\": " << step << ", \"forward_s\": " << fwd
        << ", \"first_step_s\": " << t.first_step_s << ", \"text_encode_s\": " << t.text_encode_s
        << ", \"peak_gib\": " << peak << "}";
      add(steps_json, j.str());
    }
  }
  std::printf("%16s %-30s %7s %8s %8s %8s %8s %9s\n", "clip", "attention", "text s", "denoise",
              "decode", "encode", "total", "peak GiB");
  for (const auto& spec : split(clips_arg)) {
    if (spec == "-") break;
    const auto parts = split_on(spec, ':');
    Request r = make(parts.at(0), parts.size() > 1 ? parts[1] : "auto", clip_steps);
    if (parts.size() > 2) r.attention.full_steps = std::stoll(parts[2]);
    peak_and_reset();
    const auto t0 = std::chrono::steady_clock::now();
    const Result res = engine->generate({Job{r, nullptr}})[0];
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!res.error.ok()) {
      std::printf("%16s error: %s\n", spec.c_str(), res.error.message.c_str());
      continue;
    }
    const StageTimings& t = res.timings;
    const double peak = peak_and_reset();
    std::printf("%16s %-30s %7.2f %8.2f %8.2f %8.2f %8.2f %9.1f\n", parts[0].c_str(),
                res.attention.c_str(), t.text_encode_s, t.denoise_s, t.decode_s, t.encode_s, wall,
                peak);
    std::fflush(stdout);
    std::ostringstream j;
    j << "{\"clip\": \"" << spec << "\", \"steps\": " << clip_steps << ", \"attention\": \""
      << res.attention << "\", \"text_encode_s\": " << t.text_encode_s
      << ", \"noise_s\": " << t.noise_s << ", \"denoise_s\": " << t.denoise_s
      << ", \"decode_s\": " << t.decode_s << ", \"encode_s\": " << t.encode_s
      << ", \"total_s\": " << wall << ", \"frames\": " << res.frames
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
