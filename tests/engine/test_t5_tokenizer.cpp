#include "grat/tokenizer/t5_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::Expected;
using test_data::TokenizerDir;

std::string ModelPath() { return TokenizerDir() + "/t5/spiece.model"; }

T5Tokenizer Load(int max_length, bool parse_special_tokens = true,
                 T5Tokenizer::Options::Normalization normalization =
                     T5Tokenizer::Options::Normalization::kTransformers) {
  T5Tokenizer::Options options;
  options.max_length = max_length;
  options.parse_special_tokens = parse_special_tokens;
  options.normalization = normalization;
  return T5Tokenizer::Load(ModelPath(), options);
}

// T5 layout: truncate to max_length - 1, append </s> (1), pad with <pad> (0).
TokenIds T5Layout(std::vector<int64_t> ids, int max_length) {
  if (ids.size() > static_cast<std::size_t>(max_length - 1)) ids.resize(max_length - 1);
  ids.push_back(1);
  TokenIds out;
  out.length = static_cast<int64_t>(ids.size());
  out.attention_mask.assign(ids.size(), 1);
  out.attention_mask.resize(max_length, 0);
  ids.resize(max_length, 0);
  out.ids = std::move(ids);
  return out;
}

TEST(T5Tokenizer, MatchesTransformers) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = Expected();
  for (int max_length : expected["t5_max_lengths"].get<std::vector<int>>()) {
    const T5Tokenizer tokenizer = Load(max_length);
    EXPECT_EQ(tokenizer.vocab_size(), expected["t5_vocab_size"].get<int64_t>());
    for (const auto& c : expected["cases"]) {
      const std::string text = c["text"];
      const auto& ref = c["t5"][std::to_string(max_length)];
      const TokenIds got = tokenizer.Encode(text);
      EXPECT_EQ(got.ids, ref["ids"].get<std::vector<int64_t>>()) << text;
      EXPECT_EQ(got.attention_mask, ref["mask"].get<std::vector<int64_t>>()) << text;
      EXPECT_EQ(got.ids.size(), static_cast<std::size_t>(max_length));
    }
  }
}

TEST(T5Tokenizer, SentencePieceModeMatchesSentencepiece) {
  ASSERT_FALSE(TokenizerDir().empty());
  const auto expected = Expected();
  int differs = 0;
  for (bool parse_special_tokens : {true, false}) {
    for (int max_length : expected["t5_max_lengths"].get<std::vector<int>>()) {
      const T5Tokenizer tokenizer = Load(max_length, parse_special_tokens,
                                         T5Tokenizer::Options::Normalization::kSentencePiece);
      for (const auto& c : expected["cases"]) {
        const std::string text = c["text"];
        // With special tokens: sentencepiece's ids between transformers' special tokens.
        const std::vector<int64_t> ids = parse_special_tokens ? c["t5_spm_segments"] : c["spm_ids"];
        if (!parse_special_tokens) {
          EXPECT_EQ(tokenizer.EncodePieces(text), ids) << text;
        }
        const TokenIds want = T5Layout(ids, max_length);
        const TokenIds got = tokenizer.Encode(text);
        EXPECT_EQ(got.ids, want.ids) << text;
        EXPECT_EQ(got.attention_mask, want.attention_mask) << text;
        EXPECT_EQ(got.length, want.length) << text;
        differs += c["t5_transformers_differs"].get<bool>();
      }
    }
  }
  std::cout << "prompt encodings where transformers differs: " << differs << "\n";
}

TEST(T5Tokenizer, SpecialTokensInText) {
  ASSERT_FALSE(TokenizerDir().empty());
  const T5Tokenizer tokenizer = Load(32);
  const int64_t pieces = tokenizer.vocab_size() - 100;
  const std::vector<int64_t> ids =
      tokenizer.EncodePieces("</s><pad><unk><extra_id_0><extra_id_99>");
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 0, 2, pieces + 99, pieces}));
  // Out of range or malformed sentinels are text.
  EXPECT_GT(tokenizer.EncodePieces("<extra_id_100>").size(), 1u);
  EXPECT_GT(tokenizer.EncodePieces("<extra_id_07>").size(), 1u);
}

TEST(T5Tokenizer, EmptyPromptIsEosThenPadding) {
  ASSERT_FALSE(TokenizerDir().empty());
  const TokenIds ids = Load(4).Encode("");
  EXPECT_EQ(ids.ids, (std::vector<int64_t>{1, 0, 0, 0}));
  EXPECT_EQ(ids.attention_mask, (std::vector<int64_t>{1, 0, 0, 0}));
  EXPECT_EQ(ids.length, 1);
}

TEST(T5Tokenizer, InvalidUtf8IsAnError) {
  ASSERT_FALSE(TokenizerDir().empty());
  try {
    Load(16).Encode("caf\xc3");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kInvalidInput);
  }
}

TEST(T5Tokenizer, FileErrors) {
  try {
    T5Tokenizer::Load("/nonexistent/spiece.model");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kFileNotFound);
  }
  const std::string corrupt = testing::TempDir() + std::to_string(getpid()) + "_t5_corrupt.model";
  std::ofstream(corrupt, std::ios::binary) << "not a sentencepiece model";
  try {
    T5Tokenizer::Load(corrupt);
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kCorruptFile);
    EXPECT_NE(std::string(e.what()).find(corrupt), std::string::npos) << e.what();
  }
  std::remove(corrupt.c_str());
  ASSERT_FALSE(TokenizerDir().empty());
  EXPECT_THROW(Load(0), std::invalid_argument);
}

}  // namespace
}  // namespace grat::tokenizer
