// Output encoders: PNG (libpng), WebP (libwebp), MP4/H.264 (ffmpeg's libav*, optional).
// Input pixels are 8-bit RGB, row-major, height x width x 3 (video: frames of that).
#pragma once

#include <cstddef>
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

// H.264 in MP4; `frames` holds frame_count * height * width * 3 bytes (`bytes` of them).
// Width and height must be even (yuv420p). The pointer form reads a tensor's memory in place
// (a 720p clip is ~350 MB).
std::string encode_mp4(const uint8_t* frames, size_t bytes, int frame_count, int width, int height,
                       int fps = 24, int crf = 18);
inline std::string encode_mp4(const std::vector<uint8_t>& frames, int frame_count, int width,
                              int height, int fps = 24, int crf = 18) {
  return encode_mp4(frames.data(), frames.size(), frame_count, width, height, fps, crf);
}

}  // namespace grat::engine
