// AttentionPolicy: defaults, overrides, auto's table, full-first-k, and refused settings.
#include <gtest/gtest.h>

#include "grat/engine/attention_policy.h"

namespace grat::engine {
namespace {

AttentionSettings mode(AttentionMode m) {
  AttentionSettings s;
  s.mode = m;
  return s;
}

TEST(AttentionPolicy, DefaultsFillTheRequest) {
  const AttentionPolicy p(mode(AttentionMode::kB), {64, 64}, "B", {16, 16}, 1);
  const StepAttention a = p.at_step(0);
  EXPECT_EQ(a.pattern, "B");
  EXPECT_EQ(a.group, (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(a.radius, 1);
  EXPECT_EQ(p.describe(), "B group=16x16 radius=1");
}

TEST(AttentionPolicy, OverridesAndClipping) {
  AttentionSettings s = mode(AttentionMode::kX);
  s.group = {8, 100};
  s.radius = 2;
  const AttentionPolicy p(s, {48, 85}, "B", {16, 16}, 1);
  EXPECT_EQ(p.at_step(3).pattern, "X");
  EXPECT_EQ(p.at_step(3).group, (std::vector<int64_t>{8, 85}));  // clipped to the grid
}

TEST(AttentionPolicy, AutoIsFullBelowTheMeasuredCrossover) {
  EXPECT_EQ(
      AttentionPolicy(mode(AttentionMode::kAuto), {32, 32}, "B", {16, 16}, 1).at_step(0).pattern,
      "full");  // 512^2: 1024 tokens
  EXPECT_EQ(
      AttentionPolicy(mode(AttentionMode::kAuto), {64, 64}, "B", {16, 16}, 1).at_step(0).pattern,
      "B");  // 1024^2
  EXPECT_EQ(
      AttentionPolicy(mode(AttentionMode::kAuto), {256, 16}, "B", {16, 16}, 1).at_step(0).pattern,
      "full");  // one group column: nothing to skip
}

TEST(AttentionPolicy, FullForTheFirstSteps) {
  AttentionSettings s = mode(AttentionMode::kB);
  s.full_steps = 2;
  const AttentionPolicy p(s, {64, 64}, "B", {16, 16}, 1);
  EXPECT_EQ(p.at_step(0).pattern, "full");
  EXPECT_EQ(p.at_step(1).pattern, "full");
  EXPECT_EQ(p.at_step(2).pattern, "B");
  EXPECT_EQ(p.describe(), "B group=16x16 radius=1 full_steps=2");
}

TEST(AttentionPolicy, RefusesBadSettings) {
  AttentionSettings s = mode(AttentionMode::kB);
  s.group = {16};
  EXPECT_THROW(AttentionPolicy(s, {64, 64}, "B", {16, 16}, 1), std::invalid_argument);
  s.group = {0, 16};
  EXPECT_THROW(AttentionPolicy(s, {64, 64}, "B", {16, 16}, 1), std::invalid_argument);
  s.group = {};
  s.radius = -1;
  EXPECT_THROW(AttentionPolicy(s, {64, 64}, "B", {16, 16}, 1), std::invalid_argument);
  s.radius = 0;
  s.full_steps = -3;
  EXPECT_THROW(AttentionPolicy(s, {64, 64}, "B", {16, 16}, 1), std::invalid_argument);
  EXPECT_FALSE(parse_attention_mode("Y").has_value());
  EXPECT_EQ(parse_attention_mode("b"), AttentionMode::kB);
}

}  // namespace
}  // namespace grat::engine
