// Prometheus metrics of the server (prometheus-cpp), served on their own port at /metrics by
// prometheus-cpp's Exposer (civetweb: concurrent connections, slow clients time out).
// Implements the scheduler's metrics hooks. Thread-safe: every method may be called from any
// thread and none blocks (prometheus-cpp metrics are atomics; label lookups take a short lock).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "grat/scheduler/scheduler.h"

namespace prometheus {
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace grat::server {

class Metrics : public scheduler::SchedulerMetrics {
 public:
  // `models`: the served model names (others are counted as "unknown", so random names in
  // requests cannot grow the label set). `devices`: for the memory gauge.
  Metrics(const std::vector<std::string>& models, const std::vector<std::string>& devices);
  ~Metrics() override;

  // Starts the HTTP exposer on host:port. Throws std::runtime_error if it cannot bind.
  void expose(const std::string& address);

  // One finished RPC: outcome is the lower-case gRPC status name ("ok", "invalid_argument").
  void request_done(const std::string& model, const std::string& outcome);
  void gpu_memory(const std::string& device, double bytes);

  // scheduler::SchedulerMetrics
  void queue_depth(const std::string& model, int64_t depth) override;
  void queue_wait(const std::string& model, double seconds) override;
  void batch_started(const std::string& model, const std::string& device, int64_t size) override;
  void first_step(const std::string& model, double seconds_since_submit) override;
  void step_time(const std::string& model, double seconds) override;
  void finished(const std::string& model, engine::ErrorCode code, double seconds) override;

  // Seconds-to-minutes buckets used by every latency histogram.
  static std::vector<double> latency_buckets();

 private:
  struct PerModel;
  PerModel& model(const std::string& name);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Gauge>* gpu_memory_ = nullptr;
  std::map<std::string, std::unique_ptr<PerModel>> models_;  // fixed after construction
  std::map<std::string, prometheus::Gauge*> devices_;        // fixed after construction
  std::mutex requests_mu_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> request_counters_;
};

}  // namespace grat::server
