// grat::server request validation: each bad field gives INVALID_ARGUMENT naming the field
// and its limit; good requests map onto engine::Request.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace grat::server
