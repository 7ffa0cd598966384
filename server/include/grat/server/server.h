// The GRATServe gRPC server: grat.v1.Generation (callback API; reactors never block, work goes
// to the scheduler), grpc.health.v1 (overall "" and one entry per model name), server
// reflection, and the Prometheus exposer. Owns the loaded engines and the scheduler.
//
// Lifecycle: construct (loads every model; throws on a bad bundle or device), start() (binds;
// throws if the address cannot be bound), then drain() from any thread (health NOT_SERVING,
// new Generate calls UNAVAILABLE, running jobs finish until drain_timeout, then the gRPC
// server shuts down) and wait().
#pragma once

#include <memory>
#include <string>

#include "grat/server/config.h"

namespace grat::server {

class Server {
 public:
  explicit Server(ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  int port() const;  // the bound port (useful with port 0)
  void drain();
  // Re-reads the API key file (SIGHUP); on error keeps the current keys and returns why.
  std::string reload_keys();
  void wait();  // until the gRPC server has shut down

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grat::server
