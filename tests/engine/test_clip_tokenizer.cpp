#include "grat/tokenizer/clip_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::Expected;
using test_data::TokenizerDir;

ClipTokenizer Load(int max_length) {
  ClipTokenizer::Options options;
  options.max_length = max_length;
  return ClipTokenizer::Load(TokenizerDir() + "/clip/vocab.json",
                             TokenizerDir() + "/clip/merges.txt", options);
}

TEST(ClipTokenizer, MatchesTransformers) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = Expected();
  for (int max_length : expected["clip_max_lengths"].get<std::vector<int>>()) {
    const ClipTokenizer tokenizer = Load(max_length);
    EXPECT_EQ(tokenizer.bos_id(), expected["clip_bos_id"].get<int64_t>());
    EXPECT_EQ(tokenizer.eos_id(), expected["clip_eos_id"].get<int64_t>());
    EXPECT_EQ(tokenizer.pad_id(), tokenizer.eos_id());
    for (const auto& c : expected["cases"]) {
      const std::string text = c["text"];
      const auto& ref = c["clip"][std::to_string(max_length)];
      const TokenIds got = tokenizer.Encode(text);
      EXPECT_EQ(got.ids, ref["ids"].get<std::vector<int64_t>>()) << text;
      EXPECT_EQ(got.attention_mask, ref["mask"].get<std::vector<int64_t>>()) << text;
    }
  }
}

TEST(ClipTokenizer, PreTokenizeMatchesTokenizers) {
  ASSERT_FALSE(TokenizerDir().empty());
  for (const auto& c : Expected()["cases"]) {
    const std::string text = c["text"];
    EXPECT_EQ(ClipTokenizer::PreTokenize(text), c["clip_words"].get<std::vector<std::string>>())
        << text;
  }
}

TEST(ClipTokenizer, TruncationKeepsEndToken) {
  ASSERT_FALSE(TokenizerDir().empty());
  const ClipTokenizer tokenizer = Load(5);
  const TokenIds ids = tokenizer.Encode("one two three four five six");
  ASSERT_EQ(ids.ids.size(), 5u);
  EXPECT_EQ(ids.ids.front(), tokenizer.bos_id());
  EXPECT_EQ(ids.ids.back(), tokenizer.eos_id());
  EXPECT_EQ(ids.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1}));
  const TokenIds empty = tokenizer.Encode("");
  EXPECT_EQ(empty.ids,
            (std::vector<int64_t>{tokenizer.bos_id(), tokenizer.eos_id(), tokenizer.pad_id(),
                                  tokenizer.pad_id(), tokenizer.pad_id()}));
  EXPECT_EQ(empty.length, 2);
  EXPECT_THROW(Load(1), std::invalid_argument);
}

TEST(ClipTokenizer, Errors) {
  ASSERT_FALSE(TokenizerDir().empty());
  try {
    Load(77).Encode("bad \xe6\x9d utf-8");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kInvalidInput);
  }
  try {
    ClipTokenizer::Load(TokenizerDir() + "/clip/vocab.json", "/nonexistent/merges.txt");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kFileNotFound);
  }
  const std::string vocab = testing::TempDir() + std::to_string(getpid()) + "_clip_vocab.json";
  const std::string merges = testing::TempDir() + std::to_string(getpid()) + "_clip_merges.txt";
  std::ofstream(vocab) << R"({"a": 0, "a</w>": 1})";
  std::ofstream(merges) << "#version: 0.2\n";
  try {
    ClipTokenizer::Load(vocab, merges);
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kCorruptFile);
    EXPECT_NE(std::string(e.what()).find("<|startoftext|>"), std::string::npos) << e.what();
  }
  std::remove(vocab.c_str());
  std::remove(merges.c_str());
}

}  // namespace
}  // namespace grat::tokenizer
