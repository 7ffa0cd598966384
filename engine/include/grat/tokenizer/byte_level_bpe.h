// ByteLevelBpe: GPT-2/CLIP byte-level BPE from `vocab.json` + `merges.txt`: a word's UTF-8
// bytes become printable symbols (GPT-2's bytes_to_unicode), the last carries the end-of-word
// suffix `</w>`, then the lowest-ranked merge is applied everywhere until none applies.
// Immutable after Load: thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace grat::tokenizer {

class ByteLevelBpe {
 public:
  // Throws TokenizerError: kFileNotFound for a missing file, kCorruptFile for bad JSON, a
  // malformed merges line, or a merge whose parts or result are not in the vocabulary.
  static ByteLevelBpe Load(const std::string& vocab_json_path, const std::string& merges_path);
  static ByteLevelBpe FromStrings(std::string_view vocab_json, std::string_view merges_txt);

  // Appends the ids of one pre-tokenized word (raw UTF-8); symbols missing from the vocabulary
  // (impossible with a complete byte alphabet) become `unk_id`.
  void EncodeWord(std::string_view word, int64_t unk_id, std::vector<int64_t>* ids) const;

  // The BPE symbols of a word (for tests and debugging).
  std::vector<std::string> Split(std::string_view word) const;

  int64_t TokenId(const std::string& token) const;  // -1 when absent
  std::size_t vocab_size() const { return vocab_.size(); }
  std::size_t num_merges() const { return ranks_.size(); }

 private:
  ByteLevelBpe();

  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int> ranks_;  // "left right" -> rank
  std::array<std::string, 256> byte_symbols_;
};

}  // namespace grat::tokenizer
