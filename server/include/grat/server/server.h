// The GRATServe gRPC server: grat.v1.Generation (callback API; reactors never block, work goes
// to the scheduler), grpc.health.v1 (overall "" and one entry per model name), server
// reflection, and the Prometheus exposer. Owns the loaded engines and the scheduler.
//
// Lifecycle: construct (loads every model; throws on a bad bundle or device), start() (binds;
// throws if the address cannot be bound), then drain() from any thread (health NOT_SERVING,
// new Generate calls UNAVAILABLE, running jobs finish until drain_timeout, then the gRPC
// server shuts down) and wait().
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "grat/server/config.h"

namespace grat::server {

// A health service name that drain does not touch: Kubernetes liveness probes use it
// (readiness uses "" overall, which turns NOT_SERVING at drain start).
inline constexpr const char* kLivenessService = "grat.liveness";

class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  int port() const;  // the bound port (useful with port 0)
  // timeout_s < 0: the config's drain_timeout_s.
  void drain(double timeout_s = -1);
  // Called once, from the watchdog's thread, when a device failed (a sticky CUDA error): the
  // process cannot recover and should exit non-zero. Set before start().
  void on_fatal(std::function<void()> fatal);
  // Re-reads the API key file (SIGHUP); on error keeps the current keys and returns why.
  std::string reload_keys();
  void wait();  // until the gRPC server has shut down

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grat::server
