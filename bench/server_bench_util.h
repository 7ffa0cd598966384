// Shared by the server benchmarks: an in-process server config with one model, "bench",
// on loopback (port chosen by the OS), no /metrics, warnings only; its requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grat/server/config.h"
#include "grat/v1/generation.pb.h"

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

inline constexpr const char* kBenchPrompt =
    "a detailed photograph of a mountain village at dawn, mist in the valley";

// A Generate request for the "bench" model (the seed is left to the caller).
inline grat::v1::GenerateRequest bench_request(int size, int steps, grat::v1::AttentionMode mode) {
  grat::v1::GenerateRequest req;
  req.set_model("bench");
  req.set_prompt(kBenchPrompt);
  req.set_width(size);
  req.set_height(size);
  req.set_steps(steps);
  req.mutable_attention()->set_mode(mode);
  return req;
}

}  // namespace grat::bench
