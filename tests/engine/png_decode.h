// Test helper: decodes PNG bytes to RGB8 with libpng's simplified API, independently of the
// engine's encoder. Empty on failure; width and height out when asked.
#pragma once

#include <png.h>

#include <cstdint>
#include <string>
#include <vector>

namespace grat::engine::test_util {

inline std::vector<uint8_t> decode_png(const std::string& bytes, int* w = nullptr,
                                       int* h = nullptr) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size())) return {};
  img.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> px(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, px.data(), 0, nullptr)) return {};
  if (w) *w = static_cast<int>(img.width);
  if (h) *h = static_cast<int>(img.height);
  return px;
}

}  // namespace grat::engine::test_util
