// The Unicode properties CLIP's pre-tokenisation needs (tables generated from Python's
// unicodedata by tests/engine/tokenizer_unicode_tables.py). Stateless, thread-safe.
#pragma once

#include <vector>

namespace grat::tokenizer::unicode {

bool IsLetter(char32_t cp);      // general category L*  (regex \p{L})
bool IsNumber(char32_t cp);      // general category N*  (regex \p{N})
bool IsWhitespace(char32_t cp);  // White_Space property (regex \s)

// Full lowercase mapping of one code point (may be two code points, e.g. U+0130), appended.
void AppendLower(char32_t cp, std::vector<char32_t>* out);

// Unicode canonical composition (NFC).
std::vector<char32_t> Nfc(const std::vector<char32_t>& text);

}  // namespace grat::tokenizer::unicode
