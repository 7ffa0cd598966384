// Server overhead: the same generations run (a) on engine::Engine directly and (b) through
// grat_server in this process (gRPC over loopback, scheduler, validation, chunked streaming),
// one request at a time. Prints per-image wall times and the overhead; writes JSON.
//
// On a small CPU host, run with OMP_NUM_THREADS=1: with OpenMP's default spinning, LibTorch
// is ~2.7x faster on the thread that loaded the engine than on any other thread (measured on
// 2 cores: 0.07 s vs 0.19 s per 256^2 image), so "engine direct" on the main thread against a
// scheduler worker thread measures OpenMP, not the server (OMP_NUM_THREADS=1: 0.10 s on every
// thread; OMP_WAIT_POLICY=passive: 0.21 s on every thread).
//
// usage: server_overhead <bundle> <device> <size> <steps> <repeats> <out.json> [commit]
//   e.g. server_overhead bundles/flux-tiny cpu 256 4 10 bench/results/server_overhead_cpu.json
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "grat/engine/engine.h"
#include "grat/server/log.h"
#include "grat/server/server.h"
#include "grat/v1/generation.grpc.pb.h"
#include "server_bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()
             ? 0
             : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr,
                 "usage: %s <bundle> <device> <size> <steps> <repeats> <out.json> [commit]\n",
                 argv[0]);
    return 2;
  }
  const std::string bundle = argv[1], device = argv[2], out = argv[6];
  const int size = std::stoi(argv[3]), steps = std::stoi(argv[4]), repeats = std::stoi(argv[5]);
  const std::string commit = argc > 7 ? argv[7] : "";

  // (a) The engine directly (one warm-up, then `repeats` images), on the thread that loaded
  // it and, like a scheduler worker, on another thread (TorchScript's executor settings are
  // thread-local).
  std::vector<double> direct, direct_thread;
  {
    grat::engine::EngineOptions o;
    o.bundle = bundle;
    o.device = device;
    auto engine = grat::engine::Engine::load(o);
    grat::engine::Request r;
    r.prompt = grat::bench::kBenchPrompt;
    r.width = r.height = size;
    r.steps = steps;
    r.seed = 1234;
    for (int i = -1; i < repeats; ++i) {
      const auto t0 = Clock::now();
      auto results = engine->generate({grat::engine::Job{r, nullptr}});
      const double s = seconds_since(t0);
      if (!results.at(0).error.ok()) {
        std::fprintf(stderr, "engine: %s\n", results[0].error.message.c_str());
        return 1;
      }
      if (i >= 0) direct.push_back(s);
    }
    std::thread worker([&] {
      for (int i = -1; i < repeats; ++i) {
        const auto t0 = Clock::now();
        auto results = engine->generate({grat::engine::Job{r, nullptr}});
        if (i >= 0 && results.at(0).error.ok()) direct_thread.push_back(seconds_since(t0));
      }
    });
    worker.join();
  }

  // (b) Through the server, in this process, over loopback.
  std::vector<double> served;
  {
    const grat::server::ServerConfig c =
        grat::bench::bench_server_config(bundle, {device}, /*max_batch=*/1, /*delay_ms=*/0, 64);
    grat::server::init_json_logging("warn");
    grat::server::Server server(c);
    server.start();
    auto stub = grat::v1::Generation::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server.port()), grpc::InsecureChannelCredentials()));
    grat::v1::GenerateRequest req =
        grat::bench::bench_request(size, steps, grat::v1::ATTENTION_MODE_AUTO);
    req.set_seed(1234);
    for (int i = -1; i < repeats; ++i) {
      const auto t0 = Clock::now();
      grpc::ClientContext ctx;
      auto reader = stub->Generate(&ctx, req);
      grat::v1::GenerateEvent ev;
      size_t bytes = 0;
      while (reader->Read(&ev)) {
        if (ev.has_result_chunk()) bytes += ev.result_chunk().data().size();
      }
      const grpc::Status s = reader->Finish();
      const double secs = seconds_since(t0);
      if (!s.ok() || bytes == 0) {
        std::fprintf(stderr, "server: %s\n", s.error_message().c_str());
        return 1;
      }
      if (i >= 0) served.push_back(secs);
    }
    server.drain();
    server.wait();
  }

  const double md = median(direct), mt = median(direct_thread), ms = median(served);
  const double overhead = md > 0 ? (ms - md) / md * 100.0 : 0;
  const double overhead_thread = mt > 0 ? (ms - mt) / mt * 100.0 : 0;
  std::printf("%-8s %6s %6s %10s %14s %10s %10s %14s\n", "device", "size", "steps", "engine_s",
              "engine_thr_s", "server_s", "overhead", "overhead_thr");
  std::printf("%-8s %6d %6d %10.4f %14.4f %10.4f %9.2f%% %13.2f%%\n", device.c_str(), size, steps,
              md, mt, ms, overhead, overhead_thread);
  std::ofstream f(out);
  f << "{\n  \"benchmark\": \"server_overhead\",\n  \"commit\": \"" << commit
    << "\",\n  \"command\": \"";
  for (int i = 0; i < argc; ++i) f << (i ? " " : "") << argv[i];
  const char* omp = std::getenv("OMP_NUM_THREADS");
  f << "\",\n  \"OMP_NUM_THREADS\": \"" << (omp ? omp : "") << "\",\n  \"device\": \"" << device
    << "\",\n  \"size\": " << size << ",\n  \"steps\": " << steps << ",\n  \"repeats\": " << repeats
    << ",\n  \"engine_median_s\": " << md << ",\n  \"server_median_s\": " << ms
    << ",\n  \"overhead_percent\": " << overhead << ",\n  \"engine_other_thread_median_s\": " << mt
    << ",\n  \"overhead_vs_other_thread_percent\": " << overhead_thread << ",\n  \"engine_s\": [";
  for (size_t i = 0; i < direct.size(); ++i) f << (i ? ", " : "") << direct[i];
  f << "],\n  \"server_s\": [";
  for (size_t i = 0; i < served.size(); ++i) f << (i ? ", " : "") << served[i];
  f << "]\n}\n";
  return 0;
}
