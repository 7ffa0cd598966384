#include "grat/tokenizer/sentencepiece_normalizer.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::TokenizerDir;

TEST(SentencePieceNormalizer, MatchesSentencepieceOnTheCorpus) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
  const SentencePieceNormalizer normalizer(
      LoadSentencePieceModel(TokenizerDir() + "/t5/spiece.model"));
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(normalizer.Normalize(text), c["spm_normalized"].get<std::string>()) << text;
  }
}

TEST(SentencePieceNormalizer, MatchesTokenizersPrecompiledOnTheCorpus) {
  ASSERT_FALSE(TokenizerDir().empty());
  const auto expected = nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
  const SentencePieceNormalizer normalizer(
      LoadSentencePieceModel(TokenizerDir() + "/t5/spiece.model"));
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(normalizer.NormalizeLikeTransformers(text), c["t5_hf_normalized"].get<std::string>())
        << text;
  }
  // The grapheme quirk: o + circumflex + dot below is one cluster; its shortest rule is "o\u0302".
  EXPECT_EQ(normalizer.NormalizeLikeTransformers("o\xcc\x82\xcc\xa3"), "\xc3\xb4");
  EXPECT_EQ(normalizer.Normalize("o\xcc\x82\xcc\xa3"),
            "\xe2\x96\x81\xc3\xb4\xcc\xa3");  // keeps the mark
}

TEST(SentencePieceNormalizer, CharsmapRules) {
  const SentencePieceNormalizer normalizer(
      LoadSentencePieceModel(TokenizerDir() + "/t5/spiece.model"));
  // NFKC through the precompiled charsmap: full-width A -> A, the fi ligature -> "fi".
  EXPECT_EQ(normalizer.NormalizePrefix("\xef\xbc\xa1x").first, "A");
  EXPECT_EQ(normalizer.NormalizePrefix("\xef\xbc\xa1x").second, 3u);
  EXPECT_EQ(normalizer.NormalizePrefix("\xef\xac\x81").first, "fi");
  EXPECT_EQ(normalizer.NormalizePrefix("zq").first, "z");  // no rule: the character itself
  EXPECT_EQ(normalizer.Normalize("\xef\xbc\xa1\xe3\x80\x80 b"),
            "\xe2\x96\x81"
            "A\xe2\x96\x81"
            "b");
}

TEST(SentencePieceNormalizer, WhitespaceOptions) {
  SentencePieceModel model;
  EXPECT_EQ(SentencePieceNormalizer(model).Normalize("  a  b "),
            "\xe2\x96\x81"
            "a\xe2\x96\x81"
            "b");
  EXPECT_EQ(SentencePieceNormalizer(model).Normalize("   "), "");
  model.remove_extra_whitespaces = false;
  EXPECT_EQ(SentencePieceNormalizer(model).Normalize(" a  b"),
            "\xe2\x96\x81\xe2\x96\x81"
            "a\xe2\x96\x81\xe2\x96\x81"
            "b");
  model.add_dummy_prefix = false;
  model.escape_whitespaces = false;
  EXPECT_EQ(SentencePieceNormalizer(model).Normalize("a  b"), "a  b");
}

TEST(SentencePieceNormalizer, CorruptCharsmap) {
  SentencePieceModel model;
  for (const std::string& blob : {std::string("\x01\x00", 2),
                                  std::string("\xff\xff\xff\x7f"
                                              "abcd",
                                              8),
                                  std::string("\x04\x00\x00\x00"
                                              "abcdxyz",
                                              11)}) {
    model.precompiled_charsmap = blob;
    try {
      SentencePieceNormalizer normalizer(model);
      ADD_FAILURE() << "accepted a corrupt charsmap of " << blob.size() << " bytes";
    } catch (const TokenizerError& e) {
      EXPECT_EQ(e.code(), TokenizerError::Code::kCorruptFile);
    }
  }
}

}  // namespace
}  // namespace grat::tokenizer
