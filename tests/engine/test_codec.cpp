// PNG / WebP / MP4 encoders. Writes its outputs (and the raw pixels) to GRAT_CODEC_DIR for
// check_codec_outputs.py to decode with Pillow and ffprobe; PNG is also decoded here.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/engine/codec.h"
#include "png_decode.h"

namespace grat::engine {
namespace {

std::vector<uint8_t> gradient(int w, int h, int shift = 0) {
  std::vector<uint8_t> px(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
      p[0] = static_cast<uint8_t>((x + shift) * 255 / (w + shift));
      p[1] = static_cast<uint8_t>(y * 255 / h);
      p[2] = static_cast<uint8_t>(((x + shift) * y) * 255 / ((w + shift) * h));
    }
  }
  return px;
}

using test_util::decode_png;

class CodecFiles : public ::testing::Test {
 protected:
  static void write(const std::string& name, const void* data, size_t n) {
    const char* dir = std::getenv("GRAT_CODEC_DIR");
    if (dir == nullptr) return;
    std::filesystem::create_directories(dir);
    std::ofstream(std::string(dir) + "/" + name, std::ios::binary)
        .write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  }
  static void record(nlohmann::json item) {
    manifest().push_back(std::move(item));
    const std::string s = manifest().dump(1);
    write("manifest.json", s.data(), s.size());
  }
  static nlohmann::json& manifest() {
    static nlohmann::json m = nlohmann::json::array();
    return m;
  }
};

TEST_F(CodecFiles, PngRoundTripsExactly) {
  const int w = 96, h = 48;
  const auto px = gradient(w, h);
  const std::string png = encode_png(px.data(), w, h);
  int dw = 0, dh = 0;
  EXPECT_EQ(decode_png(png, &dw, &dh), px);
  EXPECT_EQ(dw, w);
  EXPECT_EQ(dh, h);
  write("image.png", png.data(), png.size());
  write("image.rgb", px.data(), px.size());
  record({{"file", "image.png"},
          {"raw", "image.rgb"},
          {"format", "png"},
          {"width", w},
          {"height", h},
          {"lossless", true}});
}

TEST_F(CodecFiles, WebpLossyAndLossless) {
  const int w = 80, h = 64;
  const auto px = gradient(w, h);
  const std::string lossy = encode_webp(px.data(), w, h, 90.f);
  const std::string lossless = encode_webp(px.data(), w, h, 100.f);
  EXPECT_EQ(lossy.substr(0, 4), "RIFF");
  EXPECT_EQ(lossless.substr(8, 4), "WEBP");
  write("lossy.webp", lossy.data(), lossy.size());
  write("lossless.webp", lossless.data(), lossless.size());
  write("webp.rgb", px.data(), px.size());
  record({{"file", "lossy.webp"},
          {"raw", "webp.rgb"},
          {"format", "webp"},
          {"width", w},
          {"height", h},
          {"lossless", false}});
  record({{"file", "lossless.webp"},
          {"raw", "webp.rgb"},
          {"format", "webp"},
          {"width", w},
          {"height", h},
          {"lossless", true}});
}

TEST_F(CodecFiles, Mp4HasRequestedSizeAndFrames) {
  if (!GRAT_HAVE_VIDEO) {
    EXPECT_THROW(encode_mp4({}, 1, 16, 16), EncodeError);
    GTEST_SKIP() << "built without ffmpeg";
  }
  const int w = 64, h = 48, frames = 9;
  std::vector<uint8_t> all;
  for (int i = 0; i < frames; ++i) {
    const auto f = gradient(w, h, 2 * i);
    all.insert(all.end(), f.begin(), f.end());
  }
  const std::string mp4 = encode_mp4(all, frames, w, h, 24);
  ASSERT_GT(mp4.size(), 100u);
  EXPECT_EQ(mp4.substr(4, 4), "ftyp");
  write("video.mp4", mp4.data(), mp4.size());
  write("video.rgb", all.data(), all.size());
  record({{"file", "video.mp4"},
          {"raw", "video.rgb"},
          {"format", "mp4"},
          {"width", w},
          {"height", h},
          {"frames", frames}});
}

TEST(Codec, BadInputsAreErrors) {
  const auto px = gradient(4, 4);
  EXPECT_THROW(encode_png(nullptr, 4, 4), EncodeError);
  EXPECT_THROW(encode_png(px.data(), 0, 4), EncodeError);
  EXPECT_THROW(encode_webp(px.data(), 20000, 4), EncodeError);
  EXPECT_THROW(encode_webp(px.data(), 4, 4, 150.f), EncodeError);
  EXPECT_THROW(encode_mp4(px, 1, 3, 4), EncodeError);  // odd width
  EXPECT_THROW(encode_mp4(px, 2, 4, 4), EncodeError);  // buffer too small
}

}  // namespace
}  // namespace grat::engine
