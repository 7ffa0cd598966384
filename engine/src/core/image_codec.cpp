#include <png.h>
#include <webp/encode.h>

#include <csetjmp>
#include <cstring>

#include "grat/engine/codec.h"

namespace grat::engine {
namespace {

void check_size(const uint8_t* rgb, int width, int height, const char* what) {
  if (rgb == nullptr || width < 1 || height < 1) {
    throw EncodeError(std::string(what) + ": empty image (" + std::to_string(width) + "x" +
                      std::to_string(height) + ")");
  }
}

void png_write(png_structp png, png_bytep data, png_size_t n) {
  auto* out = static_cast<std::string*>(png_get_io_ptr(png));
  out->append(reinterpret_cast<const char*>(data), n);
}

void png_flush(png_structp) {}

}  // namespace

std::string encode_png(const uint8_t* rgb, int width, int height) {
  check_size(rgb, width, height, "png");
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (png == nullptr) throw EncodeError("png: out of memory");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw EncodeError("png: libpng failed to encode");
  }
  png_set_write_fn(png, &out, png_write, png_flush);
  // Level 3 of zlib: large images encode several times faster than the default with
  // files only slightly larger.
  png_set_compression_level(png, 3);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const size_t stride = static_cast<size_t>(width) * 3;
  for (int y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(rgb + stride * static_cast<size_t>(y)));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

std::string encode_webp(const uint8_t* rgb, int width, int height, float quality) {
  check_size(rgb, width, height, "webp");
  if (width > WEBP_MAX_DIMENSION || height > WEBP_MAX_DIMENSION) {
    throw EncodeError("webp: images are limited to " + std::to_string(WEBP_MAX_DIMENSION) +
                      " pixels per side; got " + std::to_string(width) + "x" +
                      std::to_string(height));
  }
  if (!(quality >= 0.f && quality <= 100.f)) {
    throw EncodeError("webp: quality must be in [0, 100]");
  }
  uint8_t* data = nullptr;
  const size_t n = quality >= 100.f ? WebPEncodeLosslessRGB(rgb, width, height, width * 3, &data)
                                    : WebPEncodeRGB(rgb, width, height, width * 3, quality, &data);
  if (n == 0 || data == nullptr) {
    WebPFree(data);
    throw EncodeError("webp: libwebp failed to encode");
  }
  std::string out(reinterpret_cast<const char*>(data), n);
  WebPFree(data);
  return out;
}

}  // namespace grat::engine
