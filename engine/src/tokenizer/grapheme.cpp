// Extended grapheme cluster boundaries (UAX #29 rules GB3-GB13, GB9c included).
#include <algorithm>

#include "grat/tokenizer/unicode.h"
#include "unicode_tables.h"

namespace grat::tokenizer::unicode {
namespace {

enum GraphemeBreak : uint8_t {
  kOther,
  kCR,
  kLF,
  kControl,
  kExtend,
  kZWJ,
  kRegionalIndicator,
  kPrepend,
  kSpacingMark,
  kL,
  kV,
  kT,
  kLV,
  kLVT
};
enum Incb : uint8_t { kIncbNone, kIncbConsonant, kIncbExtend, kIncbLinker };

struct Props {
  GraphemeBreak gcb;
  bool pictographic;
  Incb incb;
};

Props PropsOf(char32_t cp) {
  const auto* begin = unicode_data::kGraphemeProps;
  const auto* end = begin + unicode_data::kGraphemePropsSize;
  const auto* it = std::upper_bound(
      begin, end, cp, [](char32_t c, const unicode_data::ClassRange& r) { return c < r.first; });
  const uint8_t packed = (it != begin && cp <= (it - 1)->last) ? (it - 1)->ccc : 0;
  return {static_cast<GraphemeBreak>(packed & 0xF), (packed & 0x10) != 0,
          static_cast<Incb>((packed >> 5) & 3)};
}

bool IsControlLike(GraphemeBreak b) { return b == kCR || b == kLF || b == kControl; }

}  // namespace

std::vector<std::size_t> GraphemeClusterEnds(const std::vector<char32_t>& text) {
  std::vector<std::size_t> ends;
  if (text.empty()) return ends;
  Props prev = PropsOf(text[0]);
  // State for GB11 (pictographic Extend* ZWJ), GB12/13 (regional indicator pairs) and GB9c
  // (consonant [extend|linker]* linker [extend|linker]*), all about the run before the boundary.
  bool pict_run = prev.pictographic;
  int ri_run = prev.gcb == kRegionalIndicator ? 1 : 0;
  bool conjunct_run = prev.incb == kIncbConsonant;
  bool conjunct_linker = false;
  for (std::size_t i = 1; i < text.size(); ++i) {
    const Props cur = PropsOf(text[i]);
    bool join;
    if (prev.gcb == kCR && cur.gcb == kLF) {
      join = true;  // GB3
    } else if (IsControlLike(prev.gcb) || IsControlLike(cur.gcb)) {
      join = false;  // GB4, GB5
    } else if (prev.gcb == kL &&
               (cur.gcb == kL || cur.gcb == kV || cur.gcb == kLV || cur.gcb == kLVT)) {
      join = true;  // GB6
    } else if ((prev.gcb == kLV || prev.gcb == kV) && (cur.gcb == kV || cur.gcb == kT)) {
      join = true;  // GB7
    } else if ((prev.gcb == kLVT || prev.gcb == kT) && cur.gcb == kT) {
      join = true;  // GB8
    } else if (cur.gcb == kExtend || cur.gcb == kZWJ || cur.gcb == kSpacingMark ||
               prev.gcb == kPrepend) {
      join = true;  // GB9, GB9a, GB9b
    } else if (cur.incb == kIncbConsonant && conjunct_run && conjunct_linker) {
      join = true;  // GB9c
    } else if (prev.gcb == kZWJ && pict_run && cur.pictographic) {
      join = true;  // GB11
    } else if (prev.gcb == kRegionalIndicator && cur.gcb == kRegionalIndicator) {
      join = ri_run % 2 == 1;  // GB12, GB13
    } else {
      join = false;  // GB999
    }
    if (!join) ends.push_back(i);
    // Update the run states with `cur`.
    if (cur.pictographic) {
      pict_run = true;
    } else if (!(pict_run && (cur.gcb == kExtend || cur.gcb == kZWJ) && prev.gcb != kZWJ)) {
      pict_run = false;
    }
    ri_run = cur.gcb == kRegionalIndicator ? ri_run + 1 : 0;
    if (cur.incb == kIncbConsonant) {
      conjunct_run = true;
      conjunct_linker = false;
    } else if (conjunct_run && cur.incb == kIncbLinker) {
      conjunct_linker = true;
    } else if (!(conjunct_run && cur.incb == kIncbExtend)) {
      conjunct_run = false;
      conjunct_linker = false;
    }
    prev = cur;
  }
  ends.push_back(text.size());
  return ends;
}

}  // namespace grat::tokenizer::unicode
