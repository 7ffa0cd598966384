// TokenizerError: the one exception type of grat_tokenizers (missing or corrupt files,
// invalid input text). Thread-safe: an immutable value.
#pragma once

#include <stdexcept>
#include <string>

namespace grat::tokenizer {

class TokenizerError : public std::runtime_error {
 public:
  enum class Code {
    kFileNotFound,  // a tokenizer file is missing or unreadable
    kCorruptFile,   // a tokenizer file is malformed (bad protobuf, JSON, merges, trie)
    kUnsupported,   // a well-formed file asks for something not implemented (e.g. BPE spm)
    kInvalidInput,  // the text to encode is not valid UTF-8
  };

  TokenizerError(Code code, const std::string& message)
      : std::runtime_error(message), code_(code) {}

  Code code() const { return code_; }

 private:
  Code code_;
};

}  // namespace grat::tokenizer
