// Output encoders: PNG (libpng), WebP (libwebp), MP4/H.264 (ffmpeg's libav*, optional).
// Input pixels are 8-bit RGB, row-major, height x width x 3 (video: frames of that).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace grat::engine {

class EncodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string encode_png(const uint8_t* rgb, int width, int height);

// quality in [0, 100]; 100 selects lossless.
std::string encode_webp(const uint8_t* rgb, int width, int height, float quality = 90.f);

// True when the build has ffmpeg's libraries (GRAT_WITH_VIDEO).
bool video_encoding_available();

// H.264 in MP4; `frames` holds frame_count * height * width * 3 bytes. Width and height
// must be even (yuv420p).
std::string encode_mp4(const std::vector<uint8_t>& frames, int frame_count, int width, int height,
                       int fps = 24, int crf = 18);

}  // namespace grat::engine
