// Llama 3's pre-tokenization pattern, matched by hand:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
//   |\s*[\r\n]+|\s+(?!\S)|\s+
// `tokenizers` runs it with Split(behavior Isolated): the matches, in order, plus the text
// between them as pieces of their own. Every code point starts a match of some alternative
// (letters: the 2nd, numbers: the 3rd, white space: the last, anything else: the 4th), so the
// matches tile the text and each one starts where the previous ended; at a position the regex
// engine takes the first alternative that matches there, each with its greedy/backtracking
// length, which MatchLength reproduces.
#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "grat/tokenizer/llama_tokenizer.h"
#include "grat/tokenizer/unicode.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

enum class Kind : unsigned char { kLetter, kNumber, kSpace, kOther };  // \p{L}, \p{N}, \s, rest

Kind KindOf(char32_t cp) {
  if (unicode::IsLetter(cp)) return Kind::kLetter;
  if (unicode::IsNumber(cp)) return Kind::kNumber;
  if (unicode::IsWhitespace(cp)) return Kind::kSpace;
  return Kind::kOther;
}

bool IsCrLf(char32_t cp) { return cp == U'\r' || cp == U'\n'; }

// Simple case folding of the contraction letters: ASCII case, and U+017F LATIN SMALL LETTER
// LONG S, which folds to 's' (checked against `tokenizers` over every code point).
char32_t FoldContraction(char32_t cp) {
  if (cp >= U'A' && cp <= U'Z') return cp + 32;
  if (cp == 0x17F) return U's';
  return cp;
}

// Length in code points of the pattern's match at text[i] (i < size: never 0).
std::size_t MatchLength(const std::vector<char32_t>& text, const std::vector<Kind>& kinds,
                        std::size_t i) {
  const std::size_t n = text.size();
  const auto run = [&](std::size_t from, Kind kind) {
    std::size_t end = from;
    while (end < n && kinds[end] == kind) ++end;
    return end;
  };
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (text[i] == U'\'' && i + 1 < n) {
    const char32_t a = FoldContraction(text[i + 1]);
    const char32_t b = i + 2 < n ? FoldContraction(text[i + 2]) : 0;
    if (a == U's' || a == U't' || a == U'm' || a == U'd') return 2;
    if ((a == U'r' || a == U'v') && b == U'e') return 3;
    if (a == U'l' && b == U'l') return 3;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (kinds[i] == Kind::kLetter) return run(i, Kind::kLetter) - i;
  if (kinds[i] != Kind::kNumber && !IsCrLf(text[i]) && i + 1 < n && kinds[i + 1] == Kind::kLetter) {
    return run(i + 1, Kind::kLetter) - i;
  }
  // \p{N}{1,3}
  if (kinds[i] == Kind::kNumber) {
    const std::size_t end = run(i, Kind::kNumber);
    return end - i < 3 ? end - i : 3;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  std::size_t start = i;
  if (text[i] == U' ' && i + 1 < n && kinds[i + 1] == Kind::kOther) ++start;
  if (kinds[start] == Kind::kOther) {
    std::size_t end = run(start, Kind::kOther);
    while (end < n && IsCrLf(text[end])) ++end;
    return end - i;
  }
  // White space from here on (every other kind matched above).
  const std::size_t end = run(i, Kind::kSpace);
  // \s*[\r\n]+ : \s* backtracks to the last CR/LF of the run, [\r\n]+ takes it.
  for (std::size_t k = end; k > i; --k) {
    if (IsCrLf(text[k - 1])) return k - i;
  }
  // \s+(?!\S) : the whole run at the end of the text, else all but its last character (which
  // then starts the next piece, e.g. " word"); \s+ : a single space before a non-space.
  if (end == n || end - i == 1) return end - i;
  return end - 1 - i;
}

}  // namespace

std::vector<std::string> LlamaTokenizer::PreTokenize(std::string_view text) {
  const std::vector<char32_t> cps = DecodeUtf8(text);
  std::vector<std::size_t> offsets;  // byte offset of each code point (as DecodeUtf8 steps), end
  offsets.reserve(cps.size() + 1);
  for (std::size_t pos = 0; pos < text.size();) {
    offsets.push_back(pos);
    pos += std::min(Utf8SequenceLength(static_cast<unsigned char>(text[pos])), text.size() - pos);
  }
  offsets.push_back(text.size());
  std::vector<Kind> kinds(cps.size());
  for (std::size_t k = 0; k < cps.size(); ++k) kinds[k] = KindOf(cps[k]);

  std::vector<std::string> pieces;
  for (std::size_t i = 0; i < cps.size();) {
    const std::size_t end = i + MatchLength(cps, kinds, i);
    pieces.emplace_back(text.substr(offsets[i], offsets[end] - offsets[i]));
    i = end;
  }
  return pieces;
}

}  // namespace grat::tokenizer
