// ByteLevelBpe: byte-level BPE: a word's UTF-8 bytes become printable symbols (GPT-2's
// bytes_to_unicode), then merges join adjacent symbols by rank. Two sources, two merge loops:
//  - CLIP's `vocab.json` + `merges.txt` (Load, FromStrings): the last symbol carries the
//    end-of-word suffix `</w>`, then the lowest-ranked merge is applied everywhere until none
//    applies (GPT-2's loop).
//  - a `tokenizers` BPE model (FromVocabAndMerges: tokenizer.json's vocab and merges, e.g. Llama
//    3's): `tokenizers`' own loop (BPE::merge_word + Word::merge_all): a queue of (rank, position)
//    where merges sharing a result stay interchangeable, optional end-of-word suffix, optionally
//    a word found whole in the vocabulary is that token (ignore_merges), symbols missing from the
//    vocabulary become the unk id or, without one, are dropped.
// Immutable after construction: thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace grat::tokenizer {

class ByteLevelBpe {
 public:
  // Settings of a `tokenizers` BPE model (FromVocabAndMerges).
  struct Options {
    std::string end_of_word_suffix;  // appended to a word's last symbol (model.end_of_word_suffix)
    bool ignore_merges = false;      // a word that is in the vocabulary is that one token
    bool fuse_unk = false;           // consecutive unknown symbols become one unk id
  };

  // Throws TokenizerError: kFileNotFound for a missing file, kCorruptFile for bad JSON, a
  // malformed merges line, or a merge whose parts or result are not in the vocabulary.
  static ByteLevelBpe Load(const std::string& vocab_json_path, const std::string& merges_path);
  static ByteLevelBpe FromStrings(std::string_view vocab_json, std::string_view merges_txt);

  // A `tokenizers` BPE model: its vocabulary and its merges in rank order (a merge listed twice
  // keeps its last rank, as `tokenizers` does). Throws TokenizerError(kCorruptFile) naming the
  // merge whose part or result is not in the vocabulary, or an id outside [0, 2^31).
  static ByteLevelBpe FromVocabAndMerges(
      std::unordered_map<std::string, int64_t> vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, Options options);

  // Appends the ids of one pre-tokenized word (raw UTF-8). Symbols missing from the vocabulary
  // (impossible with a complete byte alphabet) become `unk_id`; for FromVocabAndMerges models
  // they are dropped when unk_id < 0 (a `tokenizers` model without unk_token).
  void EncodeWord(std::string_view word, int64_t unk_id, std::vector<int64_t>* ids) const;

  // The BPE symbols of a word, as byte-level text (for tests and debugging).
  std::vector<std::string> Split(std::string_view word) const;

  int64_t TokenId(const std::string& token) const;  // -1 when absent
  std::size_t vocab_size() const { return vocab_.size(); }
  std::size_t num_merges() const { return tokenizers_model_ ? merges_.size() : ranks_.size(); }

 private:
  struct Symbol {
    int64_t id;
    int prev, next;          // neighbours, -1 at the ends
    std::size_t begin, end;  // bytes of the word it covers
    bool removed;            // merged into its left neighbour
  };

  ByteLevelBpe();
  // `tokenizers`' loop (FromVocabAndMerges models): the word's final symbols, removed excluded.
  std::vector<Symbol> MergeLikeTokenizers(std::string_view word, int64_t unk_id) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "left right" -> rank (merges.txt models)
  std::array<std::string, 256> byte_symbols_;
  bool tokenizers_model_ = false;  // built by FromVocabAndMerges
  Options options_;
  // FromVocabAndMerges models: (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int, int64_t>> merges_;
};

}  // namespace grat::tokenizer
