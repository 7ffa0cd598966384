#include "grat/tokenizer/byte_level_bpe.h"

#include <climits>
#include <nlohmann/json.hpp>
#include <queue>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

constexpr std::string_view kEndOfWord = "</w>";

[[noreturn]] void Corrupt(const std::string& why) {
  throw TokenizerError(TokenizerError::Code::kCorruptFile, why);
}

}  // namespace

ByteLevelBpe::ByteLevelBpe() {
  // GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to U+0100 onwards.
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    std::string symbol;
    AppendUtf8(printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++), &symbol);
    byte_symbols_[b] = symbol;
  }
}

ByteLevelBpe ByteLevelBpe::Load(const std::string& vocab_json_path,
                                const std::string& merges_path) {
  const std::string vocab = ReadFileOrThrow(vocab_json_path, "BPE vocab.json");
  const std::string merges = ReadFileOrThrow(merges_path, "BPE merges.txt");
  try {
    return FromStrings(vocab, merges);
  } catch (const TokenizerError& e) {
    throw TokenizerError(
        e.code(), std::string(e.what()) + " (files " + vocab_json_path + ", " + merges_path + ")");
  }
}

ByteLevelBpe ByteLevelBpe::FromStrings(std::string_view vocab_json, std::string_view merges_txt) {
  ByteLevelBpe bpe;
  nlohmann::json vocab;
  try {
    vocab = nlohmann::json::parse(vocab_json.begin(), vocab_json.end());
  } catch (const nlohmann::json::exception& e) {
    Corrupt(std::string("vocab.json is not valid JSON: ") + e.what());
  }
  if (!vocab.is_object() || vocab.empty()) Corrupt("vocab.json is not a non-empty JSON object");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0) {
      Corrupt("vocab.json: the id of token '" + token + "' is not a non-negative integer");
    }
    bpe.vocab_[token] = id.get<int64_t>();
  }
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < merges_txt.size()) {
    std::size_t end = merges_txt.find('\n', pos);
    if (end == std::string_view::npos) end = merges_txt.size();
    std::string_view line = merges_txt.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version")) continue;
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos) {
      Corrupt("merges.txt line " + std::to_string(line_no) + " is not 'left right'");
    }
    const std::string left(line.substr(0, space));
    const std::string right(line.substr(space + 1));
    if (!bpe.vocab_.count(left) || !bpe.vocab_.count(right) || !bpe.vocab_.count(left + right)) {
      Corrupt("merges.txt line " + std::to_string(line_no) +
              ": a merge part or its result is not in vocab.json");
    }
    bpe.ranks_.emplace(std::string(line), static_cast<int>(bpe.ranks_.size()));
  }
  return bpe;
}

ByteLevelBpe ByteLevelBpe::FromVocabAndMerges(
    std::unordered_map<std::string, int64_t> vocab,
    const std::vector<std::pair<std::string, std::string>>& merges, Options options) {
  ByteLevelBpe bpe;
  bpe.tokenizers_model_ = true;
  bpe.options_ = std::move(options);
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id > INT32_MAX) {
      Corrupt("the id of token '" + token + "' is outside [0, 2^31)");
    }
  }
  bpe.vocab_ = std::move(vocab);
  bpe.merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const auto l = bpe.vocab_.find(left);
    const auto r = bpe.vocab_.find(right);
    const auto merged = bpe.vocab_.find(left + right);
    if (l == bpe.vocab_.end() || r == bpe.vocab_.end() || merged == bpe.vocab_.end()) {
      Corrupt("merge " + std::to_string(rank) + " ('" + left + "' '" + right +
              "'): a part or its result is not in the vocabulary");
    }
    const uint64_t key =
        (static_cast<uint64_t>(l->second) << 32) | static_cast<uint64_t>(r->second);
    bpe.merges_[key] = {static_cast<int>(rank), merged->second};  // the last listing wins
  }
  return bpe;
}

std::vector<ByteLevelBpe::Symbol> ByteLevelBpe::MergeLikeTokenizers(std::string_view word,
                                                                    int64_t unk_id) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  // BPE::merge_word: one symbol per byte (its byte-level character); the last one carries the
  // suffix; a symbol missing from the vocabulary becomes unk_id (fused with a preceding unknown
  // when fuse_unk), or is dropped without one.
  std::string key;
  bool last_was_unk = false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    key.assign(byte_symbols_[static_cast<unsigned char>(word[i])]);
    if (i + 1 == word.size()) key.append(options_.end_of_word_suffix);
    const auto it = vocab_.find(key);
    int64_t id = -1;
    if (it != vocab_.end()) {
      id = it->second;
      last_was_unk = false;
    } else if (unk_id >= 0) {
      if (last_was_unk && options_.fuse_unk) {
        symbols.back().end = i + 1;
        continue;
      }
      id = unk_id;
      last_was_unk = true;
    } else {
      continue;
    }
    const int index = static_cast<int>(symbols.size());
    if (index > 0) symbols.back().next = index;
    symbols.push_back({id, index - 1, -1, i, i + 1, false});
  }
  // Word::merge_all: pop the lowest (rank, position); skip entries that no longer hold (the
  // pair there now merges into something else); merge; queue the new neighbour pairs.
  struct Entry {
    int rank;
    int pos;
    int64_t merged;
  };
  const auto later = [](const Entry& a, const Entry& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(later)> queue(later);
  const auto lookup = [this](int64_t left, int64_t right) -> const std::pair<int, int64_t>* {
    const auto it =
        merges_.find((static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const auto* m = lookup(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->first, static_cast<int>(i), m->second});
    }
  }
  while (!queue.empty()) {
    const Entry top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (current.removed || current.next < 0) continue;
    Symbol& right = symbols[current.next];
    const auto* m = lookup(current.id, right.id);
    if (m == nullptr || m->second != top.merged) continue;  // expired entry
    current.id = top.merged;
    current.end = right.end;
    current.next = right.next;
    right.removed = true;
    if (current.next >= 0) symbols[current.next].prev = top.pos;
    if (current.prev >= 0) {
      if (const auto* p = lookup(symbols[current.prev].id, current.id)) {
        queue.push({p->first, current.prev, p->second});
      }
    }
    if (current.next >= 0) {
      if (const auto* n = lookup(current.id, symbols[current.next].id)) {
        queue.push({n->first, top.pos, n->second});
      }
    }
  }
  std::vector<Symbol> out;
  out.reserve(symbols.size());
  for (const Symbol& symbol : symbols) {
    if (!symbol.removed) out.push_back(symbol);
  }
  return out;
}

int64_t ByteLevelBpe::TokenId(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<std::string> ByteLevelBpe::Split(std::string_view word) const {
  std::vector<std::string> symbols;
  if (word.empty()) return symbols;
  if (tokenizers_model_) {
    std::string whole;
    for (char c : word) whole.append(byte_symbols_[static_cast<unsigned char>(c)]);
    if (options_.ignore_merges && vocab_.count(whole)) return {whole};
    for (const Symbol& symbol : MergeLikeTokenizers(word, /*unk_id=*/0)) {
      std::string text;
      for (std::size_t i = symbol.begin; i < symbol.end; ++i) {
        text.append(byte_symbols_[static_cast<unsigned char>(word[i])]);
      }
      if (symbol.end == word.size()) text.append(options_.end_of_word_suffix);
      symbols.push_back(std::move(text));
    }
    return symbols;
  }
  symbols.reserve(word.size());
  for (char c : word) symbols.push_back(byte_symbols_[static_cast<unsigned char>(c)]);
  symbols.back().append(kEndOfWord);
  std::string key;
  while (symbols.size() > 1) {
    int best_rank = INT_MAX;
    std::size_t best = 0;
    for (std::size_t i = 0; i + 1 < symbols.size(); ++i) {
      key.assign(symbols[i]).append(" ").append(symbols[i + 1]);
      const auto it = ranks_.find(key);
      if (it != ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT_MAX) break;
    const std::string left = symbols[best];
    const std::string right = symbols[best + 1];
    std::vector<std::string> merged;
    merged.reserve(symbols.size());
    for (std::size_t i = 0; i < symbols.size();) {
      if (i + 1 < symbols.size() && symbols[i] == left && symbols[i + 1] == right) {
        merged.push_back(left + right);
        i += 2;
      } else {
        merged.push_back(std::move(symbols[i]));
        ++i;
      }
    }
    symbols = std::move(merged);
  }
  return symbols;
}

void ByteLevelBpe::EncodeWord(std::string_view word, int64_t unk_id,
                              std::vector<int64_t>* ids) const {
  if (tokenizers_model_) {
    if (word.empty()) return;
    if (options_.ignore_merges) {
      std::string whole;
      for (char c : word) whole.append(byte_symbols_[static_cast<unsigned char>(c)]);
      const auto it = vocab_.find(whole);
      if (it != vocab_.end()) {
        ids->push_back(it->second);
        return;
      }
    }
    for (const Symbol& symbol : MergeLikeTokenizers(word, unk_id)) ids->push_back(symbol.id);
    return;
  }
  for (const std::string& symbol : Split(word)) {
    const int64_t id = TokenId(symbol);
    ids->push_back(id >= 0 ? id : unk_id);
  }
}

}  // namespace grat::tokenizer
