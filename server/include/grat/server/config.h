// Server configuration: one YAML file (every key documented in deploy/config.example.yaml),
// then environment overrides. Loading refuses unknown keys and bad values with an error
// naming the key (ConfigError).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "grat/engine/graph_cache.h"  // plain C++: the cuda_graphs settings and their defaults

namespace grat::server {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelEntry {
  std::string name;                  // API name (required)
  std::string bundle;                // bundle folder
  std::vector<std::string> devices;  // one worker per device: "cpu", "cuda:0", ...
  std::string dtype = "auto";        // auto | bf16 | fp16 | fp32
  int64_t max_queue = 64;
  int64_t max_batch = 4;
  int64_t max_batch_delay_ms = 20;
  int64_t max_prompt_bytes = 4096;  // prompts longer than this are refused before tokenizing
  // Device memory each worker plans requests against (engine::EngineOptions); 0: the device's.
  double memory_limit_gib = 0;
  // `cuda_graphs: {enabled, max_graphs, max_tokens, max_gib}`: CUDA graphs of the denoising
  // steps on each CUDA worker (engine::EngineOptions::cuda_graphs); on by default.
  engine::GraphCacheOptions cuda_graphs;
  int64_t inject_oom_at_step = -1;
  // Testing: the first batch stops for inject_hang_s before this step, deaf to cancellation.
  int64_t inject_hang_at_step = -1;
  double inject_hang_s = 0;
  // Testing: from this step on, batches fail as after a sticky CUDA error.
  int64_t inject_device_error_at_step =
      -1;  // testing: each worker's first batch runs out of memory
};

// gRPC transport security. Plaintext is allowed on a loopback `listen` address, or anywhere
// when asked for (`tls: {plaintext: true}`, e.g. behind a TLS-terminating proxy).
struct TlsConfig {
  bool plaintext = false;
  std::string cert, key;  // PEM files: the server's certificate chain and private key
  std::string client_ca;  // PEM: when set, clients must present a certificate it signed (mTLS)
  bool enabled() const { return !cert.empty(); }
};

// API keys (auth.h): off when neither is set; then every caller is trusted.
struct AuthConfig {
  std::string api_keys_file;  // reloaded on SIGHUP
  std::string api_keys_env;   // the GRAT_API_KEYS text (used when no file is given)
  bool enabled() const { return !api_keys_file.empty() || !api_keys_env.empty(); }
};

struct ServerConfig {
  std::string listen = "localhost:50051";
  std::string metrics_listen = "localhost:9464";  // empty: no /metrics
  double drain_timeout_s = 30;
  std::string default_model;  // empty: the first model
  std::string log_level = "info";
  int64_t chunk_bytes = 1 << 20;  // result chunk size, well under gRPC's 4 MiB
  int64_t max_receive_bytes = 1 << 20;
  // Slow and silent clients: a stream whose client has not read one message for this long is
  // cancelled and its buffered result freed (0: never); all streams together buffer at most
  // max_buffered_bytes of results (beyond it new results fail with RESOURCE_EXHAUSTED).
  double write_timeout_s = 30;
  int64_t max_buffered_bytes = int64_t{1} << 30;
  double keepalive_time_s = 60, keepalive_timeout_s = 20;
  double max_connection_age_s = 0, max_connection_age_grace_s = 600;  // age 0: unlimited
  std::vector<ModelEntry> models;
  TlsConfig tls;
  AuthConfig auth;
  bool reflection = true;
  // A worker with no step progress for max(min_stall_s, stall_factor x its typical step time)
  // is stalled: its model turns NOT_SERVING, and so does liveness (grat.liveness).
  double watchdog_stall_factor = 20;
  double watchdog_min_stall_s = 300;  // gRPC server reflection (grpcurl); health is always served
};

// Whether this build accepts test-only settings (inject_oom_at_step >= 0): builds configured
// with GRAT_TEST_HOOKS (on by default with the tests; release builds turn it off).
bool test_hooks_built();

// Parses a YAML document (text) into a config; `base_dir` resolves relative bundle paths.
// Test-only settings are refused unless `allow_test_settings`.
ServerConfig parse_config(const std::string& yaml_text, const std::string& base_dir,
                          bool allow_test_settings = test_hooks_built());
ServerConfig load_config_file(const std::string& path);

// The no-argument config: the default image model "flux-shapes" (trained here, models/train)
// on the CPU, on localhost:50051. The bundle is $GRAT_SHAPES_BUNDLE, else the build's bundle,
// else bundles/flux-shapes next to the executable's repository or the working directory.
ServerConfig default_config(const std::string& executable_path);

// The tiny video bundle as a model entry (`grat_server --tiny-video` adds it to the
// no-argument config; flux-shapes stays the default model): "hunyuan-video-tiny" on the CPU, from
// $GRAT_TINY_VIDEO_BUNDLE, else the build's bundle, else bundles/hunyuan-video-tiny found as
// above.
ModelEntry tiny_video_model(const std::string& executable_path);

// GRAT_LISTEN, GRAT_METRICS_LISTEN, GRAT_LOG_LEVEL and GRAT_MODEL_<NAME>_PATH (NAME: the model
// name upper-cased, every other character than A-Z0-9 as '_') replace the matching values.
// `getenv` is injectable for tests.
void apply_env_overrides(ServerConfig& config, const char* (*getenv_fn)(const char*) = nullptr);

// The environment variable that overrides a model's bundle path.
std::string model_path_env(const std::string& model_name);

}  // namespace grat::server
