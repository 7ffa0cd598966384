// Times the CPU reference on full-size layouts (default: Flux 2048^2 in GRAT-B, 16,896
// tokens, 24 heads x 128) and writes JSON to bench/results/.
// usage: grat_cpu_bench [pattern ...]   (default: B)
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "grat/ops.h"

namespace {

std::string shell(const char* cmd) {
  std::string out;
  if (FILE* p = popen(cmd, "r")) {
    char buf[256];
    while (fgets(buf, sizeof buf, p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> patterns;
  for (int i = 1; i < argc; ++i) patterns.emplace_back(argv[i]);
  if (patterns.empty()) patterns = {"B"};
  const int64_t text = 512, heads = 24, dim = 128, side = 128;
  const std::vector<int64_t> grid{side, side}, group{16, 16};
  const int64_t n = text + side * side;
  at::manual_seed(0);
  const at::Tensor q = at::randn({1, n, heads, dim}, at::kBFloat16);
  const at::Tensor k = at::randn_like(q), v = at::randn_like(q);
  const std::string cpu = shell("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'");
  const std::string commit = shell("git rev-parse --short HEAD 2>/dev/null");
  std::string cmd = "grat_cpu_bench";
  for (const auto& p : patterns) cmd += " " + p;
  std::printf("%-28s %-5s %8s %10s %8s\n", "case", "attn", "tokens", "seconds", "threads");
  std::string rows;
  for (const std::string& p : patterns) {
    const auto t0 = std::chrono::steady_clock::now();
    const at::Tensor out = grat::attention(q, k, v, grid, group, p, 1, text, true);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    TORCH_CHECK(out.isfinite().all().item<bool>(), "non-finite output");
    std::printf("%-28s %-5s %8ld %10.2f %8d\n", "flux 2048^2 bf16 24x128", p.c_str(),
                static_cast<long>(n), s, at::get_num_threads());
    rows += std::string(rows.empty() ? "" : ",\n") + "  {\"case\": \"flux-2048\", \"pattern\": \"" +
            p + "\", \"tokens\": " + std::to_string(n) + ", \"seconds\": " + std::to_string(s) +
            "}";
  }
  const std::string path = "bench/results/cpu_reference.json";
  std::ofstream f(path);
  f << "{\"device\": \"cpu: " << cpu << "\", \"threads\": " << at::get_num_threads()
    << ", \"command\": \"" << cmd << "\", \"commit\": \"" << commit << "\", \"rows\": [\n"
    << rows << "\n]}\n";
  std::printf("wrote %s\n", f ? path.c_str() : "nothing (run from the repo root)");
  return 0;
}
