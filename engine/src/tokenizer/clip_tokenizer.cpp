#include "grat/tokenizer/clip_tokenizer.h"
#include "special_tokens.h"

#include <stdexcept>

#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/unicode.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

// CLIP's pattern, in order: <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|
// [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+ ; what matches nothing (white space) is dropped.
const std::u32string_view kLiterals[] = {
    U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};

bool StartsWith(const std::vector<char32_t>& text, std::size_t pos, std::u32string_view lit) {
  if (text.size() - pos < lit.size()) return false;
  for (std::size_t k = 0; k < lit.size(); ++k) {
    if (text[pos + k] != lit[k]) return false;
  }
  return true;
}

bool IsOther(char32_t cp) {
  return !unicode::IsWhitespace(cp) && !unicode::IsLetter(cp) && !unicode::IsNumber(cp);
}

}  // namespace

std::vector<std::string> ClipTokenizer::PreTokenize(std::string_view text) {
  // Normalizer: NFC, white space runs -> " ", lowercase.
  const std::vector<char32_t> nfc = unicode::Nfc(DecodeUtf8(text));
  std::vector<char32_t> norm;
  norm.reserve(nfc.size());
  for (std::size_t i = 0; i < nfc.size(); ++i) {
    if (unicode::IsWhitespace(nfc[i])) {
      while (i + 1 < nfc.size() && unicode::IsWhitespace(nfc[i + 1])) ++i;
      norm.push_back(U' ');
    } else {
      unicode::AppendLower(nfc[i], &norm);
    }
  }
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < norm.size()) {
    const char32_t cp = norm[i];
    std::size_t end = i;
    for (std::u32string_view lit : kLiterals) {
      if (StartsWith(norm, i, lit)) {
        end = i + lit.size();
        break;
      }
    }
    if (end == i) {
      if (unicode::IsLetter(cp)) {
        while (end < norm.size() && unicode::IsLetter(norm[end])) ++end;
      } else if (unicode::IsNumber(cp)) {
        end = i + 1;
      } else if (IsOther(cp)) {
        while (end < norm.size() && IsOther(norm[end])) ++end;
      } else {
        ++i;  // white space: not part of any word
        continue;
      }
    }
    std::string word;
    for (std::size_t k = i; k < end; ++k) AppendUtf8(norm[k], &word);
    words.push_back(std::move(word));
    i = end;
  }
  return words;
}

ClipTokenizer ClipTokenizer::Load(const std::string& vocab_json_path,
                                  const std::string& merges_path, Options options) {
  ByteLevelBpe bpe = ByteLevelBpe::Load(vocab_json_path, merges_path);
  try {
    return ClipTokenizer(std::move(bpe), std::move(options));
  } catch (const TokenizerError& e) {
    throw TokenizerError(e.code(), std::string(e.what()) + " (file " + vocab_json_path + ")");
  }
}

ClipTokenizer ClipTokenizer::FromBpe(ByteLevelBpe bpe, Options options) {
  return ClipTokenizer(std::move(bpe), std::move(options));
}

ClipTokenizer::ClipTokenizer(ByteLevelBpe bpe, Options options) : options_(std::move(options)) {
  if (options_.max_length < 2) {
    throw std::invalid_argument("ClipTokenizer: max_length must be >= 2 (start and end tokens)");
  }
  const auto id_of = [&](const std::string& token) {
    const int64_t id = bpe.TokenId(token);
    if (id < 0) {
      throw TokenizerError(TokenizerError::Code::kCorruptFile,
                           "CLIP vocab.json lacks the special token " + token);
    }
    return id;
  };
  bos_id_ = id_of(options_.bos_token);
  eos_id_ = id_of(options_.eos_token);
  pad_id_ = id_of(options_.pad_token);
  unk_id_ = id_of(options_.unk_token);
  bpe_ = std::make_shared<const ByteLevelBpe>(std::move(bpe));
}

void ClipTokenizer::EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const {
  if (text.empty()) return;
  for (const std::string& word : PreTokenize(text)) {
    // transformers' ByteLevel pre-tokenizer re-splits words with GPT-2's pattern; only the two
    // literal special words mix letters and punctuation, so only they change: "<|", name, "|>".
    if (word == "<|startoftext|>" || word == "<|endoftext|>") {
      bpe_->EncodeWord("<|", unk_id_, ids);
      bpe_->EncodeWord(std::string_view(word).substr(2, word.size() - 4), unk_id_, ids);
      bpe_->EncodeWord("|>", unk_id_, ids);
    } else {
      bpe_->EncodeWord(word, unk_id_, ids);
    }
  }
}

std::vector<int64_t> ClipTokenizer::EncodePieces(std::string_view text) const {
  ValidateUtf8(text);
  std::vector<int64_t> ids;
  if (!options_.parse_special_tokens) {
    EncodeSegment(text, &ids);
    return ids;
  }
  const std::pair<std::string_view, int64_t> specials[] = {{options_.bos_token, bos_id_},
                                                           {options_.eos_token, eos_id_}};
  auto match = [&](std::string_view t, std::size_t pos) {
    std::pair<std::size_t, int64_t> best{0, -1};
    for (const auto& [token, token_id] : specials) {
      if (token.size() > best.first && t.substr(pos, token.size()) == token) {
        best = {token.size(), token_id};
      }
    }
    return best;
  };
  EncodeAroundSpecials(
      text, match,
      [this](std::string_view segment, std::vector<int64_t>* out) { EncodeSegment(segment, out); },
      &ids);
  return ids;
}

TokenIds ClipTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> pieces = EncodePieces(text);
  const auto max_length = static_cast<std::size_t>(options_.max_length);
  if (pieces.size() > max_length - 2) pieces.resize(max_length - 2);
  std::vector<int64_t> ids;
  ids.reserve(max_length);
  ids.push_back(bos_id_);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.push_back(eos_id_);
  return PadTokens(std::move(ids), max_length, pad_id_);
}

}  // namespace grat::tokenizer
