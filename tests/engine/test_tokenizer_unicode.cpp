#include "grat/tokenizer/unicode.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer::unicode {
namespace {

std::string NfcOf(const std::string& text) { return EncodeUtf8(Nfc(DecodeUtf8(text))); }

TEST(Unicode, Categories) {
  EXPECT_TRUE(IsLetter(U'a'));
  EXPECT_TRUE(IsLetter(0x6771));   // CJK
  EXPECT_TRUE(IsLetter(0x05D0));   // Hebrew alef
  EXPECT_FALSE(IsLetter(0x0301));  // combining acute (Mn)
  EXPECT_FALSE(IsLetter(U'1'));
  EXPECT_TRUE(IsNumber(U'7'));
  EXPECT_TRUE(IsNumber(0x00BD));  // ½ (No)
  EXPECT_TRUE(IsNumber(0x2165));  // Ⅵ (Nl)
  EXPECT_FALSE(IsNumber(U'x'));
  for (char32_t ws : {0x09, 0x0A, 0x0D, 0x20, 0x85, 0xA0, 0x2003, 0x2028, 0x3000}) {
    EXPECT_TRUE(IsWhitespace(ws)) << static_cast<uint32_t>(ws);
  }
  EXPECT_FALSE(IsWhitespace(0x200B));  // zero width space is not White_Space
}

TEST(Unicode, Lowercase) {
  std::vector<char32_t> out;
  for (char32_t cp : {U'A', char32_t{0xC9}, char32_t{0x3A3}, char32_t{0x130}, char32_t{0x1E9E}}) {
    AppendLower(cp, &out);
  }
  EXPECT_EQ(out, (std::vector<char32_t>{U'a', 0xE9, 0x3C3, U'i', 0x307, 0xDF}));
}

TEST(Unicode, NfcComposesAndReorders) {
  EXPECT_EQ(NfcOf("e\xcc\x81"), "\xc3\xa9");              // e + acute -> é
  EXPECT_EQ(NfcOf("a\xcc\x82\xcc\xa3"), "\xe1\xba\xad");  // a + ^ + dot below -> ậ
  EXPECT_EQ(NfcOf("a\xcc\xa3\xcc\x82"), "\xe1\xba\xad");  // other order, same result
  EXPECT_EQ(NfcOf("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), "\xea\xb0\x81");  // Hangul L V T
  EXPECT_EQ(NfcOf("\xe2\x84\xab"), "\xc3\x85");                              // Angstrom sign -> Å
  EXPECT_EQ(NfcOf("\xef\xbc\xa1"), "\xef\xbc\xa1");              // full-width A: not NFC's job
  EXPECT_EQ(NfcOf("\xe0\xa5\x98"), "\xe0\xa4\x95\xe0\xa4\xbc");  // excluded composite stays split
}

TEST(Unicode, GraphemeClusters) {
  const auto ends = [](const std::string& text) { return GraphemeClusterEnds(DecodeUtf8(text)); };
  using Ends = std::vector<std::size_t>;
  EXPECT_EQ(ends(""), Ends{});
  EXPECT_EQ(ends("ab"), (Ends{1, 2}));
  EXPECT_EQ(ends("e\xcc\x81x"), (Ends{2, 3}));  // e + combining acute
  EXPECT_EQ(ends("\r\n\n"), (Ends{2, 3}));
  EXPECT_EQ(ends("\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9"), (Ends{3}));  // man ZWJ woman
  EXPECT_EQ(ends("\xf0\x9f\x87\xab\xf0\x9f\x87\xb7\xf0\x9f\x87\xa9"), (Ends{2, 3}));  // RI RI | RI
  EXPECT_EQ(ends("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8"), (Ends{3}));  // Hangul L V T
  EXPECT_EQ(ends("\xe0\xa4\x95\xe0\xa5\x8d\xe0\xa4\xb7"), (Ends{3}));  // ka virama ssa (GB9c)
}

TEST(Unicode, GraphemeClustersMatchTheRegexPackageOnTheCorpus) {
  const char* dir = std::getenv("GRAT_TOKENIZER_DIR");
  ASSERT_NE(dir, nullptr) << "run through ctest (fixture tokenizer_reference_files)";
  const auto expected = nlohmann::json::parse(std::ifstream(std::string(dir) + "/expected.json"));
  for (const auto& c : expected["cases"]) {
    const std::string text = c["text"];
    std::vector<std::size_t> want;
    std::size_t end = 0;
    for (std::size_t length : c["grapheme_lengths"].get<std::vector<std::size_t>>()) {
      want.push_back(end += length);
    }
    EXPECT_EQ(GraphemeClusterEnds(DecodeUtf8(text)), want) << text;
  }
}

}  // namespace
}  // namespace grat::tokenizer::unicode
