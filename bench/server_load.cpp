// Server under load: grat_server in this process (one model, its devices and batching from the
// flags) and C client threads, each with its own channel and TCP connection (as separate
// client processes would have), sending R requests in all (a shared counter: a client sends
// its next request when its previous one has finished). Every request is streamed to the end
// (status OK and a non-empty image). An untimed warm-up round (--warmup requests, default C)
// comes first, so CUDA/cuDNN initialisation and first batches are not measured.
// Prints one table row (throughput, latency quantiles send -> Finish, queue wait, batch sizes
// from the Started events); writes JSON.
//
// usage: server_load --bundle B [--devices cpu|cuda:0,cuda:1] [--size 512] [--steps 8]
//          [--attention auto|full|B|X] [--max-batch 4] [--batch-delay-ms 20] [--max-queue Q]
//          [--clients 16] [--requests 200] [--warmup C] [--out X.json] [--commit C]
// GPU name in the JSON: $GRAT_GPU_NAME (set by bench/run_server_bench.sh), else "cpu".
// On a small CPU host run with OMP_NUM_THREADS=1 (see bench/server_overhead.cpp).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "grat/server/log.h"
#include "grat/server/server.h"
#include "grat/v1/generation.grpc.pb.h"
#include "server_bench_util.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Record {
  bool ok = false;
  std::string error;
  size_t bytes = 0;
  double latency_s = 0;     // send -> Finish
  double queue_wait_s = 0;  // Finished.timings
  std::string device;       // Started
  int64_t batch_size = 0;   // Started
};

struct Options {
  std::map<std::string, std::string> v = {
      {"bundle", ""},        {"devices", "cpu"},  {"size", "512"},          {"steps", "8"},
      {"attention", "auto"}, {"max-batch", "4"},  {"batch-delay-ms", "20"}, {"max-queue", "0"},
      {"clients", "16"},     {"requests", "200"}, {"warmup", "0"},          {"out", ""},
      {"commit", ""}};
  int i(const std::string& k) const { return std::stoi(v.at(k)); }
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

grat::v1::AttentionMode parse_mode(const std::string& m) {
  if (m == "auto") return grat::v1::ATTENTION_MODE_AUTO;
  if (m == "full") return grat::v1::ATTENTION_MODE_FULL;
  if (m == "B") return grat::v1::ATTENTION_MODE_B;
  if (m == "X") return grat::v1::ATTENTION_MODE_X;
  throw std::invalid_argument("--attention must be auto, full, B or X; got " + m);
}

Record generate(grat::v1::Generation::Stub& stub, const grat::v1::GenerateRequest& req) {
  Record r;
  const auto t0 = Clock::now();
  grpc::ClientContext ctx;
  auto reader = stub.Generate(&ctx, req);
  grat::v1::GenerateEvent ev;
  while (reader->Read(&ev)) {
    if (ev.has_started()) {
      r.device = ev.started().device();
      r.batch_size = ev.started().batch_size();
    } else if (ev.has_result_chunk()) {
      r.bytes += ev.result_chunk().data().size();
    } else if (ev.has_finished()) {
      r.queue_wait_s = ev.finished().timings().queue_wait_s();
    }
  }
  const grpc::Status s = reader->Finish();
  r.latency_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.ok = s.ok() && r.bytes > 0;
  if (!s.ok()) r.error = std::to_string(s.error_code()) + ": " + s.error_message();
  if (s.ok() && r.bytes == 0) r.error = "OK but no result bytes";
  return r;
}

// `n` requests from the clients (work-stealing counter); returns the records and the wall time.
std::vector<Record> round(std::vector<std::unique_ptr<grat::v1::Generation::Stub>>& stubs,
                          grat::v1::GenerateRequest req, int n, uint64_t seed0, double* wall_s) {
  std::vector<Record> records(n);
  std::atomic<int> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (auto& stub : stubs) {
    clients.emplace_back([&, req]() mutable {
      for (int i; (i = next.fetch_add(1)) < n;) {
        req.set_seed(seed0 + i);
        records[i] = generate(*stub, req);
      }
    });
  }
  for (auto& t : clients) t.join();
  *wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return records;
}

double quantile(std::vector<double> v, double q) {  // linear interpolation
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * (v.size() - 1);
  const size_t lo = static_cast<size_t>(pos), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - lo) * (v[hi] - v[lo]);
}

// Requests per device and batch size (from the Started events).
std::map<std::string, std::map<int64_t, int>> batch_histogram(const std::vector<Record>& recs) {
  std::map<std::string, std::map<int64_t, int>> h;
  for (const Record& r : recs) {
    if (r.ok) ++h[r.device][r.batch_size];
  }
  return h;
}

std::string json_str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += (c == '\n' ? ' ' : c);
  }
  return o + "\"";
}

int run(int argc, char** argv) {
  Options o;
  for (int a = 1; a < argc; ++a) {
    const std::string k = argv[a];
    if (k.rfind("--", 0) != 0 || !o.v.count(k.substr(2)) || a + 1 >= argc) {
      std::fprintf(stderr, "%s: bad argument %s; see the usage at the top of %s\n", argv[0],
                   k.c_str(), __FILE__);
      return 2;
    }
    o.v[k.substr(2)] = argv[++a];
  }
  if (o.v["bundle"].empty()) {
    std::fprintf(stderr, "%s: --bundle is required\n", argv[0]);
    return 2;
  }
  const int size = o.i("size"), steps = o.i("steps"), clients = o.i("clients");
  const int requests = o.i("requests"), max_batch = o.i("max-batch");
  const int warmup = o.i("warmup") > 0 ? o.i("warmup") : clients;
  const int max_queue = o.i("max-queue") > 0 ? o.i("max-queue") : std::max(requests, warmup);
  const std::vector<std::string> devices = split(o.v["devices"], ',');
  const grat::v1::AttentionMode mode = parse_mode(o.v["attention"]);
  const char* gpu_env = std::getenv("GRAT_GPU_NAME");
  const std::string gpu = gpu_env && *gpu_env ? gpu_env : "cpu";

  const grat::server::ServerConfig c = grat::bench::bench_server_config(
      o.v["bundle"], devices, max_batch, o.i("batch-delay-ms"), max_queue);
  grat::server::init_json_logging("warn");
  const auto t_load = Clock::now();
  grat::server::Server server(c);
  server.start();
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();

  // One channel per client; a local subchannel pool gives each its own connection (gRPC
  // otherwise shares one connection between channels with equal arguments).
  std::vector<std::unique_ptr<grat::v1::Generation::Stub>> stubs;
  for (int i = 0; i < clients; ++i) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(grat::v1::Generation::NewStub(grpc::CreateCustomChannel(
        "127.0.0.1:" + std::to_string(server.port()), grpc::InsecureChannelCredentials(), args)));
  }
  grat::v1::GenerateRequest req = grat::bench::bench_request(size, steps, mode);

  double warm_s = 0, wall_s = 0;
  const std::vector<Record> warm = round(stubs, req, warmup, 1u << 20, &warm_s);
  const std::vector<Record> recs = round(stubs, req, requests, 1000, &wall_s);
  server.drain();
  server.wait();

  std::vector<double> lat;
  double latency_sum = 0, queue_sum = 0, batches = 0;
  int failures = 0;
  std::string first_error;
  for (const Record& r : recs) {
    if (!r.ok) {
      if (failures++ == 0) first_error = r.error;
      continue;
    }
    lat.push_back(r.latency_s);
    latency_sum += r.latency_s;
    queue_sum += r.queue_wait_s;
    batches += 1.0 / std::max<int64_t>(r.batch_size, 1);  // each batch's members add up to 1
  }
  const int ok = static_cast<int>(lat.size());
  const double throughput = wall_s > 0 ? ok / wall_s : 0;
  const double p50 = quantile(lat, 0.5), p90 = quantile(lat, 0.9), p99 = quantile(lat, 0.99);
  const double mean_latency = ok ? latency_sum / ok : 0, mean_queue = ok ? queue_sum / ok : 0;
  const double mean_batch = batches > 0 ? ok / batches : 0;
  const auto hist = batch_histogram(recs), warm_hist = batch_histogram(warm);
  const auto hist_text = [](const std::map<std::string, std::map<int64_t, int>>& h) {
    std::string s;
    for (const auto& [dev, sizes] : h) {
      for (const auto& [b, n] : sizes) {
        s += (s.empty() ? "" : " ") + dev + ":b" + std::to_string(b) + "x" + std::to_string(n);
      }
    }
    return s;
  };
  int warm_failures = 0;
  for (const Record& r : warm) warm_failures += r.ok ? 0 : 1;

  std::printf("%-16s %5s %5s %4s %4s %5s %4s %4s %8s %7s %7s %7s %7s %7s %6s\n", "devices", "size",
              "steps", "mb", "cli", "req", "ok", "fail", "wall_s", "img/s", "p50_s", "p90_s",
              "p99_s", "queue_s", "batch");
  std::printf("%-16s %5d %5d %4d %4d %5d %4d %4d %8.2f %7.3f %7.3f %7.3f %7.3f %7.3f %6.2f\n",
              o.v["devices"].c_str(), size, steps, max_batch, clients, requests, ok, failures,
              wall_s, throughput, p50, p90, p99, mean_queue, mean_batch);
  std::printf("batches (device:b<size>x<requests>): %s\n", hist_text(hist).c_str());
  std::printf("warm-up: %d requests in %.2f s, %d failed; %s\n", warmup, warm_s, warm_failures,
              hist_text(warm_hist).c_str());
  if (failures) std::printf("first failure: %s\n", first_error.c_str());

  if (!o.v["out"].empty()) {
    std::ofstream f(o.v["out"]);
    std::string cmd;
    for (int a = 0; a < argc; ++a) cmd += (a ? " " : "") + std::string(argv[a]);
    const char* omp = std::getenv("OMP_NUM_THREADS");
    f << "{\n  \"benchmark\": \"server_load\",\n  \"gpu\": " << json_str(gpu)
      << ",\n  \"commit\": " << json_str(o.v["commit"]) << ",\n  \"command\": " << json_str(cmd)
      << ",\n  \"OMP_NUM_THREADS\": " << json_str(omp ? omp : "")
      << ",\n  \"clients_connections\": \"one channel and TCP connection per client\""
      << ",\n  \"params\": {";
    bool first = true;
    for (const auto& [k, v] : o.v) {
      f << (first ? "" : ", ") << json_str(k) << ": " << json_str(v);
      first = false;
    }
    f << "},\n  \"max_queue\": " << max_queue << ",\n  \"warmup_requests\": " << warmup
      << ",\n  \"load_s\": " << load_s << ",\n  \"warmup_s\": " << warm_s
      << ",\n  \"warmup_failures\": " << warm_failures << ",\n  \"wall_s\": " << wall_s
      << ",\n  \"ok\": " << ok << ",\n  \"failures\": " << failures
      << ",\n  \"first_error\": " << json_str(first_error)
      << ",\n  \"throughput_images_per_s\": " << throughput << ",\n  \"latency_p50_s\": " << p50
      << ",\n  \"latency_p90_s\": " << p90 << ",\n  \"latency_p99_s\": " << p99
      << ",\n  \"latency_mean_s\": " << mean_latency << ",\n  \"queue_wait_mean_s\": " << mean_queue
      << ",\n  \"batches\": " << batches << ",\n  \"mean_batch_size\": " << mean_batch
      << ",\n  \"requests_by_device_batch\": {";
    first = true;
    for (const auto& [dev, sizes] : hist) {
      f << (first ? "" : ", ") << json_str(dev) << ": {";
      bool f2 = true;
      for (const auto& [b, n] : sizes) {
        f << (f2 ? "" : ", ") << "\"" << b << "\": " << n;
        f2 = false;
      }
      f << "}";
      first = false;
    }
    f << "},\n  \"latencies_s\": [";
    for (size_t k = 0; k < lat.size(); ++k) f << (k ? ", " : "") << lat[k];
    f << "]\n}\n";
  }
  return failures == 0 && warm_failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
}
