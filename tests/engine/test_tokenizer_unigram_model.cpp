#include "grat/tokenizer/unigram_model.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/tokenizer/sentencepiece_normalizer.h"
#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using Type = SentencePieceModel::PieceType;

using test_data::TokenizerDir;

SentencePieceModel SmallModel() {
  SentencePieceModel model;
  model.unk_id = 0;
  model.pieces = {
      {"<unk>", 0.0f, Type::kUnknown}, {"a", -2.0f, Type::kNormal},   {"b", -2.0f, Type::kNormal},
      {"ab", -3.0f, Type::kNormal},    {"abc", -9.0f, Type::kNormal}, {"c", -5.0f, Type::kNormal},
      {"bc", -4.5f, Type::kNormal},    {"<0x78>", 0.0f, Type::kByte}, {"cc", -1.0f, Type::kUnused}};
  return model;
}

TEST(UnigramModel, ViterbiPicksTheBestSegmentation) {
  const UnigramModel model(SmallModel());
  EXPECT_EQ(model.Encode("ab"), (std::vector<int64_t>{3}));      // -3 beats -2 + -2
  EXPECT_EQ(model.Encode("abc"), (std::vector<int64_t>{1, 6}));  // a|bc = -6.5 beats abc = -9
  EXPECT_EQ(model.Encode("cc"), (std::vector<int64_t>{5, 5}));   // unused pieces never match
  EXPECT_EQ(model.Encode(""), (std::vector<int64_t>{}));
}

TEST(UnigramModel, ConsecutiveUnknownsAreFused) {
  const UnigramModel model(SmallModel());
  EXPECT_EQ(model.Encode("xy\xe2\x98\x83"
                         "ab"
                         "z"),
            (std::vector<int64_t>{0, 3, 0}));
}

TEST(UnigramModel, ByteFallback) {
  SentencePieceModel small = SmallModel();
  small.byte_fallback = true;
  const UnigramModel model(small);
  EXPECT_EQ(model.Encode("axy"), (std::vector<int64_t>{1, 7, 0}));  // x has a byte piece, y not
}

TEST(UnigramModel, RejectsModelsItCannotRun) {
  SentencePieceModel no_unk = SmallModel();
  no_unk.pieces[0].type = Type::kControl;
  EXPECT_THROW(UnigramModel{no_unk}, TokenizerError);
  SentencePieceModel bpe = SmallModel();
  bpe.model_type = SentencePieceModel::ModelType::kBpe;
  try {
    UnigramModel model(bpe);
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kUnsupported);
  }
}

TEST(UnigramModel, MatchesSentencepieceOnTheCorpus) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
  const SentencePieceModel spm = LoadSentencePieceModel(TokenizerDir() + "/t5/spiece.model");
  const UnigramModel model(spm);
  const SentencePieceNormalizer normalizer(spm);
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(model.Encode(normalizer.Normalize(text)), c["spm_ids"].get<std::vector<int64_t>>())
        << text;
  }
}

}  // namespace
}  // namespace grat::tokenizer
