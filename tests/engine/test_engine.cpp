// Engine on the tiny bundle (CPU): determinism, batching, cancellation, deadlines, injected
// out-of-memory, tokenizer errors, validation, outputs (also decoded by Pillow afterwards).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "grat/engine/engine.h"
#include "png_decode.h"

namespace grat::engine {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string bundle_dir() {
  const char* b = std::getenv("GRAT_TINY_BUNDLE");
  return b == nullptr ? std::string("bundles/flux-tiny") : std::string(b);
}

using test_util::decode_png;

int max_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  if (a.size() != b.size() || a.empty()) return 256;
  int m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(int(a[i]) - int(b[i])));
  return m;
}

Request request(const std::string& prompt, uint64_t seed, int64_t w = 128, int64_t h = 96) {
  Request r;
  r.prompt = prompt;
  r.width = w;
  r.height = h;
  r.seed = seed;
  return r;
}

// Counts progress; cancels after `cancel_after` steps (0: never).
class Recorder : public JobObserver {
 public:
  explicit Recorder(int64_t cancel_after = 0) : cancel_after_(cancel_after) {}
  void on_progress(int64_t step, int64_t total, const std::string& preview) override {
    steps.push_back(step);
    last_total = total;
    if (!preview.empty()) ++previews;
    if (cancel_after_ > 0 && step >= cancel_after_) stop = true;
  }
  bool cancelled() const override { return stop.load(); }
  std::chrono::steady_clock::time_point deadline() const override { return deadline_; }
  std::vector<int64_t> steps;
  int64_t last_total = 0, previews = 0;
  std::atomic<bool> stop{false};
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();

 private:
  int64_t cancel_after_;
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EngineOptions o;
    o.bundle = bundle_dir();
    engine_ = Engine::load(o).release();
  }
  static void TearDownTestSuite() { delete engine_; }
  static Result one(const Request& r, JobObserver* obs = nullptr) {
    return engine_->generate({Job{r, obs}})[0];
  }
  static Engine* engine_;
};
Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, SameSeedSameImageOtherSeedOtherImage) {
  const Result a = one(request("a red fox in the snow", 7));
  const Result b = one(request("a red fox in the snow", 7));
  const Result c = one(request("a red fox in the snow", 8));
  ASSERT_TRUE(a.error.ok()) << a.error.message;
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_NE(a.bytes, c.bytes);
  int w = 0, h = 0;
  EXPECT_FALSE(decode_png(a.bytes, &w, &h).empty());
  EXPECT_EQ(w, 128);
  EXPECT_EQ(h, 96);
  EXPECT_EQ(a.mime, "image/png");
  EXPECT_EQ(a.seed, 7u);
  EXPECT_EQ(a.steps, engine_->manifest().defaults.steps);
  EXPECT_GT(a.timings.denoise_s, 0);
}

TEST_F(EngineTest, BatchOfThreeEqualsThreeSingles) {
  std::vector<Job> jobs;
  std::vector<Request> reqs = {request("a lighthouse", 1), request("two cats", 2),
                               request("a bowl of soup", 3)};
  reqs[1].guidance = 5.0;
  for (const auto& r : reqs) jobs.push_back(Job{r, nullptr});
  const auto batch = engine_->generate(jobs);
  ASSERT_EQ(batch.size(), 3u);
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(batch[i].error.ok()) << batch[i].error.message;
    const Result single = one(reqs[i]);
    EXPECT_LE(max_diff(decode_png(batch[i].bytes), decode_png(single.bytes)), 2) << i;
  }
  EXPECT_GT(max_diff(decode_png(batch[0].bytes), decode_png(batch[1].bytes)), 2);
}

TEST_F(EngineTest, BatchEncodesEachJobInItsOwnFormat) {
  // The images of a batch are encoded in parallel: each result must be its own job's image
  // in its own format.
  Request a = request("a red kite", 31), b = request("a blue kite", 32),
          c = request("a green kite", 33);
  b.format = OutputFormat::kWebp;
  const auto res = engine_->generate({Job{a, nullptr}, Job{b, nullptr}, Job{c, nullptr}});
  ASSERT_EQ(res.size(), 3u);
  for (const auto& r : res) ASSERT_TRUE(r.error.ok()) << r.error.message;
  EXPECT_EQ(res[0].mime, "image/png");
  EXPECT_EQ(res[1].mime, "image/webp");
  EXPECT_EQ(res[2].mime, "image/png");
  EXPECT_EQ(res[1].bytes.substr(0, 4), "RIFF");
  EXPECT_EQ(res[1].bytes.substr(8, 4), "WEBP");
  EXPECT_LE(max_diff(decode_png(res[0].bytes), decode_png(one(a).bytes)), 2);
  EXPECT_LE(max_diff(decode_png(res[2].bytes), decode_png(one(c).bytes)), 2);
  EXPECT_GT(max_diff(decode_png(res[0].bytes), decode_png(res[2].bytes)), 2);
  EXPECT_GT(res[1].timings.encode_s, 0);
}

TEST_F(EngineTest, CancelStopsWithinOneStepAndOthersFinish) {
  Request r = request("a castle", 5);
  r.steps = 6;
  Recorder cancel_me(2), other;
  const auto res = engine_->generate({Job{r, &cancel_me}, Job{request("x", 9), &other}});
  EXPECT_EQ(res[0].error.code, ErrorCode::kCancelled);
  EXPECT_EQ(cancel_me.steps, (std::vector<int64_t>{1, 2}));  // nothing after the cancel
  EXPECT_TRUE(res[0].bytes.empty());
  // It keeps the timings of what it ran: two steps, no decode.
  EXPECT_GT(res[0].timings.first_step_s, 0);
  EXPECT_GT(res[0].timings.denoise_s, res[0].timings.first_step_s);
  EXPECT_EQ(res[0].timings.decode_s, 0);
  EXPECT_FALSE(res[0].attention.empty());
  // The batch mixed step counts: the second job is refused, not silently changed.
  EXPECT_EQ(res[1].error.code, ErrorCode::kInvalidArgument);

  Request a = request("a castle", 5), b = request("a moat", 6);
  Recorder c2(1), keep;
  const auto two = engine_->generate({Job{a, &c2}, Job{b, &keep}});
  EXPECT_EQ(two[0].error.code, ErrorCode::kCancelled);
  ASSERT_TRUE(two[1].error.ok()) << two[1].error.message;
  EXPECT_LE(max_diff(decode_png(two[1].bytes), decode_png(one(b).bytes)), 2);
  EXPECT_EQ(keep.last_total, engine_->manifest().defaults.steps);
}

TEST_F(EngineTest, DeadlineStopsTheJob) {
  Recorder obs;
  obs.deadline_ = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const Result r = one(request("late", 1), &obs);
  EXPECT_EQ(r.error.code, ErrorCode::kDeadlineExceeded);
  EXPECT_TRUE(obs.steps.empty());
}

TEST_F(EngineTest, InjectedOutOfMemoryLeavesTheEngineUsable) {
  const Request r = request("a tree", 11);
  const Result before = one(r);
  engine_->inject_oom_at_step(1);
  const Result oom = one(r);
  EXPECT_EQ(oom.error.code, ErrorCode::kOutOfMemory);
  EXPECT_THAT(oom.error.message, HasSubstr("out of device memory"));
  const Result after = one(r);
  ASSERT_TRUE(after.error.ok()) << after.error.message;
  EXPECT_EQ(after.bytes, before.bytes);
}

TEST_F(EngineTest, TokenizerErrorFailsOnlyThatJob) {
  const auto res = engine_->generate({Job{request(std::string("bad \xff\xfe utf8"), 1), nullptr},
                                      Job{request("fine", 2), nullptr}});
  EXPECT_EQ(res[0].error.code, ErrorCode::kTokenizer);
  EXPECT_TRUE(res[1].error.ok()) << res[1].error.message;
}

TEST_F(EngineTest, ValidationNamesTheFieldAndLimit) {
  auto err = [](Request r) { return engine_->validate(r); };
  Request r = request("p", 1);
  EXPECT_TRUE(err(r).ok());
  r.width = 100;
  EXPECT_THAT(err(r).message, HasSubstr("width must be a multiple of 16"));
  r = request("p", 1, 128, 4096);
  EXPECT_THAT(err(r).message, HasSubstr("height must be in [64, 1024]"));
  r = request("p", 1);
  r.steps = 1000;
  EXPECT_THAT(err(r).message, HasSubstr("steps must be in [1, 100]"));
  r = request("p", 1);
  r.frames = 5;
  EXPECT_THAT(err(r).message, HasSubstr("frames must be 1"));
  r = request("p", 1);
  r.attention.group = {4};
  EXPECT_THAT(err(r).message, HasSubstr("attention.group must have 2 entries"));
  r = request("p", 1);
  r.format = OutputFormat::kMp4;
  EXPECT_EQ(err(r).code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(one(r).error.code, ErrorCode::kInvalidArgument);  // generate checks too
}

TEST_F(EngineTest, AttentionModesAndProgress) {
  Request full = request("a city at night", 4, 256, 256), b = full, fb = full;
  full.attention.mode = AttentionMode::kFull;
  b.attention.mode = AttentionMode::kB;
  b.attention.group = {4, 4};
  b.preview = true;
  fb = b;
  fb.attention.full_steps = 2;
  Recorder obs;
  const Result rf = one(full), rb = one(b, &obs), rfb = one(fb);
  ASSERT_TRUE(rf.error.ok() && rb.error.ok() && rfb.error.ok());
  EXPECT_EQ(rf.attention, "full");
  EXPECT_EQ(rb.attention, "B group=4x4 radius=1");
  EXPECT_EQ(rfb.attention, "B group=4x4 radius=1 full_steps=2");
  EXPECT_NE(rf.bytes, rb.bytes);
  EXPECT_NE(rb.bytes, rfb.bytes);
  EXPECT_EQ(obs.steps, (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(obs.previews, 4);
}

TEST_F(EngineTest, WritesPngAndWebpForIndependentDecoding) {
  Request png = request("a sailing boat", 21, 192, 128), webp = png;
  webp.format = OutputFormat::kWebp;
  const Result a = one(png), b = one(webp);
  ASSERT_TRUE(a.error.ok() && b.error.ok());
  EXPECT_EQ(b.mime, "image/webp");
  EXPECT_EQ(b.bytes.substr(8, 4), "WEBP");
  if (const char* dir = std::getenv("GRAT_ENGINE_OUT")) {
    std::filesystem::create_directories(dir);
    std::ofstream(std::string(dir) + "/engine.png", std::ios::binary) << a.bytes;
    std::ofstream(std::string(dir) + "/engine.webp", std::ios::binary) << b.bytes;
  }
}

TEST_F(EngineTest, PrepareResolvesOnceAndKeysOnResolvedValues) {
  const Manifest& m = engine_->manifest();
  Request implicit = request("a lighthouse", 1);  // steps 0, no guidance, auto, no group
  Request explicit_ = implicit;
  explicit_.steps = m.defaults.steps;
  explicit_.guidance = m.defaults.guidance;
  const Plan a = engine_->prepare(implicit), b = engine_->prepare(explicit_);
  ASSERT_TRUE(a.error.ok() && b.error.ok()) << a.error.message << b.error.message;
  EXPECT_EQ(a.request.steps, m.defaults.steps);
  EXPECT_EQ(*a.request.guidance, m.defaults.guidance);
  EXPECT_NE(a.request.attention.mode, AttentionMode::kAuto);  // auto picked for this shape
  EXPECT_EQ(a.request.attention.radius, m.grat.radius);
  EXPECT_EQ(a.request.attention.group.size(), 2u);
  EXPECT_EQ(a.batch_key, b.batch_key);  // `steps: 0` and the explicit default share a batch
  EXPECT_GT(a.prompt_tokens, 1);
  // ... and run as one batch.
  const auto both = engine_->generate({Job{implicit, nullptr}, Job{explicit_, nullptr}});
  EXPECT_TRUE(both[0].error.ok() && both[1].error.ok()) << both[1].error.message;
  Request other = implicit;
  other.steps = m.defaults.steps + 1;
  EXPECT_NE(engine_->prepare(other).batch_key, a.batch_key);
  // The prompt limit is counted with the engine's own tokenizer and names the field.
  std::string long_prompt;
  for (int i = 0; i < 80; ++i) long_prompt += "word ";
  Request too_long = request(long_prompt, 1);
  EXPECT_THAT(
      engine_->prepare(too_long).error.message,
      AllOf(HasSubstr("prompt is too long: "), HasSubstr(" tokens; max_prompt_tokens is 64")));
  too_long = request("short", 1);
  too_long.negative_prompt = long_prompt;
  EXPECT_THAT(engine_->prepare(too_long).error.message, HasSubstr("negative_prompt is too long"));
}

TEST(EngineLoad, BadBundleAndOptionsAreErrors) {
  EngineOptions o;
  o.bundle = "/nonexistent/bundle";
  EXPECT_THROW(Engine::load(o), EngineLoadError);
  o.bundle = bundle_dir();
  o.device = "tpu:0";
  EXPECT_THROW(Engine::load(o), EngineLoadError);
  o.device = "cpu";
  o.dtype = "int8";
  EXPECT_THROW(Engine::load(o), EngineLoadError);
  o.dtype = "auto";
  o.cuda_graphs.max_graphs = -1;
  EXPECT_THROW(Engine::load(o), EngineLoadError);
}

// CUDA graphs are for CUDA devices only: asked for on the CPU, every step runs eagerly, nothing
// is captured or logged, and the image is the graphs-off engine's.
TEST_F(EngineTest, CudaGraphsStayOffOnTheCpu) {
  EngineOptions o;
  o.bundle = bundle_dir();
  o.cuda_graphs.enabled = true;
  std::vector<std::string> logged;
  o.log = [&](const std::string& msg, const std::string&) { logged.push_back(msg); };
  auto graphs = Engine::load(o);
  Request r = request("a lighthouse at night", 5);
  r.steps = 3;
  const Result a = graphs->generate({Job{r, nullptr}})[0], b = one(r);
  ASSERT_TRUE(a.error.ok() && b.error.ok()) << a.error.message << b.error.message;
  EXPECT_EQ(a.bytes, b.bytes);
  const GraphCacheStats s = graphs->graph_stats();
  EXPECT_EQ(s.captures + s.hits + s.capture_failures, 0);
  EXPECT_TRUE(graphs->graphs().empty());
  EXPECT_TRUE(logged.empty());
}

}  // namespace
}  // namespace grat::engine

namespace grat::engine {
namespace {

// A copy of the tiny bundle whose model.yaml asks for true classifier-free guidance.
std::string cfg_bundle() {
  namespace fs = std::filesystem;
  const fs::path dst = fs::temp_directory_path() / ("grat_cfg_" + std::to_string(::getpid()));
  EXPECT_EQ(std::system(("rm -rf '" + dst.string() + "' && cp -r '" + bundle_dir() + "' '" +
                         dst.string() + "'")
                            .c_str()),
            0);
  std::ifstream in(dst / "model.yaml");
  std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto at = yaml.find("true_cfg: false");
  EXPECT_NE(at, std::string::npos);
  yaml.replace(at, 15, "true_cfg: true");
  std::ofstream(dst / "model.yaml") << yaml;
  return dst.string();
}

TEST(EngineTrueCfg, NegativePromptGuidesAndScaleOneIsThePlainPrediction) {
  EngineOptions plain_o, cfg_o;
  plain_o.bundle = bundle_dir();
  cfg_o.bundle = cfg_bundle();
  auto plain = Engine::load(plain_o), cfg = Engine::load(cfg_o);
  ASSERT_TRUE(cfg->manifest().defaults.true_cfg);
  Request r = request("a quiet harbour", 31);
  r.negative_prompt = "blurry, low quality";
  r.guidance = 1.0;  // v_neg + 1 * (v - v_neg) = v
  const Result a = plain->generate({Job{r, nullptr}})[0], b = cfg->generate({Job{r, nullptr}})[0];
  ASSERT_TRUE(a.error.ok() && b.error.ok()) << a.error.message << b.error.message;
  EXPECT_LE(max_diff(decode_png(a.bytes), decode_png(b.bytes)), 1);
  r.guidance = 4.0;
  const Result c = plain->generate({Job{r, nullptr}})[0], d = cfg->generate({Job{r, nullptr}})[0];
  EXPECT_GT(max_diff(decode_png(c.bytes), decode_png(d.bytes)), 8);
  r.negative_prompt = std::string("\xc3\x28 bad");
  EXPECT_EQ(cfg->generate({Job{r, nullptr}})[0].error.code, ErrorCode::kTokenizer);
  // Not std::filesystem::remove_all: libtorch.so exports a copy of it that crashes here.
  EXPECT_EQ(std::system(("rm -rf '" + cfg_o.bundle + "'").c_str()), 0);
}

}  // namespace
}  // namespace grat::engine
