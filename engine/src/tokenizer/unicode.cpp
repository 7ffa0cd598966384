#include "grat/tokenizer/unicode.h"

#include <algorithm>
#include <unordered_map>

#include "unicode_tables.h"

namespace grat::tokenizer::unicode {
namespace {

namespace data = unicode_data;

bool InRanges(const data::Range* ranges, std::size_t size, char32_t cp) {
  const data::Range* end = ranges + size;
  const data::Range* it = std::upper_bound(
      ranges, end, cp, [](char32_t c, const data::Range& r) { return c < r.first; });
  return it != ranges && cp <= (it - 1)->last;
}

uint8_t CombiningClass(char32_t cp) {
  const data::ClassRange* begin = data::kCombiningClass;
  const data::ClassRange* end = begin + data::kCombiningClassSize;
  const data::ClassRange* it = std::upper_bound(
      begin, end, cp, [](char32_t c, const data::ClassRange& r) { return c < r.first; });
  return (it != begin && cp <= (it - 1)->last) ? (it - 1)->ccc : 0;
}

const data::Decomposition* FindDecomposition(char32_t cp) {
  const data::Decomposition* begin = data::kDecomposition;
  const data::Decomposition* end = begin + data::kDecompositionSize;
  const data::Decomposition* it = std::lower_bound(
      begin, end, cp, [](const data::Decomposition& d, char32_t c) { return d.cp < c; });
  return (it != end && it->cp == cp) ? it : nullptr;
}

// Hangul syllables (Unicode 3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

void Decompose(char32_t cp, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  const data::Decomposition* d = FindDecomposition(cp);
  if (d == nullptr) {
    out->push_back(cp);
    return;
  }
  Decompose(d->first, out);
  if (d->second != 0) Decompose(d->second, out);
}

const std::unordered_map<uint64_t, char32_t>& CompositionTable() {
  static const auto* table = [] {
    auto* t = new std::unordered_map<uint64_t, char32_t>();
    for (std::size_t k = 0; k < data::kDecompositionSize; ++k) {
      const data::Decomposition& d = data::kDecomposition[k];
      if (d.composes) (*t)[(static_cast<uint64_t>(d.first) << 32) | d.second] = d.cp;
    }
    return t;
  }();
  return *table;
}

char32_t Compose(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto& table = CompositionTable();
  const auto it = table.find((static_cast<uint64_t>(a) << 32) | b);
  return it == table.end() ? 0 : it->second;
}

}  // namespace

bool IsLetter(char32_t cp) { return InRanges(data::kLetters, data::kLettersSize, cp); }

bool IsNumber(char32_t cp) { return InRanges(data::kNumbers, data::kNumbersSize, cp); }

bool IsWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

void AppendLower(char32_t cp, std::vector<char32_t>* out) {
  if (cp < 0x80) {
    out->push_back((cp >= 'A' && cp <= 'Z') ? cp + 32 : cp);
    return;
  }
  const data::LowerMapping* begin = data::kLowercase;
  const data::LowerMapping* end = begin + data::kLowercaseSize;
  const data::LowerMapping* it = std::lower_bound(
      begin, end, cp, [](const data::LowerMapping& m, char32_t c) { return m.cp < c; });
  if (it == end || it->cp != cp) {
    out->push_back(cp);
    return;
  }
  for (char32_t c : it->lower) {
    if (c == 0) break;
    out->push_back(c);
  }
}

std::vector<char32_t> Nfc(const std::vector<char32_t>& text) {
  // Canonical decomposition.
  std::vector<char32_t> d;
  d.reserve(text.size());
  for (char32_t cp : text) Decompose(cp, &d);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (std::size_t i = 0; i < d.size();) {
    if (CombiningClass(d[i]) == 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < d.size() && CombiningClass(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j,
                     [](char32_t a, char32_t b) { return CombiningClass(a) < CombiningClass(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> out;
  out.reserve(d.size());
  std::ptrdiff_t starter = -1;
  int last_class = -1;
  for (char32_t cp : d) {
    const int cls = CombiningClass(cp);
    // Not blocked: nothing between the starter and cp, or only marks of a lower class.
    const bool adjacent = out.size() == static_cast<std::size_t>(starter) + 1;
    if (starter >= 0 && (adjacent || last_class < cls)) {
      const char32_t composed = Compose(out[starter], cp);
      if (composed != 0) {
        out[starter] = composed;
        continue;
      }
    }
    if (cls == 0) {
      starter = static_cast<std::ptrdiff_t>(out.size());
      last_class = 0;
    } else {
      last_class = cls;
    }
    out.push_back(cp);
  }
  return out;
}

}  // namespace grat::tokenizer::unicode
