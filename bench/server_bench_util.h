// Shared by the server benchmarks: an in-process server config with one model, "bench",
// on loopback (port chosen by the OS), no /metrics, warnings only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grat/server/config.h"

namespace grat::bench {

inline grat::server::ServerConfig bench_server_config(const std::string& bundle,
                                                      const std::vector<std::string>& devices,
                                                      int64_t max_batch, int64_t batch_delay_ms,
                                                      int64_t max_queue) {
  grat::server::ServerConfig c;
  c.listen = "127.0.0.1:0";
  c.metrics_listen = "";
  c.log_level = "warn";
  grat::server::ModelEntry m;
  m.name = "bench";
  m.bundle = bundle;
  m.devices = devices;
  m.max_batch = max_batch;
  m.max_batch_delay_ms = batch_delay_ms;
  m.max_queue = max_queue;
  c.models.push_back(m);
  return c;
}

}  // namespace grat::bench
