#include "grat/tokenizer/sentencepiece_normalizer.h"

#include <cstring>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/unicode.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

constexpr std::string_view kSpaceSymbol = "\xe2\x96\x81";  // U+2581

// darts-clone double-array units (see darts.h: DoubleArrayUnit).
inline bool HasLeaf(uint32_t unit) { return ((unit >> 8) & 1) != 0; }
inline uint32_t Value(uint32_t unit) { return unit & ((1U << 31) - 1); }
inline uint32_t Label(uint32_t unit) { return unit & ((1U << 31) | 0xFF); }
inline uint32_t Offset(uint32_t unit) { return (unit >> 10) << ((unit & (1U << 9)) >> 6); }

constexpr std::size_t kNoChild = static_cast<std::size_t>(-1);

// One transition of darts-clone's traversal: the child of `node` on `byte`, or kNoChild.
// `*leaf`: a key ends at the child (its value is then trie[child]).
std::size_t Child(const std::vector<uint32_t>& trie, std::size_t node, unsigned char byte,
                  bool* leaf) {
  node ^= byte;
  if (node >= trie.size()) return kNoChild;
  const uint32_t unit = trie[node];
  if (Label(unit) != byte) return kNoChild;
  node ^= Offset(unit);
  if (node >= trie.size()) return kNoChild;
  *leaf = HasLeaf(unit);
  return node;
}

}  // namespace

SentencePieceNormalizer::SentencePieceNormalizer(const SentencePieceModel& model)
    : add_dummy_prefix_(model.add_dummy_prefix),
      remove_extra_whitespaces_(model.remove_extra_whitespaces),
      escape_whitespaces_(model.escape_whitespaces),
      treat_whitespace_as_suffix_(model.treat_whitespace_as_suffix) {
  const std::string& blob = model.precompiled_charsmap;
  if (blob.empty()) return;
  const auto fail = [](const std::string& why) {
    throw TokenizerError(TokenizerError::Code::kCorruptFile,
                         "sentencepiece model: precompiled_charsmap " + why);
  };
  if (blob.size() <= 4) fail("is too short");
  uint32_t trie_size = 0;
  for (int k = 0; k < 4; ++k) {
    trie_size |= static_cast<uint32_t>(static_cast<unsigned char>(blob[k])) << (8 * k);
  }
  if (trie_size >= blob.size() - 4 || trie_size % 4 != 0 || trie_size == 0) {
    fail("has a trie size (" + std::to_string(trie_size) + ") that does not fit the blob");
  }
  trie_.resize(trie_size / 4);
  std::memcpy(trie_.data(), blob.data() + 4, trie_size);  // little-endian host
  replacements_ = blob.substr(4 + trie_size);
  if (replacements_.empty() || replacements_.back() != '\0') {
    fail("replacement strings are not NUL-terminated");
  }
}

std::pair<std::string_view, std::size_t> SentencePieceNormalizer::NormalizePrefix(
    std::string_view input) const {
  if (input.empty()) return {input, 0};
  std::size_t longest_length = 0;
  uint32_t longest_value = 0;
  if (!trie_.empty()) {
    // commonPrefixSearch of darts-clone, keeping the longest match.
    std::size_t node = Offset(trie_[0]);
    for (std::size_t i = 0; i < input.size(); ++i) {
      bool leaf = false;
      node = Child(trie_, node, static_cast<unsigned char>(input[i]), &leaf);
      if (node == kNoChild) break;
      if (leaf) {
        longest_length = i + 1;
        longest_value = Value(trie_[node]);
      }
    }
  }
  if (longest_length == 0 || longest_value >= replacements_.size()) {
    const std::size_t length =
        std::min(Utf8SequenceLength(static_cast<unsigned char>(input[0])), input.size());
    return {input.substr(0, length), length};
  }
  const char* replacement = replacements_.data() + longest_value;
  return {std::string_view(replacement, std::strlen(replacement)), longest_length};
}

std::string SentencePieceNormalizer::Normalize(std::string_view input) const {
  std::string normalized;
  normalized.reserve(input.size() * 3);
  if (remove_extra_whitespaces_) {
    while (!input.empty()) {
      const auto [piece, consumed] = NormalizePrefix(input);
      if (piece != " ") break;
      input.remove_prefix(consumed);
    }
  }
  if (input.empty()) return normalized;
  const auto add_space = [&] {
    if (escape_whitespaces_) {
      normalized.append(kSpaceSymbol);
    } else {
      normalized.push_back(' ');
    }
  };
  if (!treat_whitespace_as_suffix_ && add_dummy_prefix_) add_space();
  bool is_prev_space = remove_extra_whitespaces_;
  while (!input.empty()) {
    auto [piece, consumed] = NormalizePrefix(input);
    while (is_prev_space && !piece.empty() && piece.front() == ' ') piece.remove_prefix(1);
    if (!piece.empty()) {
      for (char c : piece) {
        if (escape_whitespaces_ && c == ' ') {
          normalized.append(kSpaceSymbol);
        } else {
          normalized.push_back(c);
        }
      }
      is_prev_space = piece.back() == ' ';
    }
    input.remove_prefix(consumed);
    if (!remove_extra_whitespaces_) is_prev_space = false;
  }
  if (remove_extra_whitespaces_) {
    const std::string_view space = escape_whitespaces_ ? kSpaceSymbol : std::string_view(" ");
    while (normalized.size() >= space.size() &&
           std::string_view(normalized).substr(normalized.size() - space.size()) == space) {
      normalized.resize(normalized.size() - space.size());
    }
  }
  if (treat_whitespace_as_suffix_ && add_dummy_prefix_) add_space();
  return normalized;
}

const char* SentencePieceNormalizer::ShortestRule(std::string_view key) const {
  if (trie_.empty()) return nullptr;
  std::size_t node = Offset(trie_[0]);
  for (char c : key) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte == 0) break;
    bool leaf = false;
    node = Child(trie_, node, byte, &leaf);
    if (node == kNoChild) break;
    if (leaf) {
      const uint32_t value = Value(trie_[node]);
      return value < replacements_.size() ? replacements_.data() + value : nullptr;
    }
  }
  return nullptr;
}

std::string SentencePieceNormalizer::NormalizeLikeTransformers(std::string_view input) const {
  std::string out;
  out.reserve(input.size() * 2);
  const std::vector<char32_t> cps = DecodeUtf8(input);
  std::size_t cp_index = 0;
  std::size_t byte = 0;
  for (std::size_t end : unicode::GraphemeClusterEnds(cps)) {
    const std::size_t cluster_begin = byte;
    for (; cp_index < end; ++cp_index) {
      byte += Utf8SequenceLength(static_cast<unsigned char>(input[byte]));
    }
    const std::string_view g = input.substr(cluster_begin, byte - cluster_begin);
    if (g.size() < 6) {
      if (const char* rule = ShortestRule(g)) {
        out.append(rule);
        continue;
      }
    }
    for (std::size_t k = 0; k < g.size();) {
      const std::size_t len = Utf8SequenceLength(static_cast<unsigned char>(g[k]));
      const std::string_view ch = g.substr(k, len);
      const char* rule = ShortestRule(ch);
      if (rule != nullptr) {
        out.append(rule);
      } else {
        out.append(ch);
      }
      k += len;
    }
  }
  return out;
}

}  // namespace grat::tokenizer
