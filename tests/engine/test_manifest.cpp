// model.yaml loading: a good bundle loads; each problem is refused naming its key.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "grat/engine/manifest.h"

namespace grat::engine {
namespace {

using ::testing::HasSubstr;

const char* kGood = R"(format: 1
name: flux-tiny
kind: image
architecture: flux
latent_channels: 16
vae_scale: 8
patch: 2
text: {t5_max_length: 64, clip_max_length: 77}
vae: {scaling_factor: 0.3611, shift_factor: 0.1159}
defaults: {steps: 4, guidance: 3.5, shift_base: 0.5, shift_max: 1.15, true_cfg: false}
grat: {pattern: B, group: [4, 4], radius: 1}
limits: {min_side: 64, max_side: 1024, side_multiple: 16, max_pixels: 1048576, min_steps: 1,
         max_steps: 50, max_frames: 1, max_prompt_tokens: 64}
files: {transformer: transformer.pt, t5: t5.pt, clip: clip.pt, vae_decoder: vae.pt,
        t5_tokenizer: spiece.model, clip_vocab: vocab.json, clip_merges: merges.txt}
)";

const char* kGoodVideo = R"(format: 1
name: hunyuan-video-tiny
kind: video
architecture: hunyuan
latent_channels: 16
vae_scale: 8
vae_temporal_scale: 4
patch: 2
text: {llm_max_length: 64, llm_crop_start: 95, llm_template: "<s>{}</s>", clip_max_length: 77}
vae: {scaling_factor: 0.476986, shift_factor: 0.0}
defaults: {steps: 4, guidance: 6.0, shift: 7.0, true_cfg: false, frames: 9, fps: 8}
grat: {pattern: B, group: [2, 4, 4], radius: 1}
limits: {min_side: 32, max_side: 512, side_multiple: 16, max_pixels: 147456, min_steps: 1,
         max_steps: 100, max_frames: 33, max_prompt_tokens: 64, max_video_pixels: 4866048}
files: {transformer: transformer.pt, llm: llm.pt, clip: clip.pt, vae_decoder: vae.pt,
        llm_tokenizer: tokenizer.json, clip_vocab: vocab.json, clip_merges: merges.txt}
)";

class ManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("grat_manifest_" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir_);
    for (const char* f : {"transformer.pt", "t5.pt", "clip.pt", "vae.pt", "spiece.model",
                          "vocab.json", "merges.txt", "llm.pt", "tokenizer.json"}) {
      std::ofstream(dir_ / f) << "x";
    }
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& yaml) { std::ofstream(dir_ / "model.yaml") << yaml; }
  std::string error_for(const std::string& yaml) {
    write(yaml);
    try {
      load_manifest(dir_.string());
    } catch (const BundleError& e) {
      return e.what();
    }
    return "no error";
  }
  static std::string replace(std::string s, const std::string& from, const std::string& to) {
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  }
  std::filesystem::path dir_;
};

TEST_F(ManifestTest, GoodBundleLoads) {
  write(kGood);
  const Manifest m = load_manifest(dir_.string());
  EXPECT_EQ(m.name, "flux-tiny");
  EXPECT_EQ(m.kind, "image");
  EXPECT_EQ(m.latent_channels, 16);
  EXPECT_EQ(m.text.t5_max_length, 64);
  EXPECT_DOUBLE_EQ(m.vae.scaling_factor, 0.3611);
  EXPECT_FALSE(m.defaults.true_cfg);
  EXPECT_EQ(m.grat.group, (std::vector<int64_t>{4, 4}));
  EXPECT_EQ(m.limits.max_pixels, 1048576);
  EXPECT_EQ(m.path("vae_decoder"), (dir_ / "vae.pt").string());
}

TEST_F(ManifestTest, ProblemsNameTheKey) {
  const std::string g = kGood;
  EXPECT_THAT(error_for(replace(g, "kind: image\n", "")), HasSubstr("model.yaml.kind: missing"));
  EXPECT_THAT(error_for(replace(g, "kind: image", "kind: audio")), HasSubstr("model.yaml.kind"));
  EXPECT_THAT(error_for(g + "colour: red\n"), HasSubstr("model.yaml.colour: unknown key"));
  EXPECT_THAT(error_for(replace(g, "format: 1", "format: 2")), HasSubstr("model.yaml.format"));
  EXPECT_THAT(error_for(replace(g, "patch: 2", "patch: 0")), HasSubstr("model.yaml.patch"));
  EXPECT_THAT(error_for(replace(g, "latent_channels: 16", "latent_channels: many")),
              HasSubstr("model.yaml.latent_channels: expected int"));
  EXPECT_THAT(error_for(replace(g, "pattern: B", "pattern: Y")),
              HasSubstr("model.yaml.grat.pattern"));
  EXPECT_THAT(error_for(replace(g, "group: [4, 4]", "group: [4]")),
              HasSubstr("model.yaml.grat.group"));
  EXPECT_THAT(error_for(replace(g, "radius: 1", "radius: 0")), HasSubstr("model.yaml.grat.radius"));
  EXPECT_THAT(error_for(replace(g, "true_cfg: false", "true_cfg: 1")),
              HasSubstr("model.yaml.defaults.true_cfg: expected bool"));
  EXPECT_THAT(error_for(replace(g, "steps: 4", "steps: 99")),
              HasSubstr("model.yaml.defaults.steps"));
  EXPECT_THAT(error_for(replace(g, "clip_max_length: 77", "clip_max: 77")),
              HasSubstr("model.yaml.text.clip_max: unknown key"));
  EXPECT_THAT(error_for(replace(g, "t5: t5.pt, ", "")), HasSubstr("model.yaml.files.t5: missing"));
  EXPECT_THAT(error_for(replace(g, "t5: t5.pt", "t5: ../t5.pt")),
              HasSubstr("model.yaml.files.t5: must be a path inside the bundle"));
  EXPECT_THAT(error_for("kind: [unclosed\n"), HasSubstr("not valid YAML"));
  EXPECT_THAT(error_for("- 1\n- 2\n"), HasSubstr("must be a mapping"));
}

TEST_F(ManifestTest, MemoryTableLoadsAndInterpolates) {
  write(
      std::string(kGood) +
      "memory: {measured_on: NVIDIA H200, peak_gib: [[1000, 10.0], [3000, 14.0], [5000, 15.0]]}\n");
  const Manifest m = load_manifest(dir_.string());
  EXPECT_EQ(m.memory.measured_on, "NVIDIA H200");
  ASSERT_EQ(m.memory.peak_gib.size(), 3u);
  EXPECT_DOUBLE_EQ(m.memory.estimate_gib(10), 10.0);    // below the table: its first value
  EXPECT_DOUBLE_EQ(m.memory.estimate_gib(2000), 12.0);  // between points: linear
  EXPECT_DOUBLE_EQ(m.memory.estimate_gib(3000), 14.0);
  EXPECT_DOUBLE_EQ(m.memory.estimate_gib(9000), 17.0);  // beyond: the last segment's slope
  write(kGood);
  EXPECT_TRUE(load_manifest(dir_.string()).memory.empty());  // optional
}

TEST_F(ManifestTest, BadMemoryTableNamesTheKey) {
  const std::string g = kGood;
  EXPECT_THAT(error_for(g + "memory: {peak_gib: [[1, 2.0]]}\n"),
              HasSubstr("model.yaml.memory.measured_on: missing"));
  EXPECT_THAT(error_for(g + "memory: {measured_on: x, peak_gib: []}\n"),
              HasSubstr("model.yaml.memory.peak_gib: a list of [tokens, GiB] pairs"));
  EXPECT_THAT(error_for(g + "memory: {measured_on: x, peak_gib: [[100, 2.0], [50, 3.0]]}\n"),
              HasSubstr("model.yaml.memory.peak_gib"));
  EXPECT_THAT(error_for(g + "memory: {measured_on: x, peak_gib: [[100, 0]]}\n"),
              HasSubstr("model.yaml.memory.peak_gib"));
  EXPECT_THAT(error_for(g + "memory: {measured_on: x, peak_gib: [[a, 1.0]]}\n"),
              HasSubstr("model.yaml.memory.peak_gib"));
  EXPECT_THAT(error_for(g + "memory: {measured_on: x, peak_gib: [[1, 1.0]], slope: 2}\n"),
              HasSubstr("model.yaml.memory.slope: unknown key"));
}

TEST_F(ManifestTest, MissingFileOrYamlIsRefused) {
  write(kGood);
  std::filesystem::remove(dir_ / "merges.txt");
  EXPECT_THAT(error_for(kGood),
              HasSubstr("model.yaml.files.clip_merges: file merges.txt not found"));
  std::filesystem::remove(dir_ / "model.yaml");
  EXPECT_THROW(load_manifest(dir_.string()), BundleError);
}

TEST_F(ManifestTest, GoodVideoBundleLoads) {
  write(kGoodVideo);
  const Manifest m = load_manifest(dir_.string());
  EXPECT_TRUE(m.is_video());
  EXPECT_EQ(m.architecture, "hunyuan");
  EXPECT_EQ(m.vae_temporal_scale, 4);
  EXPECT_EQ(m.text.llm_max_length, 64);
  EXPECT_EQ(m.text.llm_crop_start, 95);
  EXPECT_EQ(m.text.llm_template, "<s>{}</s>");
  EXPECT_DOUBLE_EQ(m.defaults.shift, 7.0);
  EXPECT_EQ(m.defaults.frames, 9);
  EXPECT_EQ(m.defaults.fps, 8);
  EXPECT_EQ(m.grat.group, (std::vector<int64_t>{2, 4, 4}));
  EXPECT_EQ(m.limits.max_video_pixels, 4866048);
  EXPECT_EQ(m.path("llm_tokenizer"), (dir_ / "tokenizer.json").string());
}

TEST_F(ManifestTest, VideoProblemsNameTheKey) {
  const std::string g = kGoodVideo;
  EXPECT_THAT(error_for(replace(g, "vae_temporal_scale: 4\n", "")),
              HasSubstr("model.yaml.vae_temporal_scale: missing"));
  EXPECT_THAT(error_for(replace(g, "architecture: hunyuan", "architecture: flux")),
              HasSubstr("model.yaml.architecture: a video bundle must be 'hunyuan'"));
  EXPECT_THAT(error_for(replace(kGood, "architecture: flux", "architecture: hunyuan")),
              HasSubstr("model.yaml.architecture: a image bundle must be 'flux'"));
  EXPECT_THAT(error_for(replace(kGood, "patch: 2", "patch: 2\nvae_temporal_scale: 4")),
              HasSubstr("model.yaml.vae_temporal_scale: unknown key"));
  EXPECT_THAT(error_for(replace(g, "llm_crop_start: 95, ", "")),
              HasSubstr("model.yaml.text.llm_crop_start: missing"));
  EXPECT_THAT(error_for(replace(g, "<s>{}</s>", "<s></s>")),
              HasSubstr("model.yaml.text.llm_template: must contain '{}' exactly once"));
  EXPECT_THAT(error_for(replace(g, "shift: 7.0", "shift_base: 0.5")),
              HasSubstr("model.yaml.defaults.shift_base: unknown key"));
  EXPECT_THAT(error_for(replace(g, "frames: 9", "frames: 8")),
              HasSubstr("model.yaml.defaults.frames: must be 4k+1"));
  EXPECT_THAT(error_for(replace(g, "frames: 9", "frames: 37")),
              HasSubstr("model.yaml.defaults.frames: must be 4k+1"));
  EXPECT_THAT(error_for(replace(g, "max_frames: 33", "max_frames: 32")),
              HasSubstr("model.yaml.limits.max_frames: must be 4k+1"));
  EXPECT_THAT(error_for(replace(g, ", max_video_pixels: 4866048", "")),
              HasSubstr("model.yaml.limits.max_video_pixels: missing"));
  EXPECT_THAT(error_for(replace(g, "group: [2, 4, 4]", "group: [4, 4]")),
              HasSubstr("model.yaml.grat.group: 3 positive ints"));
  EXPECT_THAT(error_for(replace(g, "llm: llm.pt, ", "")),
              HasSubstr("model.yaml.files.llm: missing"));
  EXPECT_THAT(error_for(replace(g, "llm: llm.pt", "t5: llm.pt")),
              HasSubstr("model.yaml.files.t5: unknown key"));
}

TEST_F(ManifestTest, TheExportedTinyVideoBundleLoads) {
  const char* folder = std::getenv("GRAT_TINY_VIDEO_BUNDLE");
  ASSERT_NE(folder, nullptr) << "run through ctest";
  const Manifest m = load_manifest(folder);
  EXPECT_EQ(m.name, "hunyuan-video-tiny");
  EXPECT_EQ(m.kind, "video");
  EXPECT_GT(m.text.llm_crop_start, 0);
}

}  // namespace
}  // namespace grat::engine
