// Data tables behind grat/tokenizer/unicode.h (internal; generated into unicode_tables.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace grat::tokenizer::unicode_data {

struct Range {
  char32_t first, last;
};
struct LowerMapping {
  char32_t cp;
  char32_t lower[3];  // 0-terminated when shorter
};
struct ClassRange {
  char32_t first, last;
  uint8_t ccc;  // canonical combining class (kGraphemeProps: packed properties)
};
struct Decomposition {
  char32_t cp, first, second;  // second == 0: singleton
  uint8_t composes;            // 1: primary composite (recomposed by NFC)
};

extern const Range kLetters[];
extern const std::size_t kLettersSize;
extern const Range kNumbers[];
extern const std::size_t kNumbersSize;
extern const LowerMapping kLowercase[];
extern const std::size_t kLowercaseSize;
extern const ClassRange kCombiningClass[];
extern const std::size_t kCombiningClassSize;
extern const Decomposition kDecomposition[];
extern const std::size_t kDecompositionSize;
// Grapheme-break properties: Grapheme_Cluster_Break (bits 0-3, unicode::GraphemeBreak order),
// Extended_Pictographic (bit 4), Indic_Conjunct_Break (bits 5-6: none/consonant/extend/linker).
extern const ClassRange kGraphemeProps[];
extern const std::size_t kGraphemePropsSize;

}  // namespace grat::tokenizer::unicode_data
