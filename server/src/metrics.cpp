#include "grat/server/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <stdexcept>

namespace grat::server {

bool civetweb_stack_fix_linked();  // thread_stack.cpp

namespace {

// civetweb's listening_ports wants a numeric address: "127.0.0.1:9464", "[::1]:9464", or the
// port alone for every interface ("*:9464", ":9464").
std::string numeric_listen(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    throw std::runtime_error("metrics_listen: expected host:port, got '" + address + "'");
  }
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.empty() || host == "*") return port;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0 || res == nullptr) {
    throw std::runtime_error("metrics_listen: cannot resolve '" + address + "'");
  }
  char buf[INET6_ADDRSTRLEN] = {};
  const bool v6 = res->ai_family == AF_INET6;
  const void* a =
      v6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr)
         : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
  inet_ntop(res->ai_family, a, buf, sizeof buf);
  freeaddrinfo(res);
  return v6 ? "[" + std::string(buf) + "]:" + port : std::string(buf) + ":" + port;
}

}  // namespace

struct Metrics::PerModel {
  prometheus::Gauge* queue_depth = nullptr;
  prometheus::Histogram* queue_wait = nullptr;
  prometheus::Histogram* first_step = nullptr;
  prometheus::Histogram* step_time = nullptr;
  prometheus::Histogram* latency = nullptr;
  prometheus::Histogram* batch_size = nullptr;
};

std::vector<double> Metrics::latency_buckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600};
}

Metrics::Metrics(const std::vector<std::string>& models, const std::vector<std::string>& devices)
    : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  requests_ = &BuildCounter()
                   .Name("grat_requests_total")
                   .Help("Generate RPCs by model and outcome (lower-case gRPC status)")
                   .Register(*registry_);
  auto& depth = BuildGauge()
                    .Name("grat_queue_depth")
                    .Help("Jobs waiting in the model's queue (not running)")
                    .Register(*registry_);
  auto& wait = BuildHistogram()
                   .Name("grat_queue_wait_seconds")
                   .Help("Time from admission to the start of the job's batch")
                   .Register(*registry_);
  auto& first = BuildHistogram()
                    .Name("grat_time_to_first_step_seconds")
                    .Help("Time from admission to the end of the first denoising step")
                    .Register(*registry_);
  auto& step = BuildHistogram()
                   .Name("grat_step_seconds")
                   .Help("Duration of one denoising step of a batch")
                   .Register(*registry_);
  auto& latency = BuildHistogram()
                      .Name("grat_request_latency_seconds")
                      .Help("End-to-end latency from admission to the job's end, any outcome")
                      .Register(*registry_);
  auto& batch = BuildHistogram()
                    .Name("grat_batch_size")
                    .Help("Jobs per batch run by a worker")
                    .Register(*registry_);
  gpu_memory_ = &BuildGauge()
                     .Name("grat_gpu_memory_bytes")
                     .Help("Device memory in use per device (0 on the CPU)")
                     .Register(*registry_);
  std::vector<std::string> names = models;
  names.push_back("unknown");
  for (const std::string& m : names) {
    auto p = std::make_unique<PerModel>();
    const prometheus::Labels l{{"model", m}};
    p->queue_depth = &depth.Add(l);
    p->queue_wait = &wait.Add(l, latency_buckets());
    p->first_step = &first.Add(l, latency_buckets());
    p->step_time = &step.Add(l, latency_buckets());
    p->latency = &latency.Add(l, latency_buckets());
    p->batch_size = &batch.Add(
        l, prometheus::Histogram::BucketBoundaries{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64});
    models_.emplace(m, std::move(p));
  }
  for (const std::string& d : devices) {
    if (!devices_.count(d)) devices_[d] = &gpu_memory_->Add({{"device", d}});
  }
}

Metrics::~Metrics() = default;

void Metrics::expose(const std::string& address) {
  civetweb_stack_fix_linked();
  const std::string ports = numeric_listen(address);
  try {
    // Concurrent: 32 worker threads, and a client that has not sent its request within 3 s
    // is dropped, so slow or silent connections cannot hold every scrape up.
    exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", ports, "num_threads", "32", "request_timeout_ms", "3000"});
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics_listen: cannot listen on '" + address + "': " + e.what());
  }
  exposer_->RegisterCollectable(registry_);
}

Metrics::PerModel& Metrics::model(const std::string& name) {
  auto it = models_.find(name);
  return it != models_.end() ? *it->second : *models_.at("unknown");
}

void Metrics::request_done(const std::string& model_name, const std::string& outcome) {
  const std::string m = models_.count(model_name) ? model_name : "unknown";
  std::lock_guard<std::mutex> lk(requests_mu_);
  auto& c = request_counters_[{m, outcome}];
  if (!c) c = &requests_->Add({{"model", m}, {"outcome", outcome}});
  c->Increment();
}

void Metrics::gpu_memory(const std::string& device, double bytes) {
  auto it = devices_.find(device);
  if (it != devices_.end()) it->second->Set(bytes);
}

void Metrics::queue_depth(const std::string& m, int64_t depth) {
  model(m).queue_depth->Set(static_cast<double>(depth));
}
void Metrics::queue_wait(const std::string& m, double s) { model(m).queue_wait->Observe(s); }
void Metrics::batch_started(const std::string& m, const std::string&, int64_t size) {
  model(m).batch_size->Observe(static_cast<double>(size));
}
void Metrics::first_step(const std::string& m, double s) { model(m).first_step->Observe(s); }
void Metrics::step_time(const std::string& m, double s) { model(m).step_time->Observe(s); }
void Metrics::finished(const std::string& m, engine::ErrorCode, double s) {
  model(m).latency->Observe(s);
}

}  // namespace grat::server
