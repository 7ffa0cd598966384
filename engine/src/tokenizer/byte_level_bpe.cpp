#include "grat/tokenizer/byte_level_bpe.h"

#include <climits>
#include <nlohmann/json.hpp>

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

int64_t ByteLevelBpe::TokenId(const std::string& token) const {
  const auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

std::vector<std::string> ByteLevelBpe::Split(std::string_view word) const {
  std::vector<std::string> symbols;
  if (word.empty()) return symbols;
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
  for (const std::string& symbol : Split(word)) {
    const int64_t id = TokenId(symbol);
    ids->push_back(id >= 0 ? id : unk_id);
  }
}

}  // namespace grat::tokenizer
