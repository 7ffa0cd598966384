#include "grat/server/metrics.h"

#include <netdb.h>
#include <poll.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace grat::server {

// A minimal HTTP/1.0 endpoint for GET /metrics (text exposition format 0.0.4).
// prometheus-cpp's civetweb Exposer fails to start inside this process (mg_start returns
// null after binding, linked with LibTorch), so the server answers scrapes itself; one
// thread, one connection at a time, which is what a Prometheus scrape needs.
class MetricsHttp {
 public:
  MetricsHttp(const std::string& address, std::shared_ptr<prometheus::Registry> registry)
      : registry_(std::move(registry)) {
    const auto colon = address.rfind(':');
    std::string host = address.substr(0, colon), port = address.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.empty() || host == "*" ? nullptr : host.c_str(), port.c_str(), &hints,
                    &res) != 0 ||
        !res) {
      throw std::runtime_error("metrics_listen: cannot resolve '" + address + "'");
    }
    for (addrinfo* a = res; a && fd_ < 0; a = a->ai_next) {
      const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
      if (fd < 0) continue;
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 64) == 0) {
        fd_ = fd;
      } else {
        close(fd);
      }
    }
    freeaddrinfo(res);
    if (fd_ < 0) {
      throw std::runtime_error("metrics_listen: cannot listen on '" + address +
                               "': " + std::strerror(errno));
    }
    thread_ = std::thread([this] { loop(); });
  }
  ~MetricsHttp() {
    stop_.store(true);
    thread_.join();
    close(fd_);
  }

 private:
  void loop() {
    while (!stop_.load()) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      timeval tv{2, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      serve(c);
      close(c);
    }
  }

  void serve(int c) {
    std::string req;
    char buf[2048];
    while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
      const ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
    const bool get = req.rfind("GET ", 0) == 0;
    const size_t sp = req.find(' ', 4);
    const std::string path = get && sp != std::string::npos ? req.substr(4, sp - 4) : "";
    std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
    if (!get) {
      status = "405 Method Not Allowed";
      body = "only GET\n";
    } else if (path == "/metrics" || path.rfind("/metrics?", 0) == 0) {
      body = prometheus::TextSerializer().Serialize(registry_->Collect());
    } else {
      status = "404 Not Found";
      body = "see /metrics\n";
    }
    std::string head = "HTTP/1.0 " + status + "\r\nContent-Type: " + type +
                       "\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n";
    const std::string out = head + body;
    size_t off = 0;
    while (off < out.size()) {
      const ssize_t n = send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }

  std::shared_ptr<prometheus::Registry> registry_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

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
  http_ = std::make_unique<MetricsHttp>(address, registry_);
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
