// SentencePieceModel: the parts of sentencepiece's ModelProto (`spiece.model`) that encoding
// needs, read from the protobuf wire format without libprotobuf. Immutable after parsing.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace grat::tokenizer {

struct SentencePieceModel {
  enum class PieceType : int {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct Piece {
    std::string text;
    float score = 0.0f;
    PieceType type = PieceType::kNormal;
  };
  enum class ModelType : int { kUnigram = 1, kBpe = 2, kWord = 3, kChar = 4 };

  std::vector<Piece> pieces;
  // TrainerSpec
  ModelType model_type = ModelType::kUnigram;
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  int unk_id = 0;
  int bos_id = 1;
  int eos_id = 2;
  int pad_id = -1;
  // NormalizerSpec
  std::string normalizer_name;
  std::string precompiled_charsmap;  // empty: identity normalization
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

// Parses the bytes of a ModelProto; throws TokenizerError(kCorruptFile) with the reason.
SentencePieceModel ParseSentencePieceModel(std::string_view bytes);

// Reads and parses `path`; throws kFileNotFound / kCorruptFile naming the file.
SentencePieceModel LoadSentencePieceModel(const std::string& path);

}  // namespace grat::tokenizer
