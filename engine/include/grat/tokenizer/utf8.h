// UTF-8 helpers shared by the tokenizers. Stateless functions, thread-safe.
//
// Invalid UTF-8 is an error, not replaced: prompts reach us as protobuf strings, which are
// valid UTF-8 by contract, so a bad byte means a broken client and the caller gets
// TokenizerError(kInvalidInput) naming the byte offset (the server answers INVALID_ARGUMENT).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace grat::tokenizer {

// Throws TokenizerError(kInvalidInput) unless `text` is well-formed UTF-8 (no overlong forms,
// surrogates or code points above U+10FFFF).
void ValidateUtf8(std::string_view text);

// Length in bytes of the UTF-8 sequence that starts with byte `lead` (1 for invalid bytes).
std::size_t Utf8SequenceLength(unsigned char lead);

// Decodes well-formed UTF-8 (call ValidateUtf8 first) into code points.
std::vector<char32_t> DecodeUtf8(std::string_view text);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(char32_t cp, std::string* out);

std::string EncodeUtf8(const std::vector<char32_t>& cps);

// Reads a whole file; throws TokenizerError(kFileNotFound) naming `what` and `path`.
std::string ReadFileOrThrow(const std::string& path, const char* what);

}  // namespace grat::tokenizer
