#include "grat/tokenizer/llama_tokenizer.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "grat/tokenizer/byte_level_bpe.h"
#include "grat/tokenizer/tokenizer_error.h"
#include "grat/tokenizer/utf8.h"

namespace grat::tokenizer {
namespace {

using nlohmann::json;

// Llama 3's pre-tokenizer pattern as tokenizer.json spells it (llama_pretokenizer.cpp matches it).
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";

[[noreturn]] void Corrupt(const std::string& why) {
  throw TokenizerError(TokenizerError::Code::kCorruptFile, "tokenizer.json: " + why);
}

[[noreturn]] void Unsupported(const std::string& why) {
  throw TokenizerError(TokenizerError::Code::kUnsupported,
                       "tokenizer.json: " + why + " (only Llama 3's tokenizer is implemented)");
}

const json& Key(const json& object, const std::string& key, const std::string& path) {
  if (!object.is_object()) Corrupt("'" + path + "' is not an object");
  const auto it = object.find(key);
  if (it == object.end()) Corrupt("missing key '" + (path.empty() ? key : path + "." + key) + "'");
  return *it;
}

// object[key] when present and not null, else nullptr.
const json* Optional(const json& object, const std::string& key) {
  const auto it = object.find(key);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

std::string String(const json& value, const std::string& path) {
  if (!value.is_string()) Corrupt("'" + path + "' is not a string");
  return value.get<std::string>();
}

bool Bool(const json& object, const std::string& key, const std::string& path, bool fallback) {
  const json* value = Optional(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_boolean()) Corrupt("'" + path + "." + key + "' is not a boolean");
  return value->get<bool>();
}

int64_t Id(const json& value, const std::string& path) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > INT32_MAX) {
    Corrupt("'" + path + "' is not an id in [0, 2^31)");
  }
  return value.get<int64_t>();
}

void CheckPreTokenizer(const json& root) {
  const json& pre = Key(root, "pre_tokenizer", "");
  if (pre.is_null()) Unsupported("pre_tokenizer is null");
  if (String(Key(pre, "type", "pre_tokenizer"), "pre_tokenizer.type") != "Sequence") {
    Unsupported("pre_tokenizer.type is not Sequence [Split, ByteLevel]");
  }
  const json& steps = Key(pre, "pretokenizers", "pre_tokenizer");
  if (!steps.is_array() || steps.size() != 2) {
    Unsupported("pre_tokenizer.pretokenizers is not [Split, ByteLevel]");
  }
  const std::string split = "pre_tokenizer.pretokenizers[0]";
  if (String(Key(steps[0], "type", split), split + ".type") != "Split") {
    Unsupported(split + ".type is not Split");
  }
  const json& pattern = Key(steps[0], "pattern", split);
  if (!pattern.is_object() || !pattern.contains("Regex") ||
      String(pattern["Regex"], split + ".pattern.Regex") != kLlama3Pattern) {
    Unsupported(split + ".pattern.Regex is not Llama 3's pattern");
  }
  if (String(Key(steps[0], "behavior", split), split + ".behavior") != "Isolated") {
    Unsupported(split + ".behavior is not Isolated");
  }
  if (Bool(steps[0], "invert", split, false)) Unsupported(split + ".invert is true");
  const std::string byte_level = "pre_tokenizer.pretokenizers[1]";
  if (String(Key(steps[1], "type", byte_level), byte_level + ".type") != "ByteLevel") {
    Unsupported(byte_level + ".type is not ByteLevel");
  }
  if (Bool(steps[1], "add_prefix_space", byte_level, true)) {
    Unsupported(byte_level + ".add_prefix_space is true");
  }
  if (Bool(steps[1], "use_regex", byte_level, true)) {
    Unsupported(byte_level + ".use_regex is true");
  }
}

std::vector<std::pair<std::string, std::string>> Merges(const json& model) {
  const json& merges = Key(model, "merges", "model");
  if (!merges.is_array()) Corrupt("'model.merges' is not an array");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const json& merge = merges[i];
    const std::string path = "model.merges[" + std::to_string(i) + "]";
    if (merge.is_string()) {  // "left right" (older files, Llama 3's own)
      const std::string text = merge.get<std::string>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == text.size()) {
        Corrupt("'" + path + "' is not \"left right\"");
      }
      out.emplace_back(text.substr(0, space), text.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {  // ["left", "right"] (tokenizers >= 0.20)
      out.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      Corrupt("'" + path + "' is neither \"left right\" nor [\"left\", \"right\"]");
    }
  }
  return out;
}

}  // namespace

struct LlamaTokenizer::State {
  struct Added {
    std::string content;
    int64_t id;
    bool special;
  };
  std::shared_ptr<const ByteLevelBpe> bpe;
  int64_t unk_id = -1;  // model.unk_token; -1: unknown symbols are dropped
  // Added tokens by first byte, longest first: [0] normalized false, [1] normalized true.
  std::vector<Added> by_first_byte[2][256];
  std::unordered_map<std::string, int64_t> added_ids;
  std::vector<int64_t> prefix;  // the post-processor template's ids before / after the text
  std::vector<int64_t> suffix;
  int64_t vocab_size = 0;

  // The longest added token of `stage` at text[pos], or nullptr.
  const Added* Longest(int stage, std::string_view text, std::size_t pos) const {
    for (const Added& token : by_first_byte[stage][static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, token.content.size(), token.content) == 0) return &token;
    }
    return nullptr;
  }

  // `tokenizers`' AddedVocabulary::find_matches for one stage: leftmost-longest matches of the
  // stage's tokens become their ids, the text between goes through `encode`. Without
  // `specials`, a special token's match is skipped over as text (it still hides shorter tokens
  // inside it, as there).
  template <typename Encode>
  void Split(int stage, bool specials, std::string_view text, const Encode& encode,
             std::vector<int64_t>* ids) const {
    std::size_t start = 0;
    for (std::size_t pos = 0; pos < text.size();) {
      const Added* token = Longest(stage, text, pos);
      if (token == nullptr) {
        ++pos;
        continue;
      }
      if (token->special && !specials) {
        pos += token->content.size();
        continue;
      }
      encode(text.substr(start, pos - start), ids);
      ids->push_back(token->id);
      pos += token->content.size();
      start = pos;
    }
    encode(text.substr(start), ids);
  }
};

namespace {

// Parses the post-processor into the ids it puts before and after a single sequence.
void ParseTemplate(const json& processor, const std::string& path, std::vector<int64_t>* prefix,
                   std::vector<int64_t>* suffix) {
  if (processor.is_null()) return;
  const std::string type = String(Key(processor, "type", path), path + ".type");
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json& steps = Key(processor, "processors", path);
    if (!steps.is_array()) Corrupt("'" + path + ".processors' is not an array");
    for (std::size_t i = 0; i < steps.size(); ++i) {
      ParseTemplate(steps[i], path + ".processors[" + std::to_string(i) + "]", prefix, suffix);
    }
    return;
  }
  if (type != "TemplateProcessing") Unsupported(path + ".type is " + type);
  const json& single = Key(processor, "single", path);
  const json& specials = Key(processor, "special_tokens", path);
  if (!single.is_array()) Corrupt("'" + path + ".single' is not an array");
  std::vector<int64_t> before, after;
  bool seen_sequence = false;
  for (std::size_t i = 0; i < single.size(); ++i) {
    const std::string item = path + ".single[" + std::to_string(i) + "]";
    if (single[i].contains("Sequence")) {
      if (String(Key(single[i]["Sequence"], "id", item + ".Sequence"), item + ".Sequence.id") !=
              "A" ||
          seen_sequence) {
        Corrupt("'" + item + "' is not the one sequence A");
      }
      seen_sequence = true;
      continue;
    }
    const std::string name =
        String(Key(Key(single[i], "SpecialToken", item), "id", item + ".SpecialToken"),
               item + ".SpecialToken.id");
    const json& entry = Key(specials, name, path + ".special_tokens");
    const json& ids = Key(entry, "ids", path + ".special_tokens." + name);
    if (!ids.is_array()) Corrupt("'" + path + ".special_tokens." + name + ".ids' is not an array");
    for (const json& id : ids) {
      (seen_sequence ? after : before).push_back(Id(id, path + ".special_tokens." + name + ".ids"));
    }
  }
  if (!seen_sequence) Corrupt("'" + path + ".single' has no sequence A");
  prefix->insert(prefix->begin(), before.begin(), before.end());
  suffix->insert(suffix->end(), after.begin(), after.end());
}

}  // namespace

std::shared_ptr<const LlamaTokenizer::State> LlamaTokenizer::Parse(std::string_view text) {
  json root;
  try {
    root = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    Corrupt(std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) Corrupt("not a JSON object");
  if (Optional(root, "normalizer") != nullptr) Unsupported("normalizer is not null");
  CheckPreTokenizer(root);

  const json& model = Key(root, "model", "");
  if (const json* type = Optional(model, "type"); type != nullptr) {
    if (String(*type, "model.type") != "BPE") {
      Unsupported("model.type is " + type->get<std::string>());
    }
  }
  if (Bool(model, "byte_fallback", "model", false)) Unsupported("model.byte_fallback is true");
  if (const json* dropout = Optional(model, "dropout"); dropout != nullptr) {
    if (!dropout->is_number() || dropout->get<double>() != 0.0) {
      Unsupported("model.dropout is set");
    }
  }
  if (const json* prefix = Optional(model, "continuing_subword_prefix"); prefix != nullptr) {
    if (!String(*prefix, "model.continuing_subword_prefix").empty()) {
      Unsupported("model.continuing_subword_prefix is set");
    }
  }
  ByteLevelBpe::Options bpe_options;
  if (const json* suffix = Optional(model, "end_of_word_suffix"); suffix != nullptr) {
    bpe_options.end_of_word_suffix = String(*suffix, "model.end_of_word_suffix");
  }
  bpe_options.ignore_merges = Bool(model, "ignore_merges", "model", false);
  bpe_options.fuse_unk = Bool(model, "fuse_unk", "model", false);

  const json& vocab_json = Key(model, "vocab", "model");
  if (!vocab_json.is_object() || vocab_json.empty()) {
    Corrupt("'model.vocab' is not a non-empty object");
  }
  std::unordered_map<std::string, int64_t> vocab;
  vocab.reserve(vocab_json.size());
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab_json.items()) {
    vocab[token] = Id(id, "model.vocab[\"" + token + "\"]");
    max_id = std::max(max_id, vocab[token]);
  }
  auto state = std::make_shared<State>();
  if (const json* unk = Optional(model, "unk_token"); unk != nullptr) {
    const std::string token = String(*unk, "model.unk_token");
    const auto it = vocab.find(token);
    if (it == vocab.end()) Corrupt("model.unk_token '" + token + "' is not in model.vocab");
    state->unk_id = it->second;
  }
  try {
    state->bpe = std::make_shared<const ByteLevelBpe>(
        ByteLevelBpe::FromVocabAndMerges(std::move(vocab), Merges(model), bpe_options));
  } catch (const TokenizerError& e) {
    Corrupt(std::string("model.merges: ") + e.what());
  }

  const json& added = Key(root, "added_tokens", "");
  if (!added.is_array()) Corrupt("'added_tokens' is not an array");
  for (std::size_t i = 0; i < added.size(); ++i) {
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    const json& entry = added[i];
    State::Added token{String(Key(entry, "content", path), path + ".content"),
                       Id(Key(entry, "id", path), path + ".id"),
                       Bool(entry, "special", path, false)};
    if (token.content.empty()) Corrupt("'" + path + ".content' is empty");
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (Bool(entry, flag, path, false)) Unsupported(path + "." + flag + " is true");
    }
    const int stage = Bool(entry, "normalized", path, !token.special) ? 1 : 0;
    max_id = std::max(max_id, token.id);
    state->added_ids[token.content] = token.id;
    state->by_first_byte[stage][static_cast<unsigned char>(token.content[0])].push_back(
        std::move(token));
  }
  for (auto& stage : state->by_first_byte) {
    for (auto& list : stage) {
      std::stable_sort(list.begin(), list.end(), [](const auto& a, const auto& b) {
        return a.content.size() > b.content.size();
      });
    }
  }
  ParseTemplate(Key(root, "post_processor", ""), "post_processor", &state->prefix, &state->suffix);
  for (const auto* ids : {&state->prefix, &state->suffix}) {
    for (int64_t id : *ids) max_id = std::max(max_id, id);
  }
  state->vocab_size = max_id + 1;
  return state;
}

LlamaTokenizer LlamaTokenizer::Load(const std::string& tokenizer_json_path, Options options) {
  const std::string text = ReadFileOrThrow(tokenizer_json_path, "Llama tokenizer.json");
  try {
    return FromJson(text, std::move(options));
  } catch (const TokenizerError& e) {
    throw TokenizerError(e.code(), std::string(e.what()) + " (file " + tokenizer_json_path + ")");
  }
}

LlamaTokenizer LlamaTokenizer::FromJson(std::string_view tokenizer_json, Options options) {
  return LlamaTokenizer(Parse(tokenizer_json), std::move(options));
}

LlamaTokenizer::LlamaTokenizer(std::shared_ptr<const State> state, Options options)
    : options_(std::move(options)), state_(std::move(state)) {
  if (options_.max_length < 1) {
    throw std::invalid_argument("LlamaTokenizer: max_length must be >= 1");
  }
  const std::size_t specials = state_->prefix.size() + state_->suffix.size();
  if (options_.truncation && static_cast<std::size_t>(options_.max_length) < specials) {
    throw std::invalid_argument("LlamaTokenizer: max_length must be >= " +
                                std::to_string(specials) + " (the template's special tokens)");
  }
  pad_id_ = TokenId(options_.pad_token);
  if (pad_id_ < 0) {
    throw TokenizerError(
        TokenizerError::Code::kCorruptFile,
        "tokenizer.json has no token '" + options_.pad_token + "' (Options::pad_token)");
  }
}

int64_t LlamaTokenizer::TokenId(const std::string& token) const {
  const auto it = state_->added_ids.find(token);
  return it != state_->added_ids.end() ? it->second : state_->bpe->TokenId(token);
}

int64_t LlamaTokenizer::bos_id() const {
  return state_->prefix.empty() ? -1 : state_->prefix.front();
}

int64_t LlamaTokenizer::pad_id() const { return pad_id_; }

int64_t LlamaTokenizer::vocab_size() const { return state_->vocab_size; }

void LlamaTokenizer::EncodeSegment(std::string_view text, std::vector<int64_t>* ids) const {
  if (text.empty()) return;
  for (const std::string& piece : PreTokenize(text)) {
    state_->bpe->EncodeWord(piece, state_->unk_id, ids);
  }
}

std::vector<int64_t> LlamaTokenizer::EncodePieces(std::string_view text) const {
  ValidateUtf8(text);
  std::vector<int64_t> ids;
  const bool specials = options_.parse_special_tokens;
  // `tokenizers`' AddedVocabulary: tokens with normalized false split the raw text, then those
  // with normalized true split what is left (after a normalizer, which Llama 3 has none of).
  state_->Split(
      0, specials, text,
      [&](std::string_view segment, std::vector<int64_t>* out) {
        state_->Split(
            1, specials, segment,
            [this](std::string_view piece, std::vector<int64_t>* o) { EncodeSegment(piece, o); },
            out);
      },
      &ids);
  return ids;
}

std::vector<int64_t> LlamaTokenizer::EncodeIds(std::string_view text) const {
  const std::vector<int64_t> pieces = EncodePieces(text);
  std::vector<int64_t> ids(state_->prefix);
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.insert(ids.end(), state_->suffix.begin(), state_->suffix.end());
  return ids;
}

int64_t LlamaTokenizer::CountTokens(std::string_view text) const {
  return static_cast<int64_t>(EncodePieces(text).size() + state_->prefix.size() +
                              state_->suffix.size());
}

TokenIds LlamaTokenizer::Encode(std::string_view text) const {
  std::vector<int64_t> pieces = EncodePieces(text);
  const auto max_length = static_cast<std::size_t>(options_.max_length);
  const std::size_t specials = state_->prefix.size() + state_->suffix.size();
  // tokenizers' truncation keeps room for the template's tokens (checked >= specials).
  if (options_.truncation && pieces.size() + specials > max_length) {
    pieces.resize(max_length - specials);
  }
  std::vector<int64_t> ids;
  ids.reserve(std::max(max_length, pieces.size() + specials));
  ids.insert(ids.end(), state_->prefix.begin(), state_->prefix.end());
  ids.insert(ids.end(), pieces.begin(), pieces.end());
  ids.insert(ids.end(), state_->suffix.begin(), state_->suffix.end());
  if (options_.pad_to_max_length && ids.size() <= max_length) {
    return PadTokens(std::move(ids), max_length, pad_id_);
  }
  TokenIds out;
  out.length = static_cast<int64_t>(ids.size());
  out.attention_mask.assign(ids.size(), 1);
  out.ids = std::move(ids);
  return out;
}

}  // namespace grat::tokenizer
