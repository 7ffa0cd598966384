#include "grat/tokenizer/sentencepiece_model.h"

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/utf8.h"
#include "protobuf_wire.h"

namespace grat::tokenizer {
namespace {

constexpr const char* kWhat = "sentencepiece model";

void Expect(const wire::Reader& reader, const wire::Field& field, int wire_type) {
  if (field.wire_type != wire_type) {
    reader.Fail("field " + std::to_string(field.number) + " has wire type " +
                std::to_string(field.wire_type) + ", expected " + std::to_string(wire_type));
  }
}

SentencePieceModel::Piece ParsePiece(std::string_view bytes) {
  SentencePieceModel::Piece piece;
  wire::Reader reader(bytes, kWhat);
  wire::Field field;
  while (reader.Next(&field)) {
    if (field.number == 1) {
      Expect(reader, field, wire::kLengthDelimited);
      piece.text = std::string(field.bytes);
    } else if (field.number == 2) {
      Expect(reader, field, wire::kFixed32);
      piece.score = wire::AsFloat(field);
    } else if (field.number == 3) {
      Expect(reader, field, wire::kVarint);
      if (field.varint < 1 || field.varint > 6) reader.Fail("unknown piece type");
      piece.type = static_cast<SentencePieceModel::PieceType>(field.varint);
    }
  }
  return piece;
}

void ParseTrainerSpec(std::string_view bytes, SentencePieceModel* model) {
  wire::Reader reader(bytes, kWhat);
  wire::Field field;
  while (reader.Next(&field)) {
    const auto as_int = [&] {
      Expect(reader, field, wire::kVarint);
      return static_cast<int>(static_cast<int32_t>(field.varint));
    };
    switch (field.number) {
      case 3:
        model->model_type = static_cast<SentencePieceModel::ModelType>(as_int());
        break;
      case 24:
        model->treat_whitespace_as_suffix = as_int() != 0;
        break;
      case 35:
        model->byte_fallback = as_int() != 0;
        break;
      case 40:
        model->unk_id = as_int();
        break;
      case 41:
        model->bos_id = as_int();
        break;
      case 42:
        model->eos_id = as_int();
        break;
      case 43:
        model->pad_id = as_int();
        break;
      default:
        break;
    }
  }
}

void ParseNormalizerSpec(std::string_view bytes, SentencePieceModel* model) {
  wire::Reader reader(bytes, kWhat);
  wire::Field field;
  while (reader.Next(&field)) {
    switch (field.number) {
      case 1:
        Expect(reader, field, wire::kLengthDelimited);
        model->normalizer_name = std::string(field.bytes);
        break;
      case 2:
        Expect(reader, field, wire::kLengthDelimited);
        model->precompiled_charsmap = std::string(field.bytes);
        break;
      case 3:
        Expect(reader, field, wire::kVarint);
        model->add_dummy_prefix = field.varint != 0;
        break;
      case 4:
        Expect(reader, field, wire::kVarint);
        model->remove_extra_whitespaces = field.varint != 0;
        break;
      case 5:
        Expect(reader, field, wire::kVarint);
        model->escape_whitespaces = field.varint != 0;
        break;
      default:
        break;
    }
  }
}

}  // namespace

SentencePieceModel ParseSentencePieceModel(std::string_view bytes) {
  SentencePieceModel model;
  wire::Reader reader(bytes, kWhat);
  wire::Field field;
  bool has_trainer_spec = false;
  while (reader.Next(&field)) {
    if (field.number >= 1 && field.number <= 3) Expect(reader, field, wire::kLengthDelimited);
    if (field.number == 1) {
      model.pieces.push_back(ParsePiece(field.bytes));
    } else if (field.number == 2) {
      ParseTrainerSpec(field.bytes, &model);
      has_trainer_spec = true;
    } else if (field.number == 3) {
      ParseNormalizerSpec(field.bytes, &model);
    }
  }
  const auto fail = [](const std::string& why) {
    throw TokenizerError(TokenizerError::Code::kCorruptFile, std::string(kWhat) + ": " + why);
  };
  if (model.pieces.empty()) fail("no pieces (not a sentencepiece ModelProto?)");
  if (!has_trainer_spec) fail("no trainer_spec");
  const int n = static_cast<int>(model.pieces.size());
  if (model.unk_id < 0 || model.unk_id >= n ||
      model.pieces[model.unk_id].type != SentencePieceModel::PieceType::kUnknown) {
    fail("unk_id " + std::to_string(model.unk_id) + " is not an UNKNOWN piece");
  }
  if (model.eos_id >= n || model.pad_id >= n || model.bos_id >= n) {
    fail("a special id is outside the " + std::to_string(n) + " pieces");
  }
  for (const auto& piece : model.pieces) {
    try {
      ValidateUtf8(piece.text);
    } catch (const TokenizerError&) {
      fail("a piece is not valid UTF-8");
    }
    if (piece.text.empty()) fail("empty piece");
  }
  return model;
}

SentencePieceModel LoadSentencePieceModel(const std::string& path) {
  const std::string bytes = ReadFileOrThrow(path, "sentencepiece model");
  try {
    return ParseSentencePieceModel(bytes);
  } catch (const TokenizerError& e) {
    throw TokenizerError(e.code(), std::string(e.what()) + " (file " + path + ")");
  }
}

}  // namespace grat::tokenizer
