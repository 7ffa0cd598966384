// grat::server request validation: each bad field gives INVALID_ARGUMENT naming the field
// and its limit; good requests map onto engine::Request.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "grat/engine/manifest.h"
#include "grat/server/validation.h"
#include "grat/v1/generation.pb.h"

namespace grat::server {
namespace {

using ::testing::HasSubstr;

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
    const grpc::Status s = to_engine_request(r, tiny(), 1, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "case " << i;
    EXPECT_THAT(s.error_message(), HasSubstr(cases[i].want)) << "case " << i;
  }
}

TEST(ServerValidation, TooManyPixels) {
  ModelLimits m = tiny();
  m.manifest.limits.max_pixels = 512 * 512;
  v1::GenerateRequest r = good();
  r.set_width(1024);
  r.set_height(512);
  engine::Request out;
  const grpc::Status s = to_engine_request(r, m, 1, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr("width x height must be at most 262144 pixels (max_pixels); got 524288"));
  r.set_width(512);
  EXPECT_TRUE(to_engine_request(r, m, 1, &out).ok());
}

TEST(ServerValidation, VideoFramesAre4kPlus1) {
  ModelLimits m = tiny();
  m.manifest.kind = "video";
  m.manifest.limits.max_frames = 129;
  v1::GenerateRequest r = good();
  r.mutable_attention()->add_group(1);
  r.mutable_attention()->add_group(2);
  r.mutable_attention()->add_group(2);
  engine::Request out;
  for (int f : {1, 5, 129}) {
    r.set_frames(f);
    EXPECT_TRUE(to_engine_request(r, m, 1, &out).ok()) << f;
    EXPECT_EQ(out.frames, f);
    EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  }
  for (int f : {2, 4, 6, 133, -3}) {
    r.set_frames(f);
    const grpc::Status s = to_engine_request(r, m, 1, &out);
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
  ASSERT_TRUE(to_engine_request(in, tiny_video(), 3, &out).ok());
  EXPECT_EQ(out.frames, 17);
  EXPECT_EQ(out.fps, 24);
  EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  EXPECT_EQ(out.attention.group, (std::vector<int64_t>{5, 2, 2}));
  // 0: the model's default frames; fps 0 goes to the engine as "the bundle's default".
  in.set_frames(0);
  in.set_fps(0);
  in.clear_attention();
  in.set_format(v1::OUTPUT_FORMAT_MP4);
  ASSERT_TRUE(to_engine_request(in, tiny_video(), 3, &out).ok());
  EXPECT_EQ(out.frames, 9);
  EXPECT_EQ(out.fps, 0);
  EXPECT_EQ(out.format, engine::OutputFormat::kMp4);
  for (int fps : {1, 60}) {
    in.set_fps(fps);
    ASSERT_TRUE(to_engine_request(in, tiny_video(), 3, &out).ok()) << fps;
    EXPECT_EQ(out.fps, fps);
  }
  // frames x width x height exactly at max_video_pixels is allowed.
  in.set_frames(17);
  in.set_width(128);
  in.set_height(128);
  EXPECT_TRUE(to_engine_request(in, tiny_video(), 3, &out).ok());
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
    const grpc::Status s = to_engine_request(r, tiny_video(), 1, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << "case " << i;
    EXPECT_THAT(s.error_message(), HasSubstr(cases[i].want)) << "case " << i;
  }
}

TEST(ServerValidation, ImageModelsRefuseVideoFields) {
  engine::Request out;
  v1::GenerateRequest r = good();
  r.set_fps(8);
  grpc::Status s = to_engine_request(r, tiny(), 1, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(
      s.error_message(),
      HasSubstr("fps must be 0 for image model flux-tiny (fps is for video models); got 8"));
  r = good();
  r.set_frames(9);
  s = to_engine_request(r, tiny(), 1, &out);
  EXPECT_THAT(s.error_message(), HasSubstr("frames must be 1 (or 0) for image model flux-tiny"));
  r.set_frames(1);
  ASSERT_TRUE(to_engine_request(r, tiny(), 1, &out).ok());
  EXPECT_EQ(out.frames, 1);
  EXPECT_EQ(out.fps, 0);
}

TEST(ServerValidation, PromptTokensCountedByTheModelsCounter) {
  for (ModelLimits m : {tiny(), tiny_video()}) {
    m.count_tokens = [](const std::string& text) -> int64_t {
      if (text.find('\xff') != std::string::npos) return -1;
      return static_cast<int64_t>(text.size()) / 2;  // a stand-in tokenizer: 2 bytes a token
    };
    v1::GenerateRequest r = m.manifest.is_video() ? good_video() : good();
    r.set_prompt(std::string(128, 'a'));
    engine::Request out;
    EXPECT_TRUE(to_engine_request(r, m, 1, &out).ok());
    r.set_prompt(std::string(130, 'a'));
    grpc::Status s = to_engine_request(r, m, 1, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(),
                HasSubstr("prompt is too long: 65 tokens; max_prompt_tokens is 64"));
    r.set_prompt("ok");
    r.set_negative_prompt("bad \xff");
    s = to_engine_request(r, m, 1, &out);
    EXPECT_THAT(s.error_message(), HasSubstr("negative_prompt cannot be tokenized"));
  }
}

bool has_bundle(const char* folder) {
  struct stat st {};
  return ::stat((std::string(folder) + "/model.yaml").c_str(), &st) == 0;
}

// The counters of the real tiny bundles: T5 (with </s>) for the image bundle, the Llama
// tokenizer (the prompt's own tokens, no template) for the video bundle.
TEST(ServerValidation, TokenCountersOfTheTinyBundles) {
  for (const char* folder : {GRAT_TINY_BUNDLE, GRAT_TINY_VIDEO_BUNDLE}) {
    if (!has_bundle(folder)) {
      GTEST_SKIP() << "no bundle at " << folder;
    }
    engine::Manifest mf;
    try {
      mf = engine::load_manifest(folder);
    } catch (const std::exception& e) {
      GTEST_SKIP() << folder << ": " << e.what();  // a bundle older than its loader
    }
    const TokenCounter count = load_token_counter(mf);
    ASSERT_TRUE(count) << folder;
    const int64_t one = count("a red fox");
    EXPECT_GT(one, 0) << folder;
    std::string many;
    for (int i = 0; i < 40; ++i) many += "a red fox ";
    EXPECT_GT(count(many), 10 * one) << folder;
    EXPECT_EQ(count("bad \xff\xfe"), -1) << folder;
    // Video: no template, no <|begin_of_text|>: the count does not include the 95-token
    // template the engine wraps the prompt in.
    if (mf.is_video()) {
      EXPECT_LT(one, 10);
    }
  }
}

}  // namespace
}  // namespace grat::server
