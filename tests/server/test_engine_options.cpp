// grat::server::engine_options: a model's config reaches the engine it loads (the cuda_graphs
// settings included), and the engine's log lines become the server's JSON lines.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>

#include "engine_options.h"
#include "grat/engine/engine.h"
#include "grat/server/config.h"

namespace grat::server {
namespace {

using ::testing::HasSubstr;

const char* kGraphs = R"(
models:
  - name: flux-x
    bundle: /b
    devices: [cuda:1]
    dtype: fp16
    memory_limit_gib: 12.5
    cuda_graphs: {enabled: true, max_graphs: 3, max_tokens: 4096, max_gib: 1.5}
)";

TEST(EngineOptions, CarriesTheModelsSettings) {
  const ModelEntry e = parse_config(kGraphs, "").models.at(0);
  const engine::EngineOptions o = engine_options(e, "cuda:1");
  EXPECT_EQ(o.bundle, "/b");
  EXPECT_EQ(o.device, "cuda:1");
  EXPECT_EQ(o.dtype, "fp16");
  EXPECT_EQ(o.memory_limit_gib, 12.5);
  EXPECT_TRUE(o.cuda_graphs.enabled);
  EXPECT_EQ(o.cuda_graphs.max_graphs, 3);
  EXPECT_EQ(o.cuda_graphs.max_tokens, 4096);
  EXPECT_EQ(o.cuda_graphs.max_gib, 1.5);
  // Unset, the engine's defaults: graphs on, within max_tokens and max_gib.
  const ModelEntry plain = parse_config("models:\n  - {name: m, bundle: /a}\n", "").models.at(0);
  const engine::GraphCacheOptions defaults;
  EXPECT_TRUE(engine_options(plain, "cuda:0").cuda_graphs.enabled);
  EXPECT_EQ(engine_options(plain, "cuda:0").cuda_graphs.max_tokens, defaults.max_tokens);
  EXPECT_EQ(engine_options(plain, "cuda:0").cuda_graphs.max_gib, defaults.max_gib);
}

TEST(EngineOptions, EngineLogLinesNameModelDeviceAndKey) {
  const ModelEntry e = parse_config(kGraphs, "").models.at(0);
  const engine::EngineOptions o = engine_options(e, "cuda:1");
  ASSERT_TRUE(o.log);  // not the engine's stderr default
  std::ostringstream out;
  auto previous = spdlog::default_logger();
  auto logger =
      std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
  logger->set_pattern("{%v}");
  spdlog::set_default_logger(logger);
  o.log("cuda graph captured", "flux-x|cuda:1|64x64");
  spdlog::set_default_logger(previous);
  const std::string line = out.str();
  EXPECT_THAT(line, HasSubstr(R"("msg":"cuda graph captured")"));
  EXPECT_THAT(line, HasSubstr(R"("model":"flux-x")"));
  EXPECT_THAT(line, HasSubstr(R"("device":"cuda:1")"));
  EXPECT_THAT(line, HasSubstr(R"("graph_key":"flux-x|cuda:1|64x64")"));
}

// The setting arrives in a loaded engine (the tiny bundle on the CPU, where graphs never
// capture: the engine keeps the option and runs every step eagerly).
TEST(EngineOptions, ReachTheLoadedEngine) {
  const std::string bundle = GRAT_TINY_BUNDLE;
  if (bundle.empty() || !std::filesystem::exists(bundle + "/model.yaml")) {
    GTEST_SKIP() << "no tiny bundle at '" << bundle << "'";
  }
  const ModelEntry e =
      parse_config("models:\n  - name: tiny\n    bundle: " + bundle +
                       "\n    cuda_graphs: {enabled: true, max_graphs: 2, max_tokens: 0}\n",
                   "")
          .models.at(0);
  const auto engine = engine::Engine::load(engine_options(e, "cpu"));
  const engine::GraphCacheOptions& g = engine->options().cuda_graphs;
  EXPECT_TRUE(g.enabled);
  EXPECT_EQ(g.max_graphs, 2);
  EXPECT_EQ(g.max_tokens, 0);
  EXPECT_EQ(engine->graph_stats().graphs, 0);
}

}  // namespace
}  // namespace grat::server
