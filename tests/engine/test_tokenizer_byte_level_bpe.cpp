#include "grat/tokenizer/byte_level_bpe.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/tokenizer/tokenizer_error.h"
#include "tokenizer_test_data.h"

namespace grat::tokenizer {
namespace {

using test_data::TokenizerDir;

const char kVocab[] =
    R"({"h": 0, "e": 1, "l": 2, "o": 3, "o</w>": 4, "l</w>": 5, "he": 6, "ll": 7, "hell": 8,
        "hello</w>": 9, "\u0120</w>": 10, "<|endoftext|>": 11})";
const char kMerges[] = "#version: 0.2\nh e\nl l\nhe ll\nhell o</w>\n";

TokenizerError::Code ErrorOf(const std::string& vocab, const std::string& merges) {
  try {
    ByteLevelBpe::FromStrings(vocab, merges);
  } catch (const TokenizerError& e) {
    return e.code();
  }
  ADD_FAILURE() << "accepted vocab " << vocab << " merges " << merges;
  return TokenizerError::Code::kUnsupported;
}

TEST(ByteLevelBpe, MergesByRank) {
  const ByteLevelBpe bpe = ByteLevelBpe::FromStrings(kVocab, kMerges);
  EXPECT_EQ(bpe.num_merges(), 4u);
  EXPECT_EQ(bpe.Split("hello"), (std::vector<std::string>{"hello</w>"}));
  EXPECT_EQ(bpe.Split("hel"), (std::vector<std::string>{"he", "l</w>"}));
  EXPECT_EQ(bpe.Split("llo"), (std::vector<std::string>{"ll", "o</w>"}));
  EXPECT_EQ(bpe.Split(""), (std::vector<std::string>{}));
  std::vector<int64_t> ids;
  bpe.EncodeWord("hello", 11, &ids);
  bpe.EncodeWord("hex", 11, &ids);  // "x</w>" is not in this vocabulary
  EXPECT_EQ(ids, (std::vector<int64_t>{9, 6, 11}));
}

TEST(ByteLevelBpe, BytesBecomePrintableSymbols) {
  const ByteLevelBpe bpe = ByteLevelBpe::FromStrings(kVocab, kMerges);
  EXPECT_EQ(bpe.Split(" "), (std::vector<std::string>{"\xc4\xa0</w>"}));                     // Ġ
  EXPECT_EQ(bpe.Split("\xc3\xa9"), (std::vector<std::string>{"\xc3\x83", "\xc2\xa9</w>"}));  // é
  EXPECT_EQ(bpe.Split(std::string(1, '\0')), (std::vector<std::string>{"\xc4\x80</w>"}));    // Ā
}

TEST(ByteLevelBpe, CorruptFiles) {
  const auto corrupt = TokenizerError::Code::kCorruptFile;
  EXPECT_EQ(ErrorOf("{not json", kMerges), corrupt);
  EXPECT_EQ(ErrorOf("[1, 2]", kMerges), corrupt);
  EXPECT_EQ(ErrorOf(R"({"a": "zero"})", ""), corrupt);
  EXPECT_EQ(ErrorOf(kVocab, "#version: 0.2\nh e x\n"), corrupt);
  EXPECT_EQ(ErrorOf(kVocab, "#version: 0.2\nhe\n"), corrupt);
  EXPECT_EQ(ErrorOf(kVocab, "#version: 0.2\nh q\n"), corrupt);  // part not in vocab
  EXPECT_EQ(ErrorOf(kVocab, "#version: 0.2\ne h\n"), corrupt);  // result not in vocab
}

TEST(ByteLevelBpe, MissingFiles) {
  try {
    ByteLevelBpe::Load("/nonexistent/vocab.json", "/nonexistent/merges.txt");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kFileNotFound);
  }
}

TEST(ByteLevelBpe, LoadsTheTinyClipFiles) {
  ASSERT_FALSE(TokenizerDir().empty()) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = nlohmann::json::parse(std::ifstream(TokenizerDir() + "/expected.json"));
  const ByteLevelBpe bpe =
      ByteLevelBpe::Load(TokenizerDir() + "/clip/vocab.json", TokenizerDir() + "/clip/merges.txt");
  EXPECT_EQ(bpe.vocab_size(), expected["clip_vocab_size"].get<std::size_t>());
  EXPECT_EQ(bpe.TokenId("<|startoftext|>"), expected["clip_bos_id"].get<int64_t>());
  EXPECT_EQ(bpe.TokenId("!"), 0);
  EXPECT_EQ(bpe.TokenId("!</w>"), 256);
}

}  // namespace
}  // namespace grat::tokenizer
