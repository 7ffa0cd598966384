#include "grat/tokenizer/utf8.h"

#include <gtest/gtest.h>

#include "grat/tokenizer/tokenizer_error.h"

namespace grat::tokenizer {
namespace {

TokenizerError::Code ErrorOf(std::string_view text) {
  try {
    ValidateUtf8(text);
  } catch (const TokenizerError& e) {
    return e.code();
  }
  ADD_FAILURE() << "no error for " << testing::PrintToString(std::string(text));
  return TokenizerError::Code::kCorruptFile;
}

TEST(Utf8, AcceptsWellFormedText) {
  EXPECT_NO_THROW(ValidateUtf8(""));
  EXPECT_NO_THROW(ValidateUtf8("plain ascii"));
  EXPECT_NO_THROW(ValidateUtf8("caf\xc3\xa9 \xe6\x9d\xb1 \xf0\x9f\x98\x80"));
  EXPECT_NO_THROW(ValidateUtf8(std::string("nul\0inside", 10)));
  EXPECT_NO_THROW(ValidateUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
}

TEST(Utf8, RejectsMalformedTextWithOffset) {
  for (const char* bad : {"\x80", "a\xc3", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80",
                          "\xf4\x90\x80\x80", "\xff", "\xe6\x9d"}) {
    EXPECT_EQ(ErrorOf(bad), TokenizerError::Code::kInvalidInput) << bad;
  }
  try {
    ValidateUtf8("abc\xff");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
}

TEST(Utf8, DecodeEncodeRoundTrip) {
  const std::string text = "a\xc3\xa9\xe6\x9d\xb1\xf0\x9f\x98\x80";
  const std::vector<char32_t> cps = DecodeUtf8(text);
  EXPECT_EQ(cps, (std::vector<char32_t>{U'a', 0xE9, 0x6771, 0x1F600}));
  EXPECT_EQ(EncodeUtf8(cps), text);
}

TEST(Utf8, MissingFileIsFileNotFound) {
  try {
    ReadFileOrThrow("/nonexistent/spiece.model", "sentencepiece model");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_EQ(e.code(), TokenizerError::Code::kFileNotFound);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/spiece.model"), std::string::npos);
  }
}

}  // namespace
}  // namespace grat::tokenizer
