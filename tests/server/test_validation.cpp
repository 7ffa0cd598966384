// A request as the server and scheduler see it: the server converts the proto
// (to_engine_request: enums, format, byte limits, priority), the engine's plan checks every
// model limit (Engine::prepare, which the scheduler calls at submit). Each bad field gives
// INVALID_ARGUMENT naming the field and its limit; good requests map onto engine::Request.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grat/engine/engine.h"
#include "grat/engine/manifest.h"
#include "grat/server/validation.h"
#include "grat/v1/generation.pb.h"

namespace grat::server {
namespace {

using ::testing::HasSubstr;

ModelLimits tiny_video();

// An engine over a copy of a tiny bundle whose model.yaml lines `key: value` are replaced
// (one engine per distinct edit set, kept for the whole test binary).
const engine::Engine& engine_for(const std::string& bundle,
                                 const std::vector<std::pair<std::string, std::string>>& edits) {
  static std::map<std::string, std::unique_ptr<engine::Engine>> cache;
  std::string id = bundle;
  for (const auto& [k, v] : edits) id += "|" + k + "=" + v;
  auto& slot = cache[id];
  if (slot) return *slot;
  std::string folder = bundle;
  if (!edits.empty()) {
    folder = "/tmp/grat_srv_val_" + std::to_string(::getpid()) + "_" + std::to_string(cache.size());
    EXPECT_EQ(
        std::system(("rm -rf '" + folder + "' && cp -r '" + bundle + "' '" + folder + "'").c_str()),
        0);
    std::ifstream in(folder + "/model.yaml");
    std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (const auto& [k, v] : edits) {
      const auto at = yaml.find(" " + k + ": ");
      EXPECT_NE(at, std::string::npos) << k;
      const auto end = yaml.find('\n', at);
      yaml.replace(at, end - at, " " + k + ": " + v);
    }
    std::ofstream(folder + "/model.yaml") << yaml;
  }
  engine::EngineOptions o;
  o.bundle = folder;
  slot = engine::Engine::load(o);
  return *slot;
}

// The server's conversion, then the engine's plan (the scheduler maps a refused plan to
// INVALID_ARGUMENT with its message).
grpc::Status check(const v1::GenerateRequest& in, const ModelLimits& m, const engine::Engine& e,
                   engine::Request* out) {
  engine::Request r;
  if (grpc::Status s = to_engine_request(in, m, 1, &r); !s.ok()) return s;
  const engine::Plan plan = e.prepare(r);
  if (!plan.error.ok()) return {grpc::StatusCode::INVALID_ARGUMENT, plan.error.message};
  *out = plan.request;
  return grpc::Status::OK;
}

const engine::Engine& image_engine(
    const std::vector<std::pair<std::string, std::string>>& edits = {}) {
  return engine_for(GRAT_TINY_BUNDLE, edits);
}

// The tiny video bundle with limits.max_video_pixels = 17 x 128 x 128 (tiny_video()).
const engine::Engine& video_engine() {
  return engine_for(GRAT_TINY_VIDEO_BUNDLE, {{"max_video_pixels", "278528"}});
}

ModelLimits tiny() {
  ModelLimits m;
  m.manifest.name = "flux-tiny";
  m.manifest.kind = "image";
  m.manifest.vae_scale = 8;
  m.manifest.patch = 2;
  m.manifest.defaults.steps = 4;
  auto& L = m.manifest.limits;
  L.min_side = 64;
  L.max_side = 1024;
  L.side_multiple = 16;
  L.max_pixels = 1 << 20;
  L.min_steps = 1;
  L.max_steps = 100;
  L.max_frames = 1;
  L.max_prompt_tokens = 64;
  m.max_prompt_bytes = 300;
  return m;
}

v1::GenerateRequest good() {
  v1::GenerateRequest r;
  r.set_prompt("a red fox");
  r.set_width(128);
  r.set_height(64);
  return r;
}

TEST(ServerValidation, MapsAGoodRequest) {
  v1::GenerateRequest in = good();
  in.set_steps(7);
  in.set_guidance(2.5f);
  in.mutable_attention()->set_mode(v1::ATTENTION_MODE_B);
  in.mutable_attention()->add_group(2);
  in.mutable_attention()->add_group(4);
  in.mutable_attention()->set_radius(2);
  in.mutable_attention()->set_full_steps(1);
  in.set_format(v1::OUTPUT_FORMAT_WEBP);
  engine::Request out;
  ASSERT_TRUE(to_engine_request(in, tiny(), 99, &out).ok());
  EXPECT_EQ(out.width, 128);
  EXPECT_EQ(out.height, 64);
  EXPECT_EQ(out.frames, 1);
  EXPECT_EQ(out.steps, 7);
  EXPECT_FLOAT_EQ(*out.guidance, 2.5f);
  EXPECT_EQ(out.seed, 99u);  // absent: the server's pick
  EXPECT_EQ(out.attention.mode, engine::AttentionMode::kB);
  EXPECT_EQ(out.attention.group, (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(out.attention.radius, 2);
  EXPECT_EQ(out.attention.full_steps, 1);
  EXPECT_EQ(out.format, engine::OutputFormat::kWebp);
  in.set_seed(0);
  ASSERT_TRUE(to_engine_request(in, tiny(), 99, &out).ok());
  EXPECT_EQ(out.seed, 0u);  // given (even 0) wins
}

TEST(ServerValidation, EachBadFieldNamesFieldAndLimit) {
  struct Case {
    std::function<void(v1::GenerateRequest&)> edit;
    std::string want;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_width(100); }, "width must be a multiple of 16; got 100"},
      {[](auto& r) { r.set_height(-16); }, "height must be in [64, 1024]; got -16"},
      {[](auto& r) { r.set_width(2048); }, "width must be in [64, 1024]"},
      {[](auto& r) { r.set_width(0); }, "width must be in [64, 1024]; got 0"},
      {[](auto& r) { r.set_width(1024), r.set_height(1040); }, "height must be in"},
      {[](auto& r) { r.set_frames(5); }, "frames must be 1"},
      {[](auto& r) { r.set_frames(-1); }, "frames must be 1"},
      {[](auto& r) { r.set_steps(101); }, "steps must be in [1, 100]; got 101"},
      {[](auto& r) { r.set_steps(-3); }, "steps must be in [1, 100]"},
      {[](auto& r) { r.set_guidance(-1.f); }, "guidance must be"},
      {[](auto& r) { r.set_guidance(std::nanf("")); }, "guidance must be"},
      {[](auto& r) { r.set_prompt(std::string(301, 'a')); }, "prompt is too long: 301 bytes"},
      {[](auto& r) { r.set_negative_prompt(std::string(400, 'b')); }, "negative_prompt"},
      {[](auto& r) { r.mutable_attention()->set_mode(static_cast<v1::AttentionMode>(9)); },
       "attention.mode must be one of AUTO, FULL, B, X; got 9"},
      {[](auto& r) { r.mutable_attention()->add_group(4); }, "attention.group must have 2"},
      {[](auto& r) {
         r.mutable_attention()->add_group(0);
         r.mutable_attention()->add_group(4);
       },
       "attention.group[0] must be in [1, 4]"},
      {[](auto& r) {
         r.mutable_attention()->add_group(2);
         r.mutable_attention()->add_group(9);
       },
       "attention.group[1] must be in [1, 8]"},
      {[](auto& r) { r.mutable_attention()->set_radius(-1); }, "attention.radius must be in"},
      {[](auto& r) { r.mutable_attention()->set_radius(65); }, "attention.radius must be in"},
      {[](auto& r) { r.mutable_attention()->set_full_steps(5); },
       "attention.full_steps must be in [0, 4]"},
      {[](auto& r) { r.set_format(v1::OUTPUT_FORMAT_MP4); }, "format MP4 is for video"},
      {[](auto& r) { r.set_format(static_cast<v1::OutputFormat>(42)); }, "format must be one of"},
      {[](auto& r) { r.set_priority(101); }, "priority must be in [-100, 100]"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::GenerateRequest r = good();
    cases[i].edit(r);
    engine::Request out;
    const grpc::Status s = check(r, tiny(), image_engine(), &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "case " << i;
    EXPECT_THAT(s.error_message(), HasSubstr(cases[i].want)) << "case " << i;
  }
}

TEST(ServerValidation, TooManyPixels) {
  const ModelLimits m = tiny();
  const engine::Engine& e = image_engine({{"max_pixels", "262144"}});
  v1::GenerateRequest r = good();
  r.set_width(1024);
  r.set_height(512);
  engine::Request out;
  const grpc::Status s = check(r, m, e, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("width x height must be at most 262144 pixels (max_pixels); got 524288"));
  r.set_width(512);
  EXPECT_TRUE(check(r, m, e, &out).ok());
}

TEST(ServerValidation, VideoFramesAre4kPlus1) {
  const ModelLimits m = tiny_video();
  const engine::Engine& e =
      engine_for(GRAT_TINY_VIDEO_BUNDLE, {{"max_frames", "129"}, {"max_video_pixels", "19021824"}});
  v1::GenerateRequest r = good();
  r.mutable_attention()->add_group(1);
  r.mutable_attention()->add_group(2);
  r.mutable_attention()->add_group(2);
  engine::Request out;
  for (int f : {1, 5, 129}) {
    r.set_frames(f);
    EXPECT_TRUE(check(r, m, e, &out).ok()) << f;
    EXPECT_EQ(out.frames, f);
    EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  }
  for (int f : {2, 4, 6, 133, -3}) {
    r.set_frames(f);
    const grpc::Status s = check(r, m, e, &out);
    EXPECT_THAT(s.error_message(), HasSubstr("frames must be 4k+1 in [1, 129]")) << f;
  }
}

// Limits of the tiny video bundle (bundles/hunyuan-video-tiny/model.yaml).
ModelLimits tiny_video() {
  ModelLimits m;
  m.manifest.name = "hunyuan-video-tiny";
  m.manifest.kind = "video";
  m.manifest.architecture = "hunyuan";
  m.manifest.vae_scale = 8;
  m.manifest.vae_temporal_scale = 4;
  m.manifest.patch = 2;
  m.manifest.defaults.steps = 4;
  m.manifest.defaults.frames = 9;
  m.manifest.defaults.fps = 8;
  auto& L = m.manifest.limits;
  L.min_side = 32;
  L.max_side = 512;
  L.side_multiple = 16;
  L.max_pixels = 147456;
  L.min_steps = 1;
  L.max_steps = 100;
  L.max_frames = 33;
  L.max_prompt_tokens = 64;
  L.max_video_pixels = 17 * 128 * 128;
  m.max_prompt_bytes = 300;
  return m;
}

v1::GenerateRequest good_video() {
  v1::GenerateRequest r;
  r.set_prompt("a red fox running");
  r.set_width(96);
  r.set_height(64);
  r.set_frames(17);
  return r;
}

TEST(ServerValidation, MapsAVideoRequest) {
  v1::GenerateRequest in = good_video();
  in.set_fps(24);
  in.mutable_attention()->set_mode(v1::ATTENTION_MODE_B);
  for (int g : {5, 2, 2}) in.mutable_attention()->add_group(g);  // 17 frames: 5 latent frames
  engine::Request out;
  ASSERT_TRUE(check(in, tiny_video(), video_engine(), &out).ok());
  EXPECT_EQ(out.frames, 17);
  EXPECT_EQ(out.fps, 24);
  EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  EXPECT_EQ(out.attention.group, (std::vector<int64_t>{5, 2, 2}));
  // 0: the model's default frames and fps (the engine's plan fills them in).
  in.set_frames(0);
  in.set_fps(0);
  in.clear_attention();
  in.set_format(v1::OUTPUT_FORMAT_MP4);
  ASSERT_TRUE(to_engine_request(in, tiny_video(), 3, &out).ok());
  EXPECT_EQ(out.frames, 0);  // the conversion passes 0 on
  ASSERT_TRUE(check(in, tiny_video(), video_engine(), &out).ok());
  EXPECT_EQ(out.frames, 9);
  EXPECT_EQ(out.fps, 8);
  EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  for (int fps : {1, 60}) {
    in.set_fps(fps);
    ASSERT_TRUE(check(in, tiny_video(), video_engine(), &out).ok()) << fps;
    EXPECT_EQ(out.fps, fps);
  }
  // frames x width x height exactly at max_video_pixels is allowed.
  in.set_frames(17);
  in.set_width(128);
  in.set_height(128);
  EXPECT_TRUE(check(in, tiny_video(), video_engine(), &out).ok());
}

TEST(ServerValidation, EachBadVideoFieldNamesFieldAndLimit) {
  struct Case {
    std::function<void(v1::GenerateRequest&)> edit;
    std::string want;
  };
  const std::vector<Case> cases = {
      {[](auto& r) { r.set_frames(2); },
       "frames must be 4k+1 in [1, 33] (or 0 for the model's default 9); got 2"},
      {[](auto& r) { r.set_frames(8); }, "frames must be 4k+1 in [1, 33]"},
      {[](auto& r) { r.set_frames(37); }, "frames must be 4k+1 in [1, 33]"},
      {[](auto& r) { r.set_frames(-3); }, "frames must be 4k+1 in [1, 33]"},
      {[](auto& r) { r.set_frames(33), r.set_width(128), r.set_height(128); },
       "frames x width x height must be at most 278528 (max_video_pixels); got 33 x 128 x 128 "
       "= 540672"},
      {[](auto& r) { r.set_width(400), r.set_height(400); }, "width x height must be at most"},
      {[](auto& r) { r.set_fps(61); }, "fps must be in [1, 60] (or 0 for the model's default 8)"},
      {[](auto& r) { r.set_fps(-1); }, "fps must be in [1, 60]"},
      {[](auto& r) { r.set_format(v1::OUTPUT_FORMAT_PNG); },
       "format must be MP4 (or unspecified) for video model hunyuan-video-tiny; got PNG"},
      {[](auto& r) { r.set_format(v1::OUTPUT_FORMAT_WEBP); }, "format must be MP4"},
      {[](auto& r) { r.mutable_attention()->add_group(4), r.mutable_attention()->add_group(4); },
       "attention.group must have 3 entries"},
      {[](auto& r) {
         for (int g : {6, 1, 1}) r.mutable_attention()->add_group(g);
       },
       "attention.group[0] must be in [1, 5]"},
      {[](auto& r) {
         for (int g : {1, 5, 1}) r.mutable_attention()->add_group(g);
       },
       "attention.group[1] must be in [1, 4]"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    v1::GenerateRequest r = good_video();
    cases[i].edit(r);
    engine::Request out;
    const grpc::Status s = check(r, tiny_video(), video_engine(), &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "case " << i;
    EXPECT_THAT(s.error_message(), HasSubstr(cases[i].want)) << "case " << i;
  }
}

TEST(ServerValidation, ImageModelsRefuseVideoFields) {
  engine::Request out;
  v1::GenerateRequest r = good();
  r.set_fps(8);
  grpc::Status s = check(r, tiny(), image_engine(), &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(
      s.error_message(),
      HasSubstr("fps must be 0 for image model flux-tiny (fps is for video models); got 8"));
  r = good();
  r.set_frames(9);
  s = check(r, tiny(), image_engine(), &out);
  EXPECT_THAT(s.error_message(), HasSubstr("frames must be 1 (or 0) for image model flux-tiny"));
  r.set_frames(1);
  ASSERT_TRUE(check(r, tiny(), image_engine(), &out).ok());
  EXPECT_EQ(out.frames, 1);
  EXPECT_EQ(out.fps, 0);
}

// Prompt tokens are counted by the model's own tokenizer in the engine's plan: T5 (with </s>)
// for the image bundle, the Llama tokenizer for the video bundle (the prompt's own tokens: the
// template the engine wraps it in is not the client's to spend).
TEST(ServerValidation, PromptTokensCountedByTheModelsOwnTokenizer) {
  for (const bool video : {false, true}) {
    const ModelLimits m = video ? tiny_video() : tiny();
    const engine::Engine& e = video ? video_engine() : image_engine();
    v1::GenerateRequest r = video ? good_video() : good();
    engine::Request out;
    r.set_prompt("a red fox");
    ASSERT_TRUE(check(r, m, e, &out).ok());
    engine::Request converted;
    ASSERT_TRUE(to_engine_request(r, m, 1, &converted).ok());
    const int64_t one = e.prepare(converted).prompt_tokens;
    EXPECT_GT(one, 0);
    if (video) {
      EXPECT_LT(one, 10);  // no template, no <|begin_of_text|>
    }
    std::string many;
    while (static_cast<int64_t>(many.size()) < 280) many += "a red fox ";
    r.set_prompt(many);  // within max_prompt_bytes (300), over 64 tokens
    grpc::Status s = check(r, m, e, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("prompt is too long: "));
    EXPECT_THAT(s.error_message(), HasSubstr(" tokens; max_prompt_tokens is 64"));
    r.set_prompt("ok");
    r.set_negative_prompt("bad \xff");
    s = check(r, m, e, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("negative_prompt cannot be tokenized"));
  }
}

}  // namespace
}  // namespace grat::server
