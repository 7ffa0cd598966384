// Engine on the tiny video bundle (CPU): MP4 output with the requested frames / size / fps
// (decoded by ffprobe afterwards), seeded noise per job, batching, cancellation within one
// step, padded text, previews, and validation naming the field and the limit.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "grat/engine/codec.h"
#include "grat/engine/engine.h"

namespace grat::engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string video_bundle() {
  const char* b = std::getenv("GRAT_TINY_VIDEO_BUNDLE");
  return b == nullptr ? std::string("bundles/hunyuan-video-tiny") : std::string(b);
}

Request clip(const std::string& prompt, uint64_t seed, int64_t frames = 9, int64_t w = 64,
             int64_t h = 48) {
  Request r;
  r.prompt = prompt;
  r.width = w;
  r.height = h;
  r.frames = frames;
  r.seed = seed;
  r.steps = 2;
  r.format = OutputFormat::kMp4;
  return r;
}

class Steps : public JobObserver {
 public:
  explicit Steps(int64_t cancel_after = 0) : cancel_after_(cancel_after) {}
  void on_progress(int64_t step, int64_t, const std::string& preview) override {
    steps.push_back(step);
    if (!preview.empty()) last_preview = preview;
    if (cancel_after_ > 0 && step >= cancel_after_) stop = true;
  }
  bool cancelled() const override { return stop.load(); }
  std::chrono::steady_clock::time_point deadline() const override {
    return std::chrono::steady_clock::time_point::max();
  }
  std::vector<int64_t> steps;
  std::string last_preview;
  std::atomic<bool> stop{false};

 private:
  int64_t cancel_after_;
};

void save(const std::string& name, const std::string& bytes) {
  if (const char* dir = std::getenv("GRAT_ENGINE_OUT")) {
    std::filesystem::create_directories(dir);
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary) << bytes;
  }
}

class EngineVideoTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.bundle = video_bundle();
    engine_ = Engine::load(o).release();
  }
  static void TearDownTestSuite() { delete engine_; }
  static Result one(const Request& r, JobObserver* obs = nullptr) {
    return engine_->generate({Job{r, obs}})[0];
  }
  static Engine* engine_;
};
Engine* EngineVideoTest::engine_ = nullptr;

TEST_F(EngineVideoTest, ClipIsAnMp4WithTheRequestedShape) {
  if (!video_encoding_available()) GTEST_SKIP() << "built without MP4 output";
  ASSERT_TRUE(engine_->manifest().is_video());
  Request r = clip("a red fox running through snow", 7, 9, 64, 48);
  r.fps = 12;
  r.preview = true;
  Steps obs;
  const Result a = one(r, &obs);
  ASSERT_TRUE(a.error.ok()) << a.error.message;
  EXPECT_EQ(a.mime, "video/mp4");
  EXPECT_EQ(a.bytes.substr(4, 4), "ftyp");
  EXPECT_EQ(a.frames, 9);
  EXPECT_EQ(a.width, 64);
  EXPECT_EQ(a.height, 48);
  EXPECT_EQ(obs.steps, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(obs.last_preview.substr(1, 3), "PNG");  // the middle frame's latent
  save("video_9f_64x48_12fps.mp4", a.bytes);
  Request longer = clip("a red fox running through snow", 7, 17, 32, 32);
  const Result b = one(longer);
  ASSERT_TRUE(b.error.ok()) << b.error.message;
  EXPECT_EQ(b.frames, 17);
  save("video_17f_32x32_8fps.mp4", b.bytes);
}

TEST_F(EngineVideoTest, SeedIsPerJobWhateverTheBatch) {
  if (!video_encoding_available()) GTEST_SKIP() << "built without MP4 output";
  const Request a = clip("waves on a beach", 11), b = clip("a city at night", 12);
  const auto batch = engine_->generate({Job{a, nullptr}, Job{b, nullptr}});
  ASSERT_TRUE(batch[0].error.ok() && batch[1].error.ok()) << batch[0].error.message;
  const Result single = one(b);
  ASSERT_TRUE(single.error.ok());
  // Decoded and compared by check_video_outputs.py (the encoder's bytes may differ).
  save("batch_item1.mp4", batch[1].bytes);
  save("single_item1.mp4", single.bytes);
  save("batch_item0.mp4", batch[0].bytes);
}

TEST_F(EngineVideoTest, CancelStopsWithinOneStep) {
  Request r = clip("a slow pan over mountains", 3);
  r.steps = 4;
  Steps obs(1);
  const Result res = one(r, &obs);
  EXPECT_EQ(res.error.code, ErrorCode::kCancelled);
  EXPECT_EQ(obs.steps, (std::vector<int64_t>{1}));
  EXPECT_TRUE(one(clip("after the cancel", 4)).error.ok());  // the engine serves on
}

TEST_F(EngineVideoTest, ValidationNamesTheFieldAndLimit) {
  const auto error = [](Request r) { return engine_->validate(r).message; };
  Request r = clip("x", 1);
  r.frames = 8;
  EXPECT_THAT(error(r), HasSubstr("frames must be 4k+1 in [1, 33] (or 0 for the model's "
                                  "default 9); got 8"));
  r.frames = 37;
  EXPECT_THAT(error(r), HasSubstr("frames must be 4k+1 in [1, 33]"));
  r.frames = -3;
  EXPECT_THAT(error(r), HasSubstr("frames must be 4k+1 in [1, 33]"));
  r.frames = 0;  // the model's default
  EXPECT_TRUE(engine_->validate(r).ok());
  EXPECT_EQ(engine_->prepare(r).request.frames, 9);
  r = clip("x", 1);
  r.fps = 61;
  EXPECT_THAT(error(r), HasSubstr("fps must be in [1, 60]"));
  r = clip("x", 1);
  r.format = OutputFormat::kPng;
  EXPECT_THAT(error(r), HasSubstr("format must be mp4"));
  r = clip("x", 1, 9, 100, 48);
  EXPECT_THAT(error(r), HasSubstr("width must be a multiple of 16"));
  r = clip("x", 1);
  r.attention.group = {4, 4};
  EXPECT_THAT(error(r), HasSubstr("attention.group must have 3 entries"));
  EXPECT_EQ(engine_->generate({Job{clip("x", 1, 8), nullptr}})[0].error.code,
            ErrorCode::kInvalidArgument);
}

TEST_F(EngineVideoTest, PrepareFillsVideoDefaultsAndCountsLlamaTokens) {
  Request r = clip("a quiet street in the rain", 1);
  r.steps = 0;
  const Plan p = engine_->prepare(r);
  ASSERT_TRUE(p.error.ok()) << p.error.message;
  EXPECT_EQ(p.request.fps, engine_->manifest().defaults.fps);
  EXPECT_EQ(p.request.steps, engine_->manifest().defaults.steps);
  EXPECT_EQ(p.request.attention.group.size(), 3u);
  EXPECT_GT(p.prompt_tokens, 3);
  Request explicit_fps = r;
  explicit_fps.fps = engine_->manifest().defaults.fps;
  EXPECT_EQ(engine_->prepare(explicit_fps).batch_key, p.batch_key);
  std::string long_prompt;
  for (int i = 0; i < 70; ++i) long_prompt += "rain ";
  r.prompt = long_prompt;
  EXPECT_THAT(
      engine_->prepare(r).error.message,
      AllOf(HasSubstr("prompt is too long: "), HasSubstr(" tokens; max_prompt_tokens is 64")));
}

// A copy of the tiny video bundle with a smaller frames x pixels limit.
std::string small_limit_bundle() {
  namespace fs = std::filesystem;
  const fs::path dst = fs::temp_directory_path() / ("grat_vlim_" + std::to_string(::getpid()));
  EXPECT_EQ(std::system(("rm -rf '" + dst.string() + "' && cp -r '" + video_bundle() + "' '" +
                         dst.string() + "'")
                            .c_str()),
            0);
  std::ifstream in(dst / "model.yaml");
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = yaml.find("max_video_pixels: ");
  EXPECT_NE(at, std::string::npos);
  yaml.replace(at, yaml.find('\n', at) - at, "max_video_pixels: 100000");
  std::ofstream(dst / "model.yaml") << yaml;
  return dst.string();
}

TEST(EngineVideoLimits, FramesTimesPixelsIsLimited) {
  EngineOptions o;
  o.bundle = small_limit_bundle();
  auto engine = Engine::load(o);
  EXPECT_THAT(engine->validate(clip("x", 1, 33, 64, 64)).message,
              HasSubstr("frames x width x height must be at most 100000 (max_video_pixels); got "
                        "33 x 64 x 64 = 135168"));
  EXPECT_TRUE(engine->validate(clip("x", 1, 17, 64, 64)).ok());
  // Not std::filesystem::remove_all: libtorch.so exports a copy of it that crashes here.
  EXPECT_EQ(std::system(("rm -rf '" + o.bundle + "'").c_str()), 0);
}

TEST(EngineVideoLimits, ImageModelRefusesVideoFields) {
  const char* b = std::getenv("GRAT_TINY_BUNDLE");
  EngineOptions o;
  o.bundle = b == nullptr ? std::string("bundles/flux-tiny") : std::string(b);
  auto engine = Engine::load(o);
  Request r = clip("x", 1, 9, 64, 64);
  EXPECT_THAT(engine->validate(r).message, HasSubstr("frames must be 1 (or 0) for image model"));
  r.frames = 1;
  r.fps = 24;
  EXPECT_THAT(engine->validate(r).message, HasSubstr("fps is for video models"));
}

}  // namespace
}  // namespace grat::engine

namespace grat::engine {
namespace {

// The tiny video bundle's files with a pretend memory table appended to model.yaml.
std::string bundle_with_memory_table() {
  const std::string dir = "/tmp/grat_engine_mem_" + std::to_string(::getpid());
  // cp, not std::filesystem::copy: LibTorch exports its own std::filesystem symbols and this
  // process may bind to them (it crashed here).
  EXPECT_EQ(
      std::system(("rm -rf '" + dir + "' && cp -r '" + video_bundle() + "' '" + dir + "'").c_str()),
      0);
  std::ofstream(dir + "/model.yaml", std::ios::app)
      << "memory: {measured_on: Pretend GPU, peak_gib: [[100, 1.0], [1000, 2.0]]}\n";
  return dir;
}

TEST(EngineVideoMemory, RequestsOverTheMemoryLimitAreRefusedUpFront) {
  const std::string dir = bundle_with_memory_table();
  EngineOptions o;
  o.bundle = dir;
  o.memory_limit_gib = 1.5;  // fits 550 tokens
  std::unique_ptr<Engine> e = Engine::load(o);
  EXPECT_DOUBLE_EQ(e->memory_budget_gib(), 1.5);
  // 128x128x9: 3 x 8 x 8 = 192 tokens (1.10 GiB); two fit (1.32), three do not (1.53).
  const Plan fits = e->prepare(clip("a fox", 1, 9, 128, 128));
  ASSERT_TRUE(fits.error.ok()) << fits.error.message;
  EXPECT_EQ(fits.max_batch, 2);
  // 256x256x17: 5 x 16 x 16 = 1280 tokens, about 2.31 GiB.
  const Plan big = e->prepare(clip("a fox", 1, 17, 256, 256));
  EXPECT_EQ(big.error.code, ErrorCode::kResourceExhausted);
  EXPECT_THAT(big.error.message,
              AllOf(HasSubstr("frames x width x height = 17 x 256 x 256 needs about 2.31 GiB"),
                    HasSubstr("measured on Pretend GPU"), HasSubstr("1.5 GiB (memory_limit_gib)")));
  // Without a limit (CPU) nothing is refused and batches are not capped.
  EngineOptions unlimited;
  unlimited.bundle = dir;
  std::unique_ptr<Engine> u = Engine::load(unlimited);
  EXPECT_EQ(u->memory_budget_gib(), 0);
  const Plan p = u->prepare(clip("a fox", 1, 17, 256, 256));
  EXPECT_TRUE(p.error.ok()) << p.error.message;
  EXPECT_EQ(p.max_batch, 0);
  o.memory_limit_gib = -1;
  EXPECT_THROW(Engine::load(o), EngineLoadError);
  EXPECT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
}

}  // namespace
}  // namespace grat::engine
