// Minimal protobuf wire-format reader (internal to grat_tokenizers): enough to walk the
// fields of sentencepiece's ModelProto. Every read is bounds-checked and throws
// TokenizerError(kCorruptFile).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "grat/tokenizer/tokenizer_error.h"

namespace grat::tokenizer::wire {

enum WireType : int { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  int wire_type = 0;
  uint64_t varint = 0;     // kVarint; also the raw bits of kFixed32/kFixed64
  std::string_view bytes;  // kLengthDelimited
};

class Reader {
 public:
  Reader(std::string_view data, const char* what) : data_(data), what_(what) {}

  bool Next(Field* field) {
    if (pos_ >= data_.size()) return false;
    const uint64_t key = ReadVarint();
    field->number = static_cast<uint32_t>(key >> 3);
    field->wire_type = static_cast<int>(key & 7);
    if (field->number == 0) Fail("field number 0");
    switch (field->wire_type) {
      case kVarint:
        field->varint = ReadVarint();
        break;
      case kFixed64:
        field->varint = ReadFixed(8);
        break;
      case kFixed32:
        field->varint = ReadFixed(4);
        break;
      case kLengthDelimited: {
        const uint64_t size = ReadVarint();
        if (size > data_.size() - pos_) Fail("length-delimited field runs past the end");
        field->bytes = data_.substr(pos_, static_cast<std::size_t>(size));
        pos_ += static_cast<std::size_t>(size);
        break;
      }
      default:
        Fail("unsupported wire type " + std::to_string(field->wire_type));
    }
    return true;
  }

  [[noreturn]] void Fail(const std::string& why) const {
    throw TokenizerError(
        TokenizerError::Code::kCorruptFile,
        std::string(what_) + ": malformed protobuf (" + why + ") at byte " + std::to_string(pos_));
  }

 private:
  uint64_t ReadVarint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) Fail("truncated varint");
      const auto byte = static_cast<unsigned char>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (byte < 0x80) return value;
    }
    Fail("varint longer than 10 bytes");
  }

  uint64_t ReadFixed(std::size_t size) {
    if (size > data_.size() - pos_) Fail("truncated fixed-size field");
    uint64_t value = 0;
    for (std::size_t k = 0; k < size; ++k) {
      value |= static_cast<uint64_t>(static_cast<unsigned char>(data_[pos_ + k])) << (8 * k);
    }
    pos_ += size;
    return value;
  }

  std::string_view data_;
  const char* what_;
  std::size_t pos_ = 0;
};

inline float AsFloat(const Field& field) {
  const auto bits = static_cast<uint32_t>(field.varint);
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace grat::tokenizer::wire
