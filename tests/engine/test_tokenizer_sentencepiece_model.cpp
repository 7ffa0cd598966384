#include "grat/tokenizer/sentencepiece_model.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/utf8.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::TokenizerDir;

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = testing::TempDir() + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Loads `path` (then deletes it) and returns the error's code.
TokenizerError::Code LoadError(const std::string& path) {
  TokenizerError::Code code = TokenizerError::Code::kUnsupported;
  try {
    LoadSentencePieceModel(path);
    ADD_FAILURE() << "no error loading " << path;
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    code = e.code();
  }
  std::remove(path.c_str());
  return code;
}

TEST(SentencePieceModel, ReadsTheTinyT5Model) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
  const SentencePieceModel model = LoadSentencePieceModel(TokenizerDir() + "/t5/spiece.model");
  EXPECT_EQ(model.pieces.size(), expected["spm_piece_size"].get<std::size_t>());
  EXPECT_EQ(model.model_type, SentencePieceModel::ModelType::kUnigram);
  EXPECT_EQ(model.pad_id, 0);
  EXPECT_EQ(model.eos_id, 1);
  EXPECT_EQ(model.unk_id, 2);
  EXPECT_EQ(model.bos_id, -1);
  EXPECT_FALSE(model.byte_fallback);
  EXPECT_EQ(model.pieces[0].text, "<pad>");
  EXPECT_EQ(model.pieces[1].text, "</s>");
  EXPECT_EQ(model.pieces[1].type, SentencePieceModel::PieceType::kControl);
  EXPECT_EQ(model.pieces[2].type, SentencePieceModel::PieceType::kUnknown);
  EXPECT_EQ(model.pieces[3].type, SentencePieceModel::PieceType::kNormal);
  EXPECT_LT(model.pieces[3].score, 0.0f);
  EXPECT_EQ(model.normalizer_name, "nmt_nfkc");
  EXPECT_GT(model.precompiled_charsmap.size(), 1000u);
  EXPECT_TRUE(model.add_dummy_prefix);
  EXPECT_TRUE(model.remove_extra_whitespaces);
  EXPECT_TRUE(model.escape_whitespaces);
}

TEST(SentencePieceModel, MissingFile) {
  EXPECT_EQ(LoadError(testing::TempDir() + "no_such_spiece.model"),
            TokenizerError::Code::kFileNotFound);
}

TEST(SentencePieceModel, CorruptFiles) {
  ASSERT_FALSE(TokenizerDir().empty());
  const std::string good = ReadFileOrThrow(TokenizerDir() + "/t5/spiece.model", "model");
  EXPECT_EQ(LoadError(WriteTemp("empty.model", "")), TokenizerError::Code::kCorruptFile);
  EXPECT_EQ(LoadError(WriteTemp("half.model", good.substr(0, good.size() / 2))),
            TokenizerError::Code::kCorruptFile);
  EXPECT_EQ(LoadError(WriteTemp("text.model", "{\"this is\": \"json, not protobuf\"}")),
            TokenizerError::Code::kCorruptFile);
  std::string garbage(4096, '\0');
  for (std::size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  EXPECT_EQ(LoadError(WriteTemp("garbage.model", garbage)), TokenizerError::Code::kCorruptFile);
  // A piece whose score has the wrong wire type.
  EXPECT_EQ(LoadError(WriteTemp("wiretype.model", std::string("\x0a\x05\x0a\x01x\x10\x01", 7))),
            TokenizerError::Code::kCorruptFile);
}

TEST(SentencePieceModel, ParsesHandWrittenProto) {
  // pieces {piece:"<unk>" type:UNKNOWN} {piece:"a" score:-1.5} trainer_spec {unk_id:0 eos_id:-1}
  std::string bytes;
  bytes += std::string("\x0a\x09\x0a\x05<unk>\x18\x02", 11);
  bytes += std::string(
      "\x0a\x08\x0a\x01"
      "a\x15\x00\x00\xc0\xbf",
      10);
  bytes += std::string("\x12\x0c\x18\x01\xc0\x02\x00\xd0\x02\xff\xff\xff\xff\x0f", 14);
  const SentencePieceModel model = ParseSentencePieceModel(bytes);
  ASSERT_EQ(model.pieces.size(), 2u);
  EXPECT_EQ(model.pieces[0].type, SentencePieceModel::PieceType::kUnknown);
  EXPECT_EQ(model.pieces[1].text, "a");
  EXPECT_FLOAT_EQ(model.pieces[1].score, -1.5f);
  EXPECT_EQ(model.unk_id, 0);
  EXPECT_EQ(model.eos_id, -1);
  EXPECT_TRUE(model.precompiled_charsmap.empty());
}

}  // namespace
}  // namespace grat::tokenizer
