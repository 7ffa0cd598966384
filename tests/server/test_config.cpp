// grat::server config: every key parsed, unknown keys and bad values refused naming the key,
// environment overrides.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdlib.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "grat/server/config.h"

namespace grat::server {
namespace {

using ::testing::HasSubstr;

std::string error_of(const std::string& yaml) {
  try {
    parse_config(yaml, "/base");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

const char* kMinimal = "models:\n  - name: tiny\n    bundle: bundles/flux-tiny\n";

TEST(ServerConfig, ParsesEveryKey) {
  const ServerConfig c = parse_config(R"(
listen: "0.0.0.0:6000"
metrics_listen: "127.0.0.1:6001"
drain_timeout_s: 12.5
default_model: b
log_level: debug
chunk_bytes: 65536
max_receive_bytes: 2097152
tls: {cert: tls/server.crt, key: /etc/k.pem, client_ca: ca.pem}
auth: {api_keys_file: keys.yaml}
reflection: false
write_timeout_s: 12
max_buffered_bytes: 2097152
keepalive_time_s: 30
keepalive_timeout_s: 5
max_connection_age_s: 3600
max_connection_age_grace_s: 900
watchdog: {stall_factor: 8, min_stall_s: 45}
models:
  - name: a
    bundle: /abs/a
  - name: b
    bundle: rel/b
    devices: [cuda:0, cuda:1]
    dtype: bf16
    max_queue: 3
    max_batch: 2
    max_batch_delay_ms: 5
    max_prompt_bytes: 100
)",
                                      "/base");
  EXPECT_EQ(c.listen, "0.0.0.0:6000");
  EXPECT_EQ(c.metrics_listen, "127.0.0.1:6001");
  EXPECT_DOUBLE_EQ(c.drain_timeout_s, 12.5);
  EXPECT_EQ(c.default_model, "b");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.chunk_bytes, 65536);
  EXPECT_EQ(c.max_receive_bytes, 2097152);
  EXPECT_EQ(c.tls.cert, "/base/tls/server.crt");  // relative to the config's folder
  EXPECT_EQ(c.tls.key, "/etc/k.pem");
  EXPECT_EQ(c.tls.client_ca, "/base/ca.pem");
  EXPECT_FALSE(c.tls.plaintext);
  EXPECT_EQ(c.auth.api_keys_file, "/base/keys.yaml");
  EXPECT_FALSE(c.reflection);
  EXPECT_DOUBLE_EQ(c.write_timeout_s, 12);
  EXPECT_EQ(c.max_buffered_bytes, 2097152);
  EXPECT_DOUBLE_EQ(c.keepalive_time_s, 30);
  EXPECT_DOUBLE_EQ(c.keepalive_timeout_s, 5);
  EXPECT_DOUBLE_EQ(c.max_connection_age_s, 3600);
  EXPECT_DOUBLE_EQ(c.max_connection_age_grace_s, 900);
  EXPECT_DOUBLE_EQ(c.watchdog_stall_factor, 8);
  EXPECT_DOUBLE_EQ(c.watchdog_min_stall_s, 45);
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].bundle, "/abs/a");
  EXPECT_EQ(c.models[0].devices, std::vector<std::string>{"cpu"});
  EXPECT_EQ(c.models[1].bundle, "/base/rel/b");
  EXPECT_EQ(c.models[1].devices, (std::vector<std::string>{"cuda:0", "cuda:1"}));
  EXPECT_EQ(c.models[1].dtype, "bf16");
  EXPECT_EQ(c.models[1].max_queue, 3);
  EXPECT_EQ(c.models[1].max_batch, 2);
  EXPECT_EQ(c.models[1].max_batch_delay_ms, 5);
  EXPECT_EQ(c.models[1].max_prompt_bytes, 100);
}

TEST(ServerConfig, DefaultsFromMinimal) {
  const ServerConfig c = parse_config(kMinimal, "/base");
  EXPECT_EQ(c.listen, "localhost:50051");
  EXPECT_EQ(c.metrics_listen, "localhost:9464");
  EXPECT_EQ(c.chunk_bytes, 1 << 20);
  EXPECT_EQ(c.models.at(0).max_queue, 64);
}

TEST(ServerConfig, RefusesNamingTheKey) {
  const std::map<std::string, std::string> cases = {
      {std::string(kMinimal) + "listne: x:1\n", "'listne': unknown key"},
      {std::string(kMinimal) + "listen: nope\n", "'listen'"},
      {std::string(kMinimal) + "drain_timeout_s: -1\n", "'drain_timeout_s'"},
      {std::string(kMinimal) + "drain_timeout_s: soon\n", "'drain_timeout_s': expected a number"},
      {std::string(kMinimal) + "chunk_bytes: 99999999\n", "'chunk_bytes'"},
      {std::string(kMinimal) + "log_level: loud\n", "'log_level'"},
      {std::string(kMinimal) + "default_model: other\n", "'default_model'"},
      {"models:\n  - name: a\n    bundle: x\n    max_queue: -2\n", "'models[0].max_queue'"},
      // 0 used to pass here and then abort the server at start.
      {"models:\n  - name: a\n    bundle: x\n    max_queue: 0\n", "'models[0].max_queue'"},
      {"models:\n  - name: a\n    bundle: x\n    max_batch: 0\n", "'models[0].max_batch'"},
      {"models:\n  - name: a\n    bundle: x\n    devices: [gpu]\n", "'models[0].devices[0]'"},
      {"models:\n  - name: a\n    bundle: x\n    dtype: int8\n", "'models[0].dtype'"},
      {"models:\n  - name: a\n    bundle: x\n    colour: red\n", "'models[0].colour': unknown"},
      {"models:\n  - name: a\n", "'models[0].bundle': missing"},
      {"models:\n  - bundle: x\n", "'models[0].name': missing"},
      {"models:\n  - {name: a, bundle: x}\n  - {name: a, bundle: y}\n", "duplicate"},
      {"models: []\n", "'models'"},
      {"listen: x:1\n", "'models': missing"},
      {"- 1\n- 2\n", "must be a mapping"},
      {"models: [\n", "not valid YAML"},
  };
  for (const auto& [yaml, want] : cases) {
    EXPECT_THAT(error_of(yaml), HasSubstr(want)) << yaml;
  }
}

TEST(ServerConfig, ExampleConfigParsesAndListsEveryKey) {
  const std::string path = std::string(GRAT_SOURCE_DIR) + "/deploy/config.example.yaml";
  const ServerConfig c = load_config_file(path);
  ASSERT_EQ(c.models.size(), 1u);
  EXPECT_EQ(c.models[0].name, "flux-shapes");
  EXPECT_THAT(c.models[0].bundle, HasSubstr("bundles/flux-shapes"));
  // The example shows the engine's defaults.
  const engine::GraphCacheOptions& g = c.models[0].cuda_graphs;
  const engine::GraphCacheOptions defaults;
  EXPECT_EQ(g.enabled, defaults.enabled);
  EXPECT_EQ(g.max_graphs, defaults.max_graphs);
  EXPECT_EQ(g.max_tokens, defaults.max_tokens);
  EXPECT_EQ(g.max_gib, defaults.max_gib);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  for (const char* key : {"listen:",
                          "metrics_listen:",
                          "drain_timeout_s:",
                          "default_model:",
                          "log_level:",
                          "chunk_bytes:",
                          "max_receive_bytes:",
                          "models:",
                          "name:",
                          "bundle:",
                          "devices:",
                          "dtype:",
                          "max_queue:",
                          "max_batch:",
                          "max_batch_delay_ms:",
                          "max_prompt_bytes:",
                          "memory_limit_gib:",
                          "cuda_graphs:",
                          "inject_oom_at_step:",
                          "GRAT_LISTEN",
                          "GRAT_METRICS_LISTEN",
                          "GRAT_LOG_LEVEL",
                          "GRAT_API_KEYS",
                          "tls:",
                          "auth:",
                          "reflection:",
                          "write_timeout_s:",
                          "max_buffered_bytes:",
                          "keepalive_time_s:",
                          "max_connection_age_s:",
                          "watchdog:",
                          "GRAT_MODEL_<NAME>_PATH"}) {
    EXPECT_THAT(text.str(), HasSubstr(key));
  }
}

extern std::map<std::string, std::string>* g_env;
const char* fake_getenv(const char* name);

TEST(ServerConfig, PlaintextOffLoopbackMustBeAskedFor) {
  const std::string models = "models:\n  - {name: m, bundle: /a}\n";
  EXPECT_TRUE(parse_config("listen: \"127.0.0.1:1\"\n" + models, "").tls.plaintext == false);
  EXPECT_NO_THROW(parse_config("listen: \"[::1]:1\"\n" + models, ""));
  EXPECT_NO_THROW(parse_config("listen: \"localhost:1\"\n" + models, ""));
  try {
    parse_config("listen: \"0.0.0.0:1\"\n" + models, "");
    ADD_FAILURE() << "plaintext on 0.0.0.0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'tls': serving on 0.0.0.0:1 (not loopback) needs tls.cert"));
  }
  EXPECT_TRUE(
      parse_config("listen: \"0.0.0.0:1\"\ntls: {plaintext: true}\n" + models, "").tls.plaintext);
  for (const auto& [yaml, needle] : std::vector<std::pair<std::string, std::string>>{
           {"tls: {cert: /c}\n", "'tls': cert and key go together"},
           {"tls: {client_ca: /ca}\n", "'tls.client_ca': needs cert and key"},
           {"tls: {plaintext: true, cert: /c, key: /k}\n", "'tls.plaintext': cannot go with"},
           {"tls: {plaintext: yes}\n", "'tls.plaintext': expected true or false"},
           {"tls: {certificate: /c}\n", "'tls.certificate': unknown key"},
           {"auth: {keys: /k}\n", "'auth.keys': unknown key"}}) {
    try {
      parse_config(yaml + models, "");
      ADD_FAILURE() << yaml;
    } catch (const ConfigError& e) {
      EXPECT_THAT(e.what(), HasSubstr(needle)) << yaml;
    }
  }
  // GRAT_LISTEN moving the server off loopback is checked too.
  std::map<std::string, std::string> env = {{"GRAT_LISTEN", "0.0.0.0:7"}};
  g_env = &env;
  ServerConfig c = parse_config(models, "");
  EXPECT_THROW(apply_env_overrides(c, fake_getenv), ConfigError);
  env = {{"GRAT_API_KEYS", "tenants: []"}};
  c = parse_config(models, "");
  apply_env_overrides(c, fake_getenv);
  EXPECT_EQ(c.auth.api_keys_env, "tenants: []");
  g_env = nullptr;
}

TEST(ServerConfig, TestOnlySettingsNeedATestBuild) {
  const std::string yaml = "models:\n  - {name: m, bundle: /a, inject_oom_at_step: 2}\n";
  EXPECT_EQ(parse_config(yaml, "", true).models[0].inject_oom_at_step, 2);
  try {
    parse_config(yaml, "", false);
    ADD_FAILURE() << "accepted a test-only setting";
  } catch (const ConfigError& e) {
    EXPECT_THAT(e.what(), HasSubstr("'models[0].inject_oom_at_step': is a test-only setting"));
  }
  for (const char* hook : {"inject_hang_at_step: 1", "inject_device_error_at_step: 0"}) {
    const std::string y = std::string("models:\n  - {name: m, bundle: /a, ") + hook + "}\n";
    EXPECT_THROW(parse_config(y, "", false), ConfigError) << hook;
    EXPECT_NO_THROW(parse_config(y, "", true)) << hook;
  }
  // Off (-1) is fine anywhere: the example config spells it out.
  EXPECT_EQ(parse_config("models:\n  - {name: m, bundle: /a, inject_oom_at_step: -1}\n", "", false)
                .models[0]
                .inject_oom_at_step,
            -1);
  EXPECT_TRUE(test_hooks_built());  // this test build, which the e2e OOM tests rely on
  const ServerConfig c =
      parse_config("models:\n  - {name: m, bundle: /a, memory_limit_gib: 40.5}\n", "", false);
  EXPECT_DOUBLE_EQ(c.models[0].memory_limit_gib, 40.5);
}

TEST(ServerConfig, CudaGraphs) {
  const ServerConfig plain = parse_config("models:\n  - {name: m, bundle: /a}\n", "");
  EXPECT_TRUE(plain.models[0].cuda_graphs.enabled);  // on unless turned off
  EXPECT_EQ(plain.models[0].cuda_graphs.max_tokens, 4096);
  const ServerConfig off =
      parse_config("models:\n  - {name: m, bundle: /a, cuda_graphs: {enabled: false}}\n", "");
  EXPECT_FALSE(off.models[0].cuda_graphs.enabled);
  const ServerConfig on = parse_config(
      "models:\n  - name: m\n    bundle: /a\n    devices: [cuda:0]\n    cuda_graphs: {enabled: "
      "true, max_graphs: 3, max_tokens: 4096, max_gib: 12.5}\n",
      "");
  const engine::GraphCacheOptions& g = on.models[0].cuda_graphs;
  EXPECT_TRUE(g.enabled);
  EXPECT_EQ(g.max_graphs, 3);
  EXPECT_EQ(g.max_tokens, 4096);
  EXPECT_DOUBLE_EQ(g.max_gib, 12.5);
  const ServerConfig partial =
      parse_config("models:\n  - {name: m, bundle: /a, cuda_graphs: {enabled: true}}\n", "");
  EXPECT_EQ(partial.models[0].cuda_graphs.max_graphs, engine::GraphCacheOptions{}.max_graphs);
  const auto error = [](const std::string& graphs) {
    try {
      parse_config("models:\n  - {name: m, bundle: /a, cuda_graphs: " + graphs + "}\n", "");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error("{enabled: yes}"),
              HasSubstr("'models[0].cuda_graphs.enabled': expected true or false"));
  EXPECT_THAT(error("{max_graphs: -1}"),
              HasSubstr("'models[0].cuda_graphs.max_graphs': must be in [0, 1024], got -1"));
  EXPECT_THAT(error("{max_gib: -2}"), HasSubstr("'models[0].cuda_graphs.max_gib': must be in"));
  EXPECT_THAT(error("{max_graph: 2}"), HasSubstr("'models[0].cuda_graphs.max_graph': unknown key"));
  EXPECT_THAT(error("true"), HasSubstr("'models[0].cuda_graphs': must be a mapping"));
}

std::map<std::string, std::string>* g_env = nullptr;
const char* fake_getenv(const char* name) {
  auto it = g_env->find(name);
  return it == g_env->end() ? nullptr : it->second.c_str();
}

TEST(ServerConfig, EnvironmentOverrides) {
  ServerConfig c = parse_config("models:\n  - {name: flux-tiny, bundle: /a}\n", "");
  std::map<std::string, std::string> env = {{"GRAT_LISTEN", "127.0.0.1:7000"},
                                            {"GRAT_METRICS_LISTEN", ""},
                                            {"GRAT_MODEL_FLUX_TINY_PATH", "/b"}};
  g_env = &env;
  apply_env_overrides(c, fake_getenv);
  EXPECT_EQ(c.listen, "127.0.0.1:7000");
  EXPECT_EQ(c.metrics_listen, "");
  EXPECT_EQ(c.models[0].bundle, "/b");
  EXPECT_EQ(model_path_env("flux-tiny"), "GRAT_MODEL_FLUX_TINY_PATH");
  env = {{"GRAT_LISTEN", "bad"}};
  EXPECT_THROW(apply_env_overrides(c, fake_getenv), ConfigError);
}

// One server serves an image model and a video model side by side (each its own queue and
// workers); the first is the default unless default_model names another.
TEST(ServerConfig, ImageAndVideoModelsSideBySide) {
  const ServerConfig c = parse_config(R"(
models:
  - {name: flux-tiny, bundle: bundles/flux-tiny}
  - name: hunyuan-video-tiny
    bundle: bundles/hunyuan-video-tiny
    devices: [cpu]
    max_batch: 1
    max_queue: 8
)",
                                      "/base");
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.default_model, "");  // the first model: flux-tiny
  EXPECT_EQ(c.models[1].name, "hunyuan-video-tiny");
  EXPECT_EQ(c.models[1].bundle, "/base/bundles/hunyuan-video-tiny");
  EXPECT_EQ(c.models[1].max_batch, 1);
  EXPECT_EQ(c.models[1].max_queue, 8);
  EXPECT_EQ(model_path_env("hunyuan-video-tiny"), "GRAT_MODEL_HUNYUAN_VIDEO_TINY_PATH");
}

// grat_server --tiny-video: the no-argument config plus the tiny video bundle.
TEST(ServerConfig, TinyVideoModelNextToTheDefault) {
  ::setenv("GRAT_SHAPES_BUNDLE", "/x/flux-shapes", 1);
  ::setenv("GRAT_TINY_VIDEO_BUNDLE", "/x/hunyuan-video-tiny", 1);
  ServerConfig c = default_config("");
  c.models.push_back(tiny_video_model(""));
  ::unsetenv("GRAT_SHAPES_BUNDLE");
  ::unsetenv("GRAT_TINY_VIDEO_BUNDLE");
  ASSERT_EQ(c.models.size(), 2u);
  EXPECT_EQ(c.models[0].name, "flux-shapes");
  EXPECT_EQ(c.models[0].bundle, "/x/flux-shapes");
  EXPECT_EQ(c.models[1].name, "hunyuan-video-tiny");
  EXPECT_EQ(c.models[1].bundle, "/x/hunyuan-video-tiny");
  EXPECT_EQ(c.models[1].devices, std::vector<std::string>{"cpu"});
  EXPECT_EQ(c.listen, "localhost:50051");
  std::map<std::string, std::string> env = {{"GRAT_MODEL_HUNYUAN_VIDEO_TINY_PATH", "/y/video"}};
  g_env = &env;
  apply_env_overrides(c, fake_getenv);  // names stay unique; the video bundle moves
  EXPECT_EQ(c.models[0].bundle, "/x/flux-shapes");
  EXPECT_EQ(c.models[1].bundle, "/y/video");
  // Without the environment: the build's bundle (or bundles/hunyuan-video-tiny found nearby).
  EXPECT_THAT(tiny_video_model("").bundle, HasSubstr("hunyuan-video-tiny"));
}

}  // namespace
}  // namespace grat::server
